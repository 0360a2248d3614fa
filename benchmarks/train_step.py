"""One training step, fused against unfused: ``optim.train_step(loss, optimizer)`` compiles the
forward pass, the backward pass and the optimizer update into one generated function; the unfused
loop (``fused=False``) calls the compiled gradient and then runs the update with NumPy, one
parameter array at a time, the way a hand-written training loop does.

    python3 benchmarks/train_step.py            # a minute or two; prints one table

Models (row-major ``x @ W + b``, ``chainrule.nn.Sequential``):
  spiral   seed 002's [2, 16, 8, 1] network, sigmoid output, binary cross-entropy, batch 64
  deep     [32] * 12 + [1]: twelve narrow ReLU layers (24 parameter arrays), batch 64
  mnist    [784, 256, 256, 10], softmax cross-entropy with integer labels, batch 128

Both sides run in alternating blocks of consecutive steps (so machine noise hits them alike);
times are medians of the blocks' per-step means. "speed-up" is unfused time / fused time. Each
side's parameters after the same number of steps are compared ("max |diff|"). BLAS runs on one
thread (set before NumPy loads; override with OPENBLAS_NUM_THREADS). The machine is shared, so
expect noise on the ratios, most on the MNIST rows, where a block is only a few steps.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from statistics import median

# One BLAS thread: on a shared two-core machine, two-thread matmuls made the MNIST rows' times vary
# 3x from block to block. Both sides use the same BLAS, so the ratio is what this measures.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402  (after the thread settings, which BLAS reads when loaded)

try:
    from chainrule import nn, optim
except ImportError:  # run from a checkout: python3 benchmarks/train_step.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from chainrule import nn, optim
from chainrule.frontends.pytree import flatten  # noqa: E402


def problem(name: str):
    rng = np.random.default_rng(0)
    if name == "spiral":
        model = nn.Sequential([2, 16, 8, 1], activations=["relu", "relu", "sigmoid"])
        x, y = rng.standard_normal((64, 2)), (rng.random((64, 1)) > 0.5).astype(float)
        loss = nn.binary_cross_entropy
    elif name == "deep":
        model = nn.Sequential([32] * 12 + [1], activations=["relu"] * 11 + ["linear"])
        x, y = rng.standard_normal((64, 32)), rng.standard_normal((64, 1))
        loss = nn.mse
    else:
        model = nn.Sequential([784, 256, 256, 10], activations=["relu", "relu", "linear"])
        x, y = rng.standard_normal((128, 784)), rng.integers(0, 10, 128)
        loss = nn.cross_entropy

    def objective(params, x, y):
        return loss(model.apply(params, x), y)

    return model.init(0), objective, x, y


def run(step, params, opt_state, x, y, count):
    for _ in range(count):
        _, params, opt_state = step(params, opt_state, x, y)
    return params, opt_state


def measure(name: str, optimizer, blocks: int = 21) -> dict:
    params, objective, x, y = problem(name)
    steps = {
        "fused": optim.train_step(objective, optimizer),
        "unfused": optim.train_step(objective, optimizer, fused=False),
    }
    states = {side: (params, optimizer.init(params)) for side in steps}
    for side, step in steps.items():  # compile, warm caches
        states[side] = run(step, *states[side], x, y, 3)
    # a block of consecutive steps lasts ~30 ms or more, so the timer's resolution does not matter;
    # the block length comes from the fastest of a few short runs, which noise inflates least
    calibration = []
    for _ in range(5):
        start = time.perf_counter()
        run(steps["fused"], *states["fused"], x, y, 3)
        calibration.append((time.perf_counter() - start) / 3)
    per_block = max(3, int(0.03 / min(calibration)))
    times: dict = {side: [] for side in steps}
    for _ in range(blocks):
        for side, step in steps.items():
            start = time.perf_counter()
            states[side] = run(step, *states[side], x, y, per_block)
            times[side].append((time.perf_counter() - start) / per_block)
    leaves = [flatten(states[side][0])[0] for side in steps]
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(*leaves))
    return {
        "fused": median(times["fused"]),
        "unfused": median(times["unfused"]),
        "diff": difference,
        "arrays": len(leaves[0]),
        "steps": 18 + blocks * per_block,
    }


def main() -> None:
    print(
        f"{'model':<8}{'optimizer':<10}{'arrays':>7}{'fused ms':>10}{'unfused ms':>12}{'speed-up':>10}"
        f"{'steps':>8}{'max |diff|':>12}"
    )
    for name in ("spiral", "deep", "mnist"):
        for optimizer in (optim.sgd(0.01), optim.adam(optim.cosine_decay(1e-3, 10_000))):
            row = measure(name, optimizer)
            print(
                f"{name:<8}{optimizer.name:<10}{row['arrays']:>7}{row['fused'] * 1e3:>10.3f}"
                f"{row['unfused'] * 1e3:>12.3f}{row['unfused'] / row['fused']:>9.2f}x{row['steps']:>8}"
                f"{row['diff']:>12.1e}"
            )


if __name__ == "__main__":
    main()
