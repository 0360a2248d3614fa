"""Memory stays flat: compiling and dropping functions frees their native code and the JIT's
per-module bookkeeping, and calling a compiled function a million times allocates nothing
that stays. Measured as the process's resident set (RSS) and with tracemalloc."""

from __future__ import annotations

import gc
import itertools
import os
import tracemalloc

import numpy as np
import pytest

import chainrule as cr
from chainrule.backends.llvm import engine

TWICE = """
define double @twice(double %x) {
  %y = fmul double %x, 2.0
  ret double %y
}"""


def resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc/self/statm (Linux)")


def test_linking_and_dropping_a_thousand_modules_keeps_memory_flat():
    for _ in range(engine.LIBRARIES_PER_JIT):  # warm up: the first LLJIT fills and is replaced
        engine.compile_ir(TWICE, name="twice").address("twice")
    gc.collect()
    before = resident_mib()
    for _ in range(1000):
        module = engine.compile_ir(TWICE, name="twice")
        module.address("twice")
        del module
    gc.collect()
    # each module left a ~9 KB JIT library behind before the LLJIT was replaced: 9 MB per 1,000
    assert resident_mib() - before < 3.0


def test_compiling_and_dropping_gradients_keeps_memory_flat(monkeypatch):
    monkeypatch.setattr(engine, "LIBRARIES_PER_JIT", 32)  # replaced JITs sooner: a shorter warm-up
    x = np.linspace(0.0, 1.0, 10)
    tags = itertools.count(1)

    def compile_and_drop(backend):
        # a closure value of its own per function: one of the same code and closure values would
        # find the kernels of the one before (transforms/reuse.py) and compile nothing to free. An
        # int read only for its truth leaves the program the same (a new float would be a new
        # constant, and fill SymPy's caches of numbers, which is not what is measured here).
        tag = next(tags)

        def loss(v):
            return np.sum(np.sin(v) ** 2) if tag else 0.0

        gradient = cr.grad(loss, backend=backend)
        np.testing.assert_allclose(gradient(x), np.sin(2 * x), rtol=1e-13)
        assert gradient.cache_info().misses == 1  # it compiled: nothing was reused

    for backend in ("numpy", "llvm"):
        for _ in range(256):  # warm up: the llvm side grows ~4 MB over its first few hundred, then stays
            compile_and_drop(backend)
        gc.collect()
        before = resident_mib()
        for _ in range(300):
            compile_and_drop(backend)
        gc.collect()
        assert resident_mib() - before < 2.0, backend  # it grew ~3 MB per 300 llvm functions
        tracemalloc.start(8)  # two windows: a leak grows in both, a cache warming up in the first only
        for _ in range(25):
            compile_and_drop(backend)
        gc.collect()
        first = tracemalloc.take_snapshot()  # (before the count: whatever it keeps is in both)
        after_first, _ = tracemalloc.get_traced_memory()
        for _ in range(50):
            compile_and_drop(backend)
        gc.collect()
        after_second, _ = tracemalloc.get_traced_memory()
        second = tracemalloc.take_snapshot()
        tracemalloc.stop()
        # Under 2 KB of Python objects per function: bounded memo tables (the op table's inferred
        # types, cached lowerings) still fill in a long run, so a few hundred bytes each can stay.
        # Counted where the number of blocks grew: a leak adds blocks per function compiled. A
        # table that resized (the weak registries of functions, holding every function alive in
        # the whole test session) is one block more, of a size set by everything else alive: in a
        # full run it doubled inside the window, +36 KB at a time, with nothing leaking
        stats = second.compare_to(first, "traceback")
        multiplied = sum(stat.size_diff for stat in stats if stat.count_diff > 1)
        grown = "\n".join(
            str(stat) + "\n  " + "\n  ".join(stat.traceback.format()) for stat in stats[:6] if stat.count_diff > 1
        )
        assert multiplied < 100 * 1024, f"{backend}: what grew most:\n{grown}"
        assert after_second - after_first < 400 * 1024, backend


def test_a_million_calls_leave_nothing_behind():
    gradient = cr.grad(lambda v: v * np.sin(v), backend="llvm")
    values = [float(v) for v in np.linspace(0.0, 1.0, 1000)]
    for value in values:
        gradient(value)
    gc.collect()
    before = resident_mib()
    for _ in range(1000):
        for value in values:
            gradient(value)
    gc.collect()
    assert resident_mib() - before < 1.0
    tracemalloc.start()  # slows each call: a sample of the calls, to see Python objects that stay
    for value in values * 10:
        gradient(value)
    gc.collect()
    python_bytes, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert python_bytes < 16 * 1024
