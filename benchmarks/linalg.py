"""Linear algebra compiled by chainrule against the direct NumPy/SciPy call, at n = 200.

    python3 benchmarks/linalg.py            # about 20 s
    python3 benchmarks/linalg.py --n 400

For solve, cholesky and slogdet: the forward function compiled by each backend
(``cr.jit(f, backend=...)``) against calling NumPy on the same arrays, and the compiled
gradient (``cr.grad``) for scale. The linear-algebra primitives run LAPACK through NumPy/SciPy
on both backends (the LLVM backend calls them back from native code), so the ratio measures
chainrule's per-call overhead. Every figure is the median of many calls in this one process;
the machine is shared, so compare the ratios, not the times.

NumPy's and SciPy's wheels each bring their own OpenBLAS with its own thread pool. Gradients
call both (NumPy's LAPACK, SciPy's BLAS trsm; the LLVM backend's gemm is SciPy's too), and on a
loaded machine the two pools' spinning threads can slow each call by 100x; run with
``OPENBLAS_NUM_THREADS=1`` to see the per-call cost without that contention.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np

try:
    import chainrule as cr
except ImportError:  # run from a checkout: python3 benchmarks/linalg.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr


def median_seconds(call, repeats: int) -> float:
    call()  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return median(times)


def functions(n: int):
    rng = np.random.default_rng(0)
    m = rng.standard_normal((n, n))
    spd = m @ m.T + n * np.eye(n)
    b = rng.standard_normal((n, 8))
    return {
        "solve": (lambda a, b: np.linalg.solve(a, b), (spd, b), lambda a, b: np.sum(np.linalg.solve(a, b))),
        "cholesky": (lambda a: np.linalg.cholesky(a), (spd,), lambda a: np.sum(np.linalg.cholesky(a))),
        "slogdet": (lambda a: np.linalg.slogdet(a)[1], (spd,), lambda a: np.linalg.slogdet(a)[1]),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=200)
    options = parser.parse_args(argv)
    print(f"n = {options.n}, median of {options.repeats} calls (ms); ratio = compiled / NumPy")
    header = f"{'function':<10} {'NumPy':>8} {'numpy be':>9} {'ratio':>6} {'llvm be':>8} {'ratio':>6} {'grad np':>8} {'grad llvm':>9}"
    print(header)
    print("-" * len(header))
    for name, (fn, args, loss) in functions(options.n).items():
        direct = median_seconds(lambda: fn(*args), options.repeats)
        numpy_backend = cr.jit(fn, backend="numpy")
        llvm_backend = cr.jit(fn, backend="llvm")
        compiled_numpy = median_seconds(lambda: numpy_backend(*args), options.repeats)
        compiled_llvm = median_seconds(lambda: llvm_backend(*args), options.repeats)
        grad_numpy, grad_llvm = cr.grad(loss, backend="numpy"), cr.grad(loss, backend="llvm")
        gradient_numpy = median_seconds(lambda: grad_numpy(*args), max(options.repeats // 4, 5))
        gradient_llvm = median_seconds(lambda: grad_llvm(*args), max(options.repeats // 4, 5))
        print(
            f"{name:<10} {direct * 1e3:8.3f} {compiled_numpy * 1e3:9.3f} {compiled_numpy / direct:6.2f} "
            f"{compiled_llvm * 1e3:8.3f} {compiled_llvm / direct:6.2f} {gradient_numpy * 1e3:8.3f} {gradient_llvm * 1e3:9.3f}"
        )


if __name__ == "__main__":
    main()
