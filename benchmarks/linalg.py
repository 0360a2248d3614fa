"""Linear algebra compiled by chainrule against NumPy/SciPy by hand and JAX, forward and gradient.

    python3 benchmarks/linalg.py                                   # a few minutes; one table
    python3 benchmarks/linalg.py --baseline /path/to/old/checkout  # adds "llvm before" (a subprocess)
    python3 benchmarks/linalg.py --pools                           # the two-OpenBLAS-pools measurement
    python3 benchmarks/linalg.py --gaps [--baseline ...]           # issue 16's native-LLVM gaps instead
    python3 benchmarks/linalg.py --einsum [--baseline ...]         # einsum contractions and gradients
    python3 benchmarks/linalg.py --einsum --isolate [--cases bij,bjk->bik]  # each cell in fresh processes

The ``--gaps`` table (n = 10, 100, 500, and 10,000 and 200,000 for sort; no JAX column) times the ops that ran NumPy callbacks or
computed more than NumPy on the LLVM backend: eigvalsh sum(w·eigvalsh(A)) and svdvals
sum(w·svd(A, compute_uv=False)) against NumPy's values-only calls; expm sum(W∘expm(A/4)) against
SciPy's expm (gradient: ``expm_frechet(Aᵀ/4, W)/4``); sort sum(w·sort(x)); searchsorted of n
values into a sorted grid of n (no gradient); scatter_add sum(w·out) with ``np.add.at(out, idx,
x)`` and repeated indices (gradient ``w[idx]``); triangular_solve sum(W∘solve_triangular(L, B)) and
qr sum(W∘R), against SciPy's solve_triangular and NumPy's qr (gradients written out).

The ``--einsum`` table (n = 16, 128; batch 8) times sum(W∘einsum(...)) of one argument, forward and
gradient, for 'ij,jk->ik', 'bij,bjk->bik', 'ii->', 'i,j->ij' and 'ij,jk,kl->il', against
``np.einsum(..., optimize=True)`` (the gradient: the einsum of the cotangent, or np.eye for the trace).
With ``--isolate`` every cell of every column is timed in a process of its own, the columns taking
turns (their order rotates per repeat, ``ISOLATED_REPEATS``): in one process, which side got fresh
pages from glibc for a megabyte temporary (~480 page faults a call) depended on what ran before it,
and moved the bij,bjk->bik n=128 ratio between 0.9 and 1.9.

Functions (float64, A symmetric positive definite n×n, B n×8, fixed weights W):
cholesky sum(W∘chol(A)); solve sum(W∘solve(A, B)); slogdet log|det A|; eigh sum(w·eigvalsh(A));
svd sum(w·svdvals(A)). "fwd" is the function, "grad" its gradient in A.

Columns: chainrule's NumPy backend; its LLVM backend (which now calls SciPy's LAPACK from the native
code) and, with --baseline, the LLVM backend of another checkout run in a subprocess on the same
arrays (the old one called NumPy back for every linear-algebra node; ``--baseline-backend numpy``:
its NumPy backend, "numpy before", for the NumPy backend's call cost); NumPy/SciPy by hand (the
forward call, and the gradient written out with the same matrix identities and LAPACK calls); JAX
``jit`` when it is installed. Each block builds a fresh compiled function (kernels are cached per
function object), calls it once to compile, then times many calls; a figure is the median over
blocks of the per-block median, in microseconds of the process's CPU time (on a shared machine,
wall time counts other jobs' time slices). Ratios are against "by hand" in the same run.

BLAS runs on one thread (OPENBLAS_NUM_THREADS=1 unless set): NumPy's and SciPy's wheels each bring
an OpenBLAS with its own thread pool, and on a 2-core machine shared with other jobs threaded calls
varied a hundredfold (``--pools`` measures that). The machine is shared: compare ratios, not times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads OpenBLAS

import numpy as np
import scipy.linalg

try:
    import chainrule as cr
except ImportError:  # run from a checkout: python3 benchmarks/linalg.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr

SIZES = (8, 64, 256)
OPS = ("cholesky", "solve", "slogdet", "eigh", "svd")
BLOCKS = 3


def problem(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    m = rng.standard_normal((n, n))
    return {
        "a": m @ m.T / n + np.eye(n),
        "b": rng.standard_normal((n, 8)),
        "w_matrix": rng.uniform(0.5, 1.5, (n, n)),
        "w_rhs": rng.uniform(0.5, 1.5, (n, 8)),
        "w_vector": rng.uniform(0.5, 1.5, n),
    }


def losses(p: dict[str, np.ndarray], xp=np) -> dict[str, Callable]:
    """The five scalar functions of A, written with ``xp`` (NumPy, traced by chainrule, or jax.numpy)."""
    w_matrix, w_rhs, w_vector, b = (xp.asarray(p[k]) for k in ("w_matrix", "w_rhs", "w_vector", "b"))
    return {
        "cholesky": lambda a: xp.sum(w_matrix * xp.linalg.cholesky(a)),
        "solve": lambda a: xp.sum(w_rhs * xp.linalg.solve(a, b)),
        "slogdet": lambda a: xp.linalg.slogdet(a)[1],
        "eigh": lambda a: xp.sum(w_vector * xp.linalg.eigvalsh(a)),
        "svd": lambda a: xp.sum(w_vector * xp.linalg.svd(a, compute_uv=False)),
    }


def by_hand(p: dict[str, np.ndarray]) -> dict[str, tuple[Callable, Callable]]:
    """NumPy/SciPy written out: (function, gradient) per op, the gradients by the rules
    docs/linalg.md states (Murray 2016 for Cholesky, Giles 2008 for the rest)."""
    w_matrix, w_rhs, w_vector, b = p["w_matrix"], p["w_rhs"], p["w_vector"], p["b"]
    n = len(w_vector)
    phi = np.tri(n) - 0.5 * np.eye(n)
    solve_triangular = scipy.linalg.solve_triangular

    def cholesky_grad(a):
        chol = np.linalg.cholesky(a)
        inner = solve_triangular(chol, (phi * (chol.T @ w_matrix)).T, lower=True, trans="T")  # L⁻ᵀ Pᵀ
        s = solve_triangular(chol, inner.T, lower=True, trans="T")  # L⁻ᵀ P L⁻¹ (transposed back)
        return (s + s.T) / 2

    def solve_grad(a):
        x = np.linalg.solve(a, b)
        return -np.linalg.solve(a.T, w_rhs) @ x.T

    def eigh_grad(a):
        _, v = np.linalg.eigh(a)
        return (v * w_vector) @ v.T

    def svd_grad(a):
        u, _, vh = np.linalg.svd(a)
        return (u * w_vector) @ vh

    forward = losses(p)
    return {
        "cholesky": (forward["cholesky"], cholesky_grad),
        "solve": (forward["solve"], solve_grad),
        "slogdet": (forward["slogdet"], lambda a: np.linalg.inv(a).T),
        "eigh": (forward["eigh"], eigh_grad),
        "svd": (forward["svd"], svd_grad),
    }


def calls_for(n: int) -> int:
    return {8: 200, 64: 50}.get(n, 10)


def timed(make: Callable[[], Callable], argument: np.ndarray, calls: int) -> float:
    """Median over blocks of the median call time (µs), each block with a fresh function from ``make``."""
    per_block = []
    for _ in range(BLOCKS):
        function = make()
        function(argument)  # compile and warm up
        times = []
        for _ in range(calls):
            start = time.process_time()
            function(argument)
            times.append(time.process_time() - start)
        per_block.append(median(times))
    return median(per_block) * 1e6


def chainrule_times(backend: str) -> dict[str, float]:
    """``"op n mode" -> µs`` for chainrule's ``backend``."""
    results = {}
    for n in SIZES:
        p = problem(n)
        for op in OPS:
            loss = losses(p)[op]
            for mode, transform in (("fwd", cr.jit), ("grad", cr.grad)):
                results[f"{op} {n} {mode}"] = timed(lambda: transform(loss, backend=backend), p["a"], calls_for(n))
    return results


def reference_times() -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {"by hand": {}}
    try:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        results["jax jit"] = {}
    except ImportError:
        jax = None
    for n in SIZES:
        p = problem(n)
        for op, (function, gradient) in by_hand(p).items():
            for mode, call in (("fwd", function), ("grad", gradient)):
                results["by hand"][f"{op} {n} {mode}"] = timed(lambda call=call: call, p["a"], calls_for(n))
            if jax is not None:
                loss = losses(p, jnp)[op]
                for mode, make in (("fwd", lambda: jax.jit(loss)), ("grad", lambda: jax.jit(jax.grad(loss)))):
                    results["jax jit"][f"{op} {n} {mode}"] = timed(
                        lambda make=make: _blocking(make()), p["a"], calls_for(n)
                    )
    return results


def _blocking(function: Callable) -> Callable:
    return lambda a: function(a).block_until_ready()


def baseline_times(checkout: str, table: str = "", backend: str = "llvm") -> dict[str, float]:
    """``backend`` (llvm or numpy) of another checkout, in a subprocess importing chainrule from
    there; ``table``: "--gaps", "--einsum" or "" (the main table)."""
    environment = {**os.environ, "PYTHONPATH": checkout}
    command = [sys.executable, __file__, "--worker", backend] + ([table] if table else [])
    output = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def check_values() -> None:
    """Both backends' values and gradients are the hand-written ones (a wrong answer is not a time)."""
    p = problem(8)
    for op, (function, gradient) in by_hand(p).items():
        for backend in ("numpy", "llvm"):
            loss = losses(p)[op]
            assert np.isclose(cr.jit(loss, backend=backend)(p["a"]), function(p["a"]), rtol=1e-10), (op, backend)
            assert np.allclose(cr.grad(loss, backend=backend)(p["a"]), gradient(p["a"]), rtol=1e-8), (op, backend)


def table(columns: dict[str, dict[str, float]]) -> str:
    names = list(columns)
    header = f"{'op':<9}{'n':>5} {'':<5}" + "".join(f"{name:>13}" for name in names)
    header += "".join(f"{'/hand ' + name:>17}" for name in names if name != "by hand")
    lines = [header, "-" * len(header)]
    for op in OPS:
        for n in SIZES:
            for mode in ("fwd", "grad"):
                key = f"{op} {n} {mode}"
                hand = columns["by hand"][key]
                row = f"{op:<9}{n:>5} {mode:<5}" + "".join(f"{columns[c][key]:13.1f}" for c in names)
                row += "".join(f"{columns[c][key] / hand:17.2f}" for c in names if c != "by hand")
                lines.append(row)
    return "\n".join(lines)


def pools(n: int = 200, calls: int = 30) -> None:
    """Two OpenBLAS pools: NumPy's and SciPy's calls, alone and alternating, with this process's threads."""
    import scipy.linalg.blas as blas

    p = problem(n)
    a = p["a"]
    chol = np.asfortranarray(np.linalg.cholesky(a))
    rhs = np.asfortranarray(a)
    numpy_cholesky = lambda: np.linalg.cholesky(a)  # (NumPy's OpenBLAS)
    numpy_matmul = lambda: a @ a
    scipy_trsm = lambda: blas.dtrsm(1.0, chol, rhs, lower=1)  # (SciPy's OpenBLAS)
    scipy_gemm = lambda: blas.dgemm(1.0, rhs, rhs)
    gradient = cr.grad(losses(p)["cholesky"], backend="llvm")
    cases = {
        "numpy cholesky": numpy_cholesky,
        "scipy trsm": scipy_trsm,
        "numpy matmul then scipy gemm": lambda: (numpy_matmul(), scipy_gemm()),
        "numpy cholesky then scipy trsm": lambda: (numpy_cholesky(), scipy_trsm()),
        "scipy gemm then scipy trsm": lambda: (scipy_gemm(), scipy_trsm()),
        "llvm cholesky gradient": lambda: gradient(a),
        "numpy matmul then llvm gradient": lambda: (numpy_matmul(), gradient(a)),
    }
    print(f"n = {n}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, median of {calls} calls")
    for name, case in cases.items():
        print(f"  {name:<34} {timed(lambda case=case: lambda _: case(), a, calls) / 1e3:9.3f} ms")


# ---- einsum (--einsum) ----------------------------------------------------------------------------

EINSUM_SIZES = (16, 128)
EINSUM_BATCH = 8


def einsum_cases(n: int) -> dict[str, tuple[np.ndarray, Callable, Callable]]:
    """case -> (argument, a loss of it through np.einsum, its gradient by hand with np.einsum)."""
    rng = np.random.default_rng(n + 7)
    x, b, c, w = (rng.standard_normal((n, n)) for _ in range(4))
    batched, batched_b, batched_w = (rng.standard_normal((EINSUM_BATCH, n, n)) for _ in range(3))
    u, v = rng.standard_normal(n), rng.standard_normal(n)
    einsum = lambda *args: np.einsum(*args, optimize=True)  # NumPy's best: BLAS where it can
    return {
        "ij,jk->ik": (x, lambda x: np.sum(w * einsum("ij,jk->ik", x, b)), lambda x: einsum("ik,jk->ij", w, b)),
        "bij,bjk->bik": (
            batched,
            lambda x: np.sum(batched_w * einsum("bij,bjk->bik", x, batched_b)),
            lambda x: einsum("bik,bjk->bij", batched_w, batched_b),
        ),
        "ii->": (x, lambda x: einsum("ii->", x), lambda x: np.eye(len(x))),
        "i,j->ij": (u, lambda u: np.sum(w * einsum("i,j->ij", u, v)), lambda u: einsum("ij,j->i", w, v)),
        "ij,jk,kl->il": (
            x,
            lambda x: np.sum(w * einsum("ij,jk,kl->il", x, b, c)),
            lambda x: einsum("il,jk,kl->ij", w, b, c),
        ),
    }


def einsum_times(backends: tuple[str, ...] = ("numpy", "llvm")) -> dict[str, dict[str, float]]:
    columns: dict[str, dict[str, float]] = {"numpy backend": {}, "llvm": {}, "by hand": {}}
    for n in EINSUM_SIZES:
        for name, (argument, loss, gradient) in einsum_cases(n).items():
            for backend in backends:
                for mode, transform in (("fwd", cr.jit), ("grad", cr.grad)):
                    make = lambda: transform(loss, backend=backend)  # a fresh function per block
                    columns[f"{backend} backend" if backend == "numpy" else "llvm"][f"{name} {n} {mode}"] = timed(
                        make, argument, 200 if n <= 16 else 30
                    )
            for mode, call in (("fwd", loss), ("grad", gradient)):
                calls = 200 if n <= 16 else 30
                columns["by hand"][f"{name} {n} {mode}"] = timed(lambda call=call: call, argument, calls)
    return columns


ISOLATED_REPEATS = 3


def einsum_cell(side: str, key: str) -> float:
    """µs per call of one cell ("bij,bjk->bik 128 fwd") of one side: "numpy", "llvm" or "hand"."""
    name, n, mode = key.split()
    argument, loss, gradient = einsum_cases(int(n))[name]
    calls = 200 if int(n) <= 16 else 30
    if side == "hand":
        call = loss if mode == "fwd" else gradient
        return timed(lambda: call, argument, calls)
    transform = cr.jit if mode == "fwd" else cr.grad
    return timed(lambda: transform(loss, backend=side), argument, calls)


def isolated_einsum_times(baseline: str | None, baseline_backend: str, cases: list[str] | None) -> dict:
    """The --einsum columns, each cell timed in fresh processes, the sides interleaved."""
    sides = {"numpy backend": ("numpy", None)}
    if baseline:
        sides[f"{baseline_backend} before"] = (baseline_backend, baseline)
    sides |= {"llvm": ("llvm", None), "by hand": ("hand", None)}
    keys = [
        f"{name} {n} {mode}"
        for n in EINSUM_SIZES
        for name in einsum_cases(n)
        if cases is None or name in cases
        for mode in ("fwd", "grad")
    ]
    samples: dict[str, dict[str, list[float]]] = {column: {key: [] for key in keys} for column in sides}
    for key in keys:
        for repeat in range(ISOLATED_REPEATS):
            columns = list(sides)
            columns = columns[repeat % len(columns) :] + columns[: repeat % len(columns)]
            for column in columns:
                side, checkout = sides[column]
                path = checkout or str(Path(__file__).resolve().parents[1])
                environment = {**os.environ, "PYTHONPATH": path}
                command = [sys.executable, __file__, "--einsum", "--cell", side, key]
                output = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
                samples[column][key].append(float(output.stdout.strip().splitlines()[-1]))
    return {column: {key: median(times) for key, times in cells.items()} for column, cells in samples.items()}


def check_einsum_values() -> None:
    for name, (argument, loss, gradient) in einsum_cases(6).items():
        for backend in ("numpy", "llvm"):
            value, expected = cr.jit(loss, backend=backend)(argument), loss(argument)
            np.testing.assert_allclose(value, expected, rtol=1e-10, err_msg=name)
            np.testing.assert_allclose(cr.grad(loss, backend=backend)(argument), gradient(argument), err_msg=name)


def einsum_report(
    baseline: str | None, backend: str = "llvm", isolate: bool = False, cases: list[str] | None = None
) -> None:
    check_einsum_values()
    if isolate:
        columns = isolated_einsum_times(baseline, backend, cases)
    else:
        columns = einsum_times()
    if baseline and not isolate:
        before = {f"{backend} before": baseline_times(baseline, "--einsum", backend)}
        columns = {"numpy backend": columns["numpy backend"]} | before | {n: columns[n] for n in ("llvm", "by hand")}
    names = list(columns)
    header = f"{'subscripts':<14}{'n':>5} {'':<5}" + "".join(f"{name:>14}" for name in names)
    header += "".join(f"{'/hand ' + name:>19}" for name in names if name != "by hand")
    lines = [header, "-" * len(header)]
    for key, hand in columns["by hand"].items():
        name, n, mode = key.split()
        row = f"{name:<14}{n:>5} {mode:<5}" + "".join(f"{columns[c][key]:14.1f}" for c in names)
        lines.append(row + "".join(f"{columns[c][key] / hand:19.2f}" for c in names if c != "by hand"))
    each = f"each cell in a fresh process, median of {ISOLATED_REPEATS} (interleaved); " if isolate else ""
    print(
        f"µs of CPU per call, {each}median of {BLOCKS} blocks; batch {EINSUM_BATCH}; by hand np.einsum(optimize=True)"
    )
    print("\n".join(lines))


# ---- issue 16's gaps (--gaps) -----------------------------------------------------------------

GAP_SIZES = (10, 100, 500)
GAP_OPS = ("eigvalsh", "svdvals", "expm", "triangular_solve", "qr", "sort", "searchsorted", "scatter_add")
NO_GRADIENT = ("searchsorted",)


def gap_problem(n: int) -> dict[str, np.ndarray]:
    p = problem(n)
    rng = np.random.default_rng(n + 1)
    return {
        **p,
        "lower": np.linalg.cholesky(p["a"]),
        "general": rng.standard_normal((n, n)),
        "x": rng.standard_normal(n),
        "grid": np.sort(rng.standard_normal(n)),
        "index": rng.integers(0, max(n // 2, 1), n),  # repeated positions: np.add.at accumulates
    }


def gap_functions(p: dict[str, np.ndarray]) -> dict[str, tuple[str, Callable, Callable | None]]:
    """op -> (argument name, the function, its gradient by hand with NumPy/SciPy)."""
    w_vector, w_matrix, grid, index = p["w_vector"], p["w_matrix"], p["grid"], p["index"]
    b, w_rhs = p["b"], p["w_rhs"]
    n = len(w_vector)

    def scatter_add(x):
        out = np.zeros(n)
        np.add.at(out, index, x)
        return np.sum(w_vector * out)

    def eigvalsh_grad(a):
        _, v = np.linalg.eigh(a)
        return (v * w_vector) @ v.T

    def svdvals_grad(a):
        u, _, vh = np.linalg.svd(a, full_matrices=False)
        return (u * w_vector) @ vh

    def triangular_grad(lower):
        x = scipy.linalg.solve_triangular(lower, b, lower=True)
        y = scipy.linalg.solve_triangular(lower, w_rhs, lower=True, trans="T")
        return -np.tril(y @ x.T)

    def qr_grad(a):
        # R̄ = W, Q̄ = 0: Ā = Q copyltu(R Wᵀ) R⁻ᵀ (Walter and Lehmann 2018)
        q, r = np.linalg.qr(a)
        m = r @ w_matrix.T
        c = np.tril(m) + np.tril(m, -1).T
        return scipy.linalg.solve_triangular(r, (q @ c).T).T

    return {
        "eigvalsh": ("a", lambda a: np.sum(w_vector * np.linalg.eigvalsh(a)), eigvalsh_grad),
        "svdvals": ("a", lambda a: np.sum(w_vector * np.linalg.svd(a, compute_uv=False)), svdvals_grad),
        "expm": (
            "a",
            lambda a: np.sum(w_matrix * scipy.linalg.expm(a / 4)),
            lambda a: scipy.linalg.expm_frechet(a.T / 4, w_matrix, compute_expm=False) / 4,
        ),
        "triangular_solve": (
            "lower",
            lambda lower: np.sum(w_rhs * scipy.linalg.solve_triangular(lower, b, lower=True)),
            triangular_grad,
        ),
        "qr": ("general", lambda a: np.sum(w_matrix * np.linalg.qr(a)[1]), qr_grad),
        **sort_functions(w_vector),
        "searchsorted": ("x", lambda x: np.searchsorted(grid, x), None),
        "scatter_add": ("x", scatter_add, lambda x: w_vector[index]),
    }


# the sort rows again where the sort, not the call, is the time (only sort's arrays at these sizes)
SORT_SIZES = (10_000, 200_000)


def sort_functions(w_vector: np.ndarray) -> dict[str, tuple[str, Callable, Callable]]:
    """sort: sum(w·sort(x)), its gradient by hand one argsort and a write through it."""

    def sort_grad(x):
        gradient = np.empty_like(x)
        gradient[np.argsort(x)] = w_vector
        return gradient

    return {"sort": ("x", lambda x: np.sum(w_vector * np.sort(x)), sort_grad)}


def sort_problems() -> list[tuple[int, dict[str, tuple[str, Callable, Callable]], np.ndarray]]:
    """(n, sort_functions, x) at each of SORT_SIZES."""
    problems = []
    for n in SORT_SIZES:
        rng = np.random.default_rng(n + 1)
        problems.append((n, sort_functions(rng.uniform(0.5, 1.5, n)), rng.standard_normal(n)))
    return problems


def gap_modes(gradient: Callable | None) -> tuple[str, ...]:
    return ("fwd",) if gradient is None else ("fwd", "grad")


def gap_chainrule_times(backend: str) -> dict[str, float]:
    results = {}
    for n in GAP_SIZES:
        p = gap_problem(n)
        for op, (argument, function, gradient) in gap_functions(p).items():
            for mode in gap_modes(gradient):
                transform = cr.jit if mode == "fwd" else cr.grad
                make = lambda: transform(function, backend=backend)  # a fresh function per block
                results[f"{op} {n} {mode}"] = timed(make, p[argument], calls_for(n))
    for n, functions, x in sort_problems():
        for op, (_, function, _) in functions.items():
            for mode, transform in (("fwd", cr.jit), ("grad", cr.grad)):
                results[f"{op} {n} {mode}"] = timed(lambda: transform(function, backend=backend), x, calls_for(n))
    return results


def gap_by_hand_times() -> dict[str, float]:
    results = {}
    for n in GAP_SIZES:
        p = gap_problem(n)
        for op, (argument, function, gradient) in gap_functions(p).items():
            for mode in gap_modes(gradient):
                call = function if mode == "fwd" else gradient
                results[f"{op} {n} {mode}"] = timed(lambda call=call: call, p[argument], calls_for(n))
    for n, functions, x in sort_problems():
        for op, (_, function, gradient) in functions.items():
            for mode, call in (("fwd", function), ("grad", gradient)):
                results[f"{op} {n} {mode}"] = timed(lambda call=call: call, x, calls_for(n))
    return results


def check_gap_values() -> None:
    p = gap_problem(10)
    for op, (argument, function, gradient) in gap_functions(p).items():
        x = p[argument]
        for backend in ("numpy", "llvm"):
            np.testing.assert_allclose(cr.jit(function, backend=backend)(x), function(x), rtol=1e-10, err_msg=op)
            if gradient is not None:
                np.testing.assert_allclose(cr.grad(function, backend=backend)(x), gradient(x), rtol=1e-8, err_msg=op)


def gap_table(columns: dict[str, dict[str, float]]) -> str:
    names = list(columns)
    header = f"{'op':<17}{'n':>5} {'':<5}" + "".join(f"{name:>14}" for name in names)
    header += "".join(f"{'/hand ' + name:>19}" for name in names if name != "by hand")
    lines = [header, "-" * len(header)]
    for op in GAP_OPS:
        for n in GAP_SIZES + (SORT_SIZES if op == "sort" else ()):
            for mode in ("fwd", "grad"):
                key = f"{op} {n} {mode}"
                if key not in columns["by hand"]:
                    continue
                hand = columns["by hand"][key]
                row = f"{op:<17}{n:>5} {mode:<5}" + "".join(f"{columns[c][key]:14.1f}" for c in names)
                row += "".join(f"{columns[c][key] / hand:19.2f}" for c in names if c != "by hand")
                lines.append(row)
    return "\n".join(lines)


def gaps(baseline: str | None, backend: str = "llvm") -> None:
    check_gap_values()
    columns = {"numpy backend": gap_chainrule_times("numpy")}
    if baseline:
        columns[f"{backend} before"] = baseline_times(baseline, "--gaps", backend)
    columns["llvm"] = gap_chainrule_times("llvm")
    columns["by hand"] = gap_by_hand_times()
    print(f"µs of CPU per call, median of {BLOCKS} blocks; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    print(gap_table(columns))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="a checkout whose LLVM backend to time too (a subprocess)")
    parser.add_argument("--baseline-backend", default="llvm", choices=("llvm", "numpy"), help="its backend to time")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--pools", action="store_true", help="time NumPy's and SciPy's OpenBLAS pools together")
    parser.add_argument("--gaps", action="store_true", help="time issue 16's native-LLVM gaps instead")
    parser.add_argument("--einsum", action="store_true", help="time einsum contractions and their gradients")
    parser.add_argument("--isolate", action="store_true", help="--einsum: each cell in fresh processes, interleaved")
    parser.add_argument("--cases", help="--einsum: only these subscripts (separated by spaces)")
    parser.add_argument("--cell", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.cell:
        print(einsum_cell(*options.cell))
        return
    if options.worker:
        if options.einsum:
            columns = einsum_times((options.worker,))
            print(json.dumps(columns["numpy backend" if options.worker == "numpy" else "llvm"]))
            return
        times = gap_chainrule_times if options.gaps else chainrule_times
        print(json.dumps(times(options.worker)))
        return
    if options.gaps:
        gaps(options.baseline, options.baseline_backend)
        return
    if options.einsum:
        cases = options.cases.split() if options.cases else None
        einsum_report(options.baseline, options.baseline_backend, options.isolate, cases)
        return
    if options.pools:
        pools()
        return
    check_values()
    columns = {"numpy backend": chainrule_times("numpy")}
    if options.baseline:
        columns[f"{options.baseline_backend} before"] = baseline_times(options.baseline, "", options.baseline_backend)
    columns["llvm"] = chainrule_times("llvm")
    columns.update(reference_times())
    print(f"µs of CPU per call, median of {BLOCKS} blocks; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    print(table(columns))


if __name__ == "__main__":
    main()
