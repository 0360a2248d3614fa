"""What ``check_nans=True`` costs on a clean run: checked gradient time / plain gradient time.

    python3 benchmarks/check_nans.py            # a few seconds; prints one table

Models:
  mlp      x @ W1 + b1 -> tanh -> @ W2 + b2, mean squared error; 784-256-10, batch 128
  deep     twenty layers of x = tanh(x * w + 0.1) on 100,000 elements (long fused regions)
  small    seed 002's spiral network [2, 16, 8, 1] on 64 points (call overhead dominates)

The NumPy checked kernel runs one statement and one ``np.sum`` per value, without the plain
kernel's inlining and ``out=`` buffers; the llvm one adds a probe output (every value times 0,
summed) to its native kernel, which makes every value of a fused region an array in memory:
that is what the long elementwise chain ("deep") pays for. Both sides run in alternating blocks, so machine noise hits them
alike; times are medians of the blocks' per-call means. The machine is shared: expect noise.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from statistics import median

import numpy as np

try:
    import chainrule as cr
except ImportError:  # run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr
from chainrule import nn


def mlp():
    rng = np.random.default_rng(0)

    def loss(p, x, y):
        h = np.tanh(x @ p["W1"] + p["b1"])
        return np.mean((h @ p["W2"] + p["b2"] - y) ** 2)

    params = {
        "W1": rng.standard_normal((784, 256)) * 0.05,
        "b1": np.zeros(256),
        "W2": rng.standard_normal((256, 10)) * 0.05,
        "b2": np.zeros(10),
    }
    return loss, (params, rng.standard_normal((128, 784)), rng.standard_normal((128, 10)))


def deep():
    def loss(w, x):
        for _ in range(20):
            x = np.tanh(x * w + 0.1)
        return np.sum(x)

    return loss, (np.float64(0.9), np.random.default_rng(0).standard_normal(100_000))


def small():
    model = nn.Sequential([2, 16, 8, 1], activations=["relu", "relu", "sigmoid"])
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 2)), (rng.random((64, 1)) > 0.5).astype(float)
    return (lambda p, x, y: nn.binary_cross_entropy(model.apply(p, x), y)), (model.init(rng), x, y)


def per_call(fn, args, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn(*args)
    return (time.perf_counter() - start) / calls


def main() -> None:
    print(f"{'model':8s} {'backend':8s} {'plain':>10s} {'checked':>10s} {'checked/plain':>14s}")
    for name, make in (("mlp", mlp), ("deep", deep), ("small", small)):
        loss, args = make()
        for backend in ("numpy", "llvm"):
            plain = cr.grad(loss, backend=backend)
            checked = cr.grad(loss, backend=backend, check_nans=True)
            plain(*args), checked(*args)  # compile
            calls = max(1, int(0.05 / max(per_call(plain, args, 1), 1e-6)))
            blocks = [(per_call(plain, args, calls), per_call(checked, args, calls)) for _ in range(9)]
            plain_time, checked_time = median(b[0] for b in blocks), median(b[1] for b in blocks)
            print(
                f"{name:8s} {backend:8s} {plain_time * 1e3:8.3f}ms {checked_time * 1e3:8.3f}ms "
                f"{checked_time / plain_time:13.2f}x"
            )


if __name__ == "__main__":
    main()
