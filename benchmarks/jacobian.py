"""Jacobians, Hessians and Hessian-vector products: chainrule against PyTorch and JAX.

    python3 benchmarks/jacobian.py          # about a minute; prints one table

Workloads (float64 everywhere):
(a) seed 001's network z = tanh(tanh(x @ W1) @ W2), 3 -> 3: dz/dx;
(b) a wider one, 64 -> 32 through 128 hidden units: dz/dx (chainrule picks reverse
    mode, 32 passes);
(c) the Hessian of an L2-regularized logistic regression with 100 weights and
    500 samples (100 Hessian-vector products);
(d) one Hessian-vector product of a 10,000-parameter model (100 x 100 weights).

chainrule runs its passes as one vectorized program (the default) and one call
per pass (``vectorize=False``). PyTorch runs ``torch.autograd.functional`` with
and without ``vectorize=True`` (one thread: two threads on two shared cores made
its times vary wildly); JAX runs ``jax.jit`` of ``jacrev``/``jacfwd``/``hessian``
or of ``jvp(grad)``. Every row's result is checked against chainrule's first.
Everything is timed in the same process in alternating blocks, medians of
repeated calls after a warm-up (compilation excluded); "ratio" is time / chainrule's
time; "passes/calls" are chainrule's passes (JVPs, VJPs or Hessian-vector products)
and the kernel calls that ran them; "peak" is chainrule's peak allocation in one call,
by tracemalloc. The machine is shared, so expect noise of tens of percent.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path
from statistics import median

import numpy as np

try:
    import chainrule as cr
except ImportError:  # run from a checkout: python3 benchmarks/jacobian.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr


def network(x, W1, W2):
    return np.tanh(np.tanh(x @ W1) @ W2)


def logistic_loss(w, X, y):
    z = X @ w
    return np.mean(np.logaddexp(0.0, z) - y * z) + 0.5e-2 * np.sum(w * w)


def model_loss(w, x):
    return np.mean(np.tanh(x @ w) ** 2) + 1e-3 * np.sum(w**4)


def workloads(rng):
    """name -> (chainrule candidates, torch function, jax function, arguments)."""
    small = (rng.standard_normal(3), rng.standard_normal((3, 3)), rng.standard_normal((3, 3)))
    wide = (rng.standard_normal(64), rng.standard_normal((64, 128)) / 8, rng.standard_normal((128, 32)) / 11)
    X = rng.standard_normal((500, 100))
    logistic = (rng.standard_normal(100) * 0.1, X, (X @ rng.standard_normal(100) > 0).astype(float))
    model = (rng.standard_normal((100, 100)) * 0.1, rng.standard_normal((32, 100)), rng.standard_normal((100, 100)))
    return {
        "(a) seed 001 dz/dx, 3->3": (small, "jacobian", lambda v: cr.jacobian(network, vectorize=v)),
        "(b) dz/dx, 64->32": (wide, "jacobian", lambda v: cr.jacobian(network, vectorize=v)),
        "(c) Hessian, n=100": (logistic, "hessian", lambda v: cr.hessian(logistic_loss, vectorize=v)),
        "(d) hvp, n=10,000": (model, "hvp", lambda v: cr.hvp(model_loss)),
    }


def torch_candidates(kind, args):
    import torch
    from torch.autograd import functional

    torch.set_num_threads(1)
    t = [torch.tensor(a) for a in args]
    if kind == "jacobian":
        f = lambda x: torch.tanh(torch.tanh(x @ t[1]) @ t[2])
        return {
            f"torch{' vectorize' if v else ''}": (lambda v=v: functional.jacobian(f, t[0], vectorize=v).numpy())
            for v in (False, True)
        }
    if kind == "hessian":

        def loss(w):
            z = t[1] @ w
            return torch.mean(torch.logaddexp(torch.zeros_like(z), z) - t[2] * z) + 0.5e-2 * torch.sum(w * w)

        return {
            f"torch{' vectorize' if v else ''}": (lambda v=v: functional.hessian(loss, t[0], vectorize=v).numpy())
            for v in (False, True)
        }
    model = lambda w: torch.mean(torch.tanh(t[1] @ w) ** 2) + 1e-3 * torch.sum(w**4)
    return {"torch hvp": lambda: functional.hvp(model, t[0], t[2])[1].numpy()}


def jax_candidates(kind, args):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    if kind == "jacobian":
        f = jax.jit(jax.jacrev(lambda x, W1, W2: jnp.tanh(jnp.tanh(x @ W1) @ W2)))
        return {"jax jit(jacrev)": lambda: np.asarray(f(*args))}
    if kind == "hessian":

        def loss(w, X, y):
            z = X @ w
            return jnp.mean(jnp.logaddexp(0.0, z) - y * z) + 0.5e-2 * jnp.sum(w * w)

        h = jax.jit(jax.hessian(loss))
        return {"jax jit(hessian)": lambda: np.asarray(h(*args))}
    model = lambda w, x: jnp.mean(jnp.tanh(x @ w) ** 2) + 1e-3 * jnp.sum(w**4)
    hvp = jax.jit(lambda w, x, v: jax.jvp(lambda w: jax.grad(model)(w, x), (w,), (v,))[1])
    return {"jax jit(jvp(grad))": lambda: np.asarray(hvp(*args))}


def timed(candidates: dict, blocks: int = 7, calls: int = 20) -> dict:
    times = {name: [] for name in candidates}
    for _ in range(blocks):
        for name, run in candidates.items():
            start = time.perf_counter()
            for _ in range(calls):
                run()
            times[name].append((time.perf_counter() - start) / calls)
    return {name: median(values) for name, values in times.items()}


def main() -> int:
    rng = np.random.default_rng(0)
    rows = []
    for title, (args, kind, make) in workloads(rng).items():
        candidates, passes = {}, {}
        for vectorize in (True,) if kind == "hvp" else (True, False):
            compiled = make(vectorize)
            name = f"chainrule{'' if vectorize else ' loop'}"
            candidates[name] = lambda c=compiled: c(*args)
            candidates[name]()
            passes[name] = f"{compiled.passes}/{compiled.kernel_calls}" if kind != "hvp" else "1/1"
        reference = candidates["chainrule"]()
        for peers in (torch_candidates, jax_candidates):
            try:
                candidates.update(peers(kind, args))
            except ImportError:
                pass
        for name, run in candidates.items():
            error = np.max(np.abs(np.asarray(run()) - reference)) / max(np.max(np.abs(reference)), 1e-300)
            assert error < 1e-10, f"{title}: {name} differs from chainrule by {error:.1e}"
        tracemalloc.start()
        candidates["chainrule"]()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        for name, seconds in timed(candidates, calls=3 if kind != "jacobian" else 20).items():
            rows.append((title, name, seconds, passes.get(name, ""), peak if name == "chainrule" else None))
    base = {title: seconds for title, name, seconds, _, _ in rows if name == "chainrule"}
    print(
        f"{'workload':<26} {'implementation':<22} {'median':>10} {'ratio':>7} {'passes/calls':>13} "
        f"{'peak (traced)':>14}"
    )
    for title, name, seconds, shown_passes, peak in rows:
        memory = f"{peak / 1e6:.2f} MB" if peak is not None else ""
        print(
            f"{title:<26} {name:<22} {seconds * 1e3:>8.3f}ms {seconds / base[title]:>7.2f} "
            f"{shown_passes:>13} {memory:>14}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
