"""A hand-written Adam whose step counter is a Python int: what a traced Python number saves.

    python3 benchmarks/python_scalars.py            # about a minute; prints one table

An MLP (tanh, mean squared error) trains for STEPS steps, at two sizes: 784-256-10 on a batch
of 128, where the kernels' own work is large, and 64-32-10 on a batch of 32, where a compile
is large next to a step: the gradient
comes from ``cr.value_and_grad(loss)`` and the update from ``cr.jit(adam_update)``, whose bias
correction reads the step counter (``1 - 0.9**step``). Three ways to pass the counter:

  python int   ``adam_update(..., step)`` with ``step`` an int: traced as a 0-d int64 (weakly typed),
               so every step reuses one kernel
  0-d array    ``np.asarray(step)``: traced; the workaround the old behaviour needed
  static       ``static_argnums`` on the counter: compiled in, so every step compiles again (what
               a Python int did before it was traced)

Each repeat builds fresh function objects (kernels are cached per function). "first step" is
the first step's time (both functions compile); "ms/step" the median of the later steps, which
compile again only when the counter is static: that is the point. Times are medians over
REPEATS repeats, run alternately; the ratio is against the 0-d array row of the same model and
backend. The machine is shared: expect noise.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from statistics import median

import numpy as np

try:
    import chainrule as cr
except ImportError:  # run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr

STEPS = 20
REPEATS = 5


SIZES = ((784, 256, 10, 128), (64, 32, 10, 32))  # inputs, hidden, outputs, batch


def problem(inputs: int, hidden: int, outputs: int, batch: int):
    rng = np.random.default_rng(0)
    params = {
        "W1": rng.standard_normal((inputs, hidden)) * 0.05,
        "b1": np.zeros(hidden),
        "W2": rng.standard_normal((hidden, outputs)) * 0.05,
        "b2": np.zeros(outputs),
    }
    return params, rng.standard_normal((batch, inputs)), rng.standard_normal((batch, outputs))


def make_training(backend: str, counter: str):
    """Fresh (value_and_grad of the loss, jitted Adam update) for one run."""

    def loss(p, x, y):
        h = np.tanh(x @ p["W1"] + p["b1"])
        return np.mean((h @ p["W2"] + p["b2"] - y) ** 2)

    def adam_update(params, grads, m, v, step, rate=1e-3):
        new_params, new_m, new_v = {}, {}, {}
        for name in params:
            new_m[name] = 0.9 * m[name] + 0.1 * grads[name]
            new_v[name] = 0.999 * v[name] + 0.001 * grads[name] ** 2
            m_hat = new_m[name] / (1 - 0.9**step)
            v_hat = new_v[name] / (1 - 0.999**step)
            new_params[name] = params[name] - rate * m_hat / (np.sqrt(v_hat) + 1e-8)
        return new_params, new_m, new_v

    static = {"static_argnums": 4} if counter == "static" else {}
    return cr.value_and_grad(loss, backend=backend), cr.jit(adam_update, backend=backend, **static)


def train(backend: str, counter: str, data) -> tuple[float, float, float, int]:
    """(first step's seconds, seconds per later step, final loss, kernels the update compiled) of
    one fresh training run."""
    params, x, y = data
    value_and_grad, update = make_training(backend, counter)
    m = {k: np.zeros_like(p) for k, p in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    value, times = np.nan, []
    for step in range(1, STEPS + 1):
        start = time.perf_counter()
        value, grads = value_and_grad(params, x, y)
        passed = np.asarray(step) if counter == "0-d array" else step
        params, m, v = update(params, grads, m, v, passed)
        times.append(time.perf_counter() - start)
    return times[0], median(times[1:]), float(value), update.cache_info().misses


def main() -> None:
    print(f"Adam on an MLP, {STEPS} steps; median of {REPEATS} fresh runs")
    print(
        f"{'model':16s} {'backend':8s} {'counter':10s} {'first step ms':>14s} {'ms/step':>9s} {'vs 0-d array':>13s} "
        f"{'update kernels':>15s} {'loss':>10s}"
    )
    for size in SIZES:
        data = problem(*size)
        for backend in ("numpy", "llvm"):
            table(f"{size[0]}-{size[1]}-{size[2]} b{size[3]}", backend, data)


def table(model: str, backend: str, data) -> None:
    """Print the three rows of one model and backend; the rows' runs alternate, so machine noise
    hits them alike."""
    counters = ("0-d array", "python int", "static")
    runs: dict[str, list] = {counter: [] for counter in counters}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cr.RetraceWarning)  # the static row retraces on purpose
        for _ in range(REPEATS):
            for counter in counters:
                runs[counter].append(train(backend, counter, data))
    baseline = median(r[1] for r in runs["0-d array"])
    for counter in counters:
        first, seconds = median(r[0] for r in runs[counter]), median(r[1] for r in runs[counter])
        value, kernels = runs[counter][-1][2], runs[counter][-1][3]
        print(
            f"{model:16s} {backend:8s} {counter:10s} {first * 1e3:14.1f} {seconds * 1e3:9.2f} "
            f"{seconds / baseline:12.2f}x {kernels:15d} {value:10.6f}"
        )


if __name__ == "__main__":
    main()
