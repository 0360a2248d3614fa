"""The physics-informed residual's gradient (examples/physics_informed.py) against JAX, same run.

    python3 benchmarks/physics_informed.py            # about half a minute

The loss differentiates the network twice in x inside ``cr.vmap`` over the collocation points, on a
closure over the weights, and is differentiated with respect to the weights: chainrule captures the
weights in the inner traces (closure conversion) as JAX does. Per implementation: the first call
(trace, differentiate, compile, run; a fresh function each time, median of 3, CPU seconds) and the
median CPU time of a call after that; "max |dgrad|" is the largest difference from JAX's gradient.
JAX (``jax.jit(jax.grad(...))``, float64) is skipped when not installed.
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np

try:
    import chainrule as cr
except ImportError:  # run from a checkout: python3 benchmarks/physics_informed.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from physics_informed import init, u

POINTS = 32
CALLS = 200
FRESH = itertools.count()


def chainrule_gradient(backend: str, fresh: int):
    """A fresh gradient function: the default value ``fresh`` is part of its key, so it finds no
    kernel compiled before (``measure`` gives each a new kernel cache directory)."""

    def residual_loss(params, xs, fresh=fresh):
        d2u = cr.vmap(cr.grad(cr.grad(lambda x: u(params, x))))(xs)
        return np.mean((d2u + np.pi**2 * np.sin(np.pi * xs)) ** 2)

    return cr.grad(residual_loss, backend=backend)


def jax_gradient():
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    def network(params, x):
        hidden = jnp.tanh(x * params["W1"][0] + params["b1"])
        hidden = jnp.tanh(hidden @ params["W2"] + params["b2"])
        return x * (1 - x) * (hidden @ params["W3"])[0]

    def residual_loss(params, xs):
        d2u = jax.vmap(jax.grad(jax.grad(lambda x: network(params, x))))(xs)
        return jnp.mean((d2u + jnp.pi**2 * jnp.sin(jnp.pi * xs)) ** 2)

    step = jax.jit(jax.grad(residual_loss))
    return lambda params, xs: jax.tree_util.tree_map(np.asarray, jax.block_until_ready(step(params, xs)))


def measure(make, params, xs) -> tuple[float, float, dict]:
    firsts = []
    for _ in range(3):
        os.environ["CHAINRULE_CACHE_DIR"] = tempfile.mkdtemp(prefix="chainrule-pinn-")
        gradient = make(next(FRESH))
        start = time.process_time()
        result = gradient(params, xs)
        firsts.append(time.process_time() - start)
    calls = []
    for _ in range(CALLS):
        start = time.process_time()
        gradient(params, xs)
        calls.append(time.process_time() - start)
    return median(firsts), median(calls), result


def main() -> None:
    params, xs = init(), np.linspace(0.0, 1.0, POINTS)
    makers = {
        "chainrule numpy": lambda fresh: chainrule_gradient("numpy", fresh),
        "chainrule llvm": lambda fresh: chainrule_gradient("llvm", fresh),
    }
    try:
        import jax  # noqa: F401

        makers["JAX jit"] = lambda fresh: jax_gradient()
    except ImportError:
        print("JAX is not installed: its row is skipped")
    rows = {name: measure(make, params, xs) for name, make in makers.items()}
    reference = rows.get("JAX jit", rows["chainrule numpy"])[2]
    print(f"gradient of the residual loss, {POINTS} collocation points, 16-16 tanh network; CPU time")
    print(f"{'implementation':<18} {'first call':>11} {'per call':>10} {'vs JAX':>7} {'max |dgrad|':>12}")
    jax_call = rows["JAX jit"][1] if "JAX jit" in rows else None
    for name, (first, call, result) in rows.items():
        difference = max(float(np.max(np.abs(result[k] - reference[k]))) for k in reference)
        ratio = f"{call / jax_call:.2f}" if jax_call else "-"
        print(f"{name:<18} {first:>9.3f} s {call * 1e6:>7.1f} us {ratio:>7} {difference:>12.1e}")


if __name__ == "__main__":
    main()
