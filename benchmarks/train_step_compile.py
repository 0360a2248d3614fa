"""The first call of a fused training step: trace, differentiate, compile and run once.

    python3 benchmarks/train_step_compile.py                       # this checkout
    python3 benchmarks/train_step_compile.py --against ../base     # and a baseline, same run

``optim.train_step(loss, adam)`` of a 784-256-10 tanh/softmax network on a batch of 128, on both
backends. Each sample is a fresh process with a fresh kernel cache directory (llvmlite's start-up
is paid before the clock starts); the figure is the CPU time of the first step, the median of
``--runs`` samples, the checkouts alternating. The step's ``value_and_grad`` is traced inside the
fused step's trace and inlined there: its own kernel is never run, and since it is compiled only
when first run, never built.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]


def first_step(backend: str) -> float:
    """CPU seconds of the first fused step (the worker's side)."""
    import numpy as np

    import chainrule as cr
    from chainrule import optim

    os.environ["CHAINRULE_CACHE_DIR"] = tempfile.mkdtemp(prefix="chainrule-first-step-")
    cr.grad(lambda x: np.sum(np.sin(x) * x), backend="llvm")(np.ones(3))  # imports, llvmlite start-up
    rng = np.random.default_rng(0)
    params = {
        "W1": rng.standard_normal((784, 256)) * 0.05,
        "b1": np.zeros(256),
        "W2": rng.standard_normal((256, 10)) * 0.05,
        "b2": np.zeros(10),
    }
    x, y = rng.standard_normal((128, 784)), np.eye(10)[rng.integers(0, 10, 128)]

    def loss(p, x, y):
        logits = np.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
        logits = logits - np.max(logits, axis=1, keepdims=True)
        return -np.mean(np.sum(y * (logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))), axis=1))

    optimizer = optim.adam(1e-3)
    step = optim.train_step(loss, optimizer, backend=backend)
    start = time.process_time()
    step(params, optimizer.init(params), x, y)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default=None, help="a baseline checkout to time too")
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    checkouts = {"this": ROOT} | ({"baseline": Path(options.against).resolve()} if options.against else {})
    print(f"first fused train step, 784-256-10, batch 128: CPU seconds, median of {options.runs} fresh processes")
    print(
        f"{'backend':<8}"
        + "".join(f" {name:>9}" for name in checkouts)
        + ("  this/baseline" if options.against else "")
    )
    for backend in ("numpy", "llvm"):
        samples: dict[str, list[float]] = {name: [] for name in checkouts}
        for _ in range(options.runs):
            for name, checkout in checkouts.items():
                environment = dict(os.environ, PYTHONPATH=str(checkout))
                command = [sys.executable, __file__, "--worker", backend]
                done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
                samples[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
        medians = {name: median(taken) for name, taken in samples.items()}
        row = f"{backend:<8}" + "".join(f" {seconds:>9.3f}" for seconds in medians.values())
        if options.against:
            row += f"  {medians['this'] / medians['baseline']:>13.2f}"
        print(row, flush=True)


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    print(json.dumps(first_step(sys.argv[2])))
elif __name__ == "__main__":
    main()
