"""Per-example gradients of a 784-256-10 MLP over a batch of 256, float64.

    python3 benchmarks/per_example.py            # about a minute; prints one table

The network: ``tanh(x @ W1 + b1) @ W2 + b2``, softmax cross-entropy against one-hot labels.
Rows, all in the same run:

- chainrule's plain batch gradient (one gradient of the mean loss), numpy and llvm backends:
  the baseline the issue's goal is measured against (vmap(grad) within 1.5x of it);
- ``cr.vmap(cr.grad(loss), in_axes=(None, 0, 0))``, numpy and llvm backends;
- a Python loop of ``cr.grad(loss)`` over the 256 examples (what vmap replaces);
- ``jax.jit(jax.vmap(jax.grad(loss)))`` and ``jax.jit(jax.grad(batch loss))`` when JAX is
  installed (x64 enabled);
- the floor: writing the per-example W1 gradients alone, one broadcast product
  ``x[:, :, None] * delta[:, None, :]`` of 256 x 784 x 256 float64 (411 MB), which every
  per-example method must produce and the batch gradient never does.

Each repeat makes a new function object (kernels are cached per function), calls it once to
compile, then times a few calls; the methods take turns within each repeat, and the table shows
the median over repeats of the per-call mean.
The machine is shared: expect noise, compare within the run. OpenBLAS runs one thread unless
OPENBLAS_NUM_THREADS says otherwise: on a loaded machine its spinning threads made one 256x784x256
product take 150 ms instead of 2.5 ms, which measured the contention, not the methods.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from statistics import median

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads OpenBLAS (see the module doc)

import numpy as np

try:
    import chainrule as cr
except ImportError:  # run from a checkout: python3 benchmarks/per_example.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr

BATCH, REPEATS, CALLS = 256, 5, 3


def problem():
    rng = np.random.default_rng(0)
    params = {
        "W1": rng.standard_normal((784, 256)) * 0.05,
        "b1": np.zeros(256),
        "W2": rng.standard_normal((256, 10)) * 0.05,
        "b2": np.zeros(10),
    }
    x = rng.standard_normal((BATCH, 784))
    y = np.eye(10)[rng.integers(0, 10, BATCH)]
    return params, x, y


def example_loss(p, x, y):
    """One example's softmax cross-entropy (x of shape (784,), y one-hot (10,))."""
    z = np.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
    z = z - np.max(z)
    return -np.sum(y * (z - np.log(np.sum(np.exp(z)))))


def batch_loss(p, x, y):
    """The mean of ``example_loss`` over a batch (rows of x and y)."""
    z = np.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
    z = z - np.max(z, axis=1, keepdims=True)
    return -np.mean(np.sum(y * (z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))), axis=1))


def fresh(fn):
    """A new function object computing ``fn`` (compiled kernels are cached per function)."""
    return functools.wraps(fn)(lambda *a: fn(*a))


def seconds(rows, args) -> dict[str, float]:
    """Per method, the median over repeats of the per-call mean of a freshly made function (compiled
    by a first call). The methods take turns within each repeat, so machine noise hits them alike."""
    times: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _ in range(REPEATS):
        for name, make in rows:
            run = make()
            run(*args)
            start = time.perf_counter()
            for _ in range(CALLS):
                run(*args)
            times[name].append((time.perf_counter() - start) / CALLS)
    return {name: median(values) for name, values in times.items()}


def python_loop(backend):
    grad = cr.grad(fresh(example_loss), backend=backend)

    def run(p, x, y):
        per_example = [grad(p, x[k], y[k]) for k in range(len(x))]
        return {key: np.stack([g[key] for g in per_example]) for key in p}

    return run


def jax_rows(params, x, y):
    try:
        import jax
    except ImportError:
        return []
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def loss(p, x, y):
        z = jnp.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
        z = z - jnp.max(z, axis=-1, keepdims=True)
        return -jnp.mean(jnp.sum(y * (z - jnp.log(jnp.sum(jnp.exp(z), axis=-1, keepdims=True))), axis=-1))

    def blocked(fn):
        return lambda *a: jax.block_until_ready(fn(*a))

    return [
        (
            "jax.jit(jax.vmap(jax.grad))",
            lambda: blocked(jax.jit(jax.vmap(jax.grad(fresh(loss)), in_axes=(None, 0, 0)))),
        ),
        ("jax.jit(jax.grad), batch gradient", lambda: blocked(jax.jit(jax.grad(fresh(loss))))),
    ]


def check(params, x, y) -> None:
    """vmap(grad) equals the loop of per-example gradients, and its mean the batch gradient."""
    per_example = cr.vmap(cr.grad(example_loss), in_axes=(None, 0, 0))(params, x, y)
    batch = cr.grad(batch_loss)(params, x, y)
    for key in params:
        np.testing.assert_allclose(per_example[key].mean(axis=0), batch[key], rtol=1e-10, atol=1e-14)
    looped = cr.grad(example_loss)(params, x[7], y[7])
    np.testing.assert_allclose(per_example["W1"][7], looped["W1"], rtol=1e-12, atol=1e-15)


def main() -> None:
    params, x, y = problem()
    check(params, x, y)
    delta = np.random.default_rng(1).standard_normal((BATCH, 256))
    rows = [
        ("chainrule batch gradient, numpy", lambda: cr.grad(fresh(batch_loss))),
        ("chainrule batch gradient, llvm", lambda: cr.grad(fresh(batch_loss), backend="llvm")),
        ("chainrule vmap(grad), numpy", lambda: cr.vmap(cr.grad(fresh(example_loss)), in_axes=(None, 0, 0))),
        (
            "chainrule vmap(grad), llvm",
            lambda: cr.vmap(cr.grad(fresh(example_loss)), in_axes=(None, 0, 0), backend="llvm"),
        ),
        ("Python loop of cr.grad, numpy", lambda: python_loop("numpy")),
    ] + jax_rows(params, x, y)
    rows.append(("floor: the W1 per-example product alone", lambda: lambda *_: x[:, :, None] * delta[:, None, :]))
    times = seconds(rows, (params, x, y))
    baseline = times["chainrule batch gradient, numpy"]
    print(f"per-example gradients, 784-256-10 MLP, batch {BATCH}, float64 (median of {REPEATS} repeats)")
    print(f"{'method':44s} {'ms/call':>9s} {'/ batch grad (numpy)':>21s}")
    for name, t in times.items():
        print(f"{name:44s} {1e3 * t:9.2f} {t / baseline:21.2f}")
    if "jax.jit(jax.vmap(jax.grad))" in times:
        jax_time = times["jax.jit(jax.vmap(jax.grad))"]
        for backend in ("numpy", "llvm"):
            print(f"vmap(grad) {backend} / jax vmap(grad): {times[f'chainrule vmap(grad), {backend}'] / jax_time:.2f}")
    for backend in ("numpy", "llvm"):
        ratio = times[f"chainrule vmap(grad), {backend}"] / times[f"chainrule batch gradient, {backend}"]
        print(f"vmap(grad) / batch gradient, {backend}: {ratio:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
