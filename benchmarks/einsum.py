"""np.einsum compiled by chainrule against NumPy's own np.einsum(optimize=True).

    python3 benchmarks/einsum.py          # about half a minute; prints one table

Workloads (float64):
(a) attention scores 'bhqd,bhkd->bhqk': batch 8, 8 heads, 128 queries and keys of width 64;
(b) a 3-operand chain 'ij,jk,kl->il' of 500x60, 60x500 and 500x400 matrices (the order matters:
    einsum_path contracts the last two first);
(c) a batched bilinear form 'bi,ij,bj->b' (batch 512, width 256).

chainrule compiles the forward with ``cr.jit`` on each backend (NumPy source; LLVM); NumPy runs
``np.einsum(..., optimize=True)``, which contracts in the same order (np.einsum_path) but leaves
contractions with batch axes to its own loops. Every result is checked against NumPy's.
BLAS runs on one thread (OPENBLAS_NUM_THREADS=1 unless set): NumPy and both backends then call the
same single-threaded gemm, and two threads on two cores shared with other jobs made every time vary
tenfold. Everything runs in the same process in alternating blocks, medians of repeated calls after a
warm-up (compilation excluded); "ratio" is chainrule's time / NumPy's (the target is <= 1.3).
The machine is shared, so expect noise of tens of percent.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from statistics import median

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads OpenBLAS

import numpy as np

try:
    import chainrule as cr
except ImportError:  # run from a checkout: python3 benchmarks/einsum.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr

BLOCKS, CALLS_PER_BLOCK = 7, 5


def workloads(rng):
    """name -> (subscripts, operands)."""
    return {
        "(a) bhqd,bhkd->bhqk": (
            "bhqd,bhkd->bhqk",
            [rng.standard_normal((8, 8, 128, 64)), rng.standard_normal((8, 8, 128, 64))],
        ),
        "(b) ij,jk,kl->il": (
            "ij,jk,kl->il",
            [rng.standard_normal((500, 60)), rng.standard_normal((60, 500)), rng.standard_normal((500, 400))],
        ),
        "(c) bi,ij,bj->b": (
            "bi,ij,bj->b",
            [rng.standard_normal((512, 256)), rng.standard_normal((256, 256)), rng.standard_normal((512, 256))],
        ),
    }


def candidates(subscripts, operands):
    """label -> a call computing the einsum."""
    compiled = {
        backend: cr.jit(lambda *xs: np.einsum(subscripts, *xs), backend=backend) for backend in ("numpy", "llvm")
    }
    expected = np.einsum(subscripts, *operands, optimize=True)
    for fn in compiled.values():
        np.testing.assert_allclose(fn(*operands), expected, rtol=1e-10, atol=1e-10)
    return {
        "numpy einsum(optimize=True)": lambda: np.einsum(subscripts, *operands, optimize=True),
        "chainrule jit, numpy backend": lambda: compiled["numpy"](*operands),
        "chainrule jit, llvm backend": lambda: compiled["llvm"](*operands),
    }


def medians(calls: dict) -> dict:
    """The median seconds per call of each candidate, timed in alternating blocks."""
    for call in calls.values():
        call()  # warm-up
    times: dict = {label: [] for label in calls}
    for _ in range(BLOCKS):
        for label, call in calls.items():
            for _ in range(CALLS_PER_BLOCK):
                start = time.perf_counter()
                call()
                times[label].append(time.perf_counter() - start)
    return {label: median(samples) for label, samples in times.items()}


def main():
    rng = np.random.default_rng(0)
    print(f"{'workload':<22} {'candidate':<30} {'median ms':>10} {'ratio':>7}")
    for name, (subscripts, operands) in workloads(rng).items():
        timed = medians(candidates(subscripts, operands))
        baseline = timed["numpy einsum(optimize=True)"]
        for label, seconds in timed.items():
            print(f"{name:<22} {label:<30} {seconds * 1e3:>10.3f} {seconds / baseline:>7.2f}")


if __name__ == "__main__":
    main()
