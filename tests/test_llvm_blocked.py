"""Point-blocked chains (chains.py, blocked.py): consecutive loops over the same points run block by
block, their intermediates in block-sized scratch.

- Results equal the NumPy backend's at sizes around the block (not multiples of it, one point,
  empty), for elementwise chains and chains ending in full reductions.
- Results are bit-identical on 1, 2, 3 and 4 threads, and when eight Python threads call at once.
- The memory a chain's intermediates take does not grow with the points.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import chainrule as cr
from chainrule.backends.llvm import chains
from chainrule.backends.llvm import kernel as llvm_kernel
from chainrule.cli.nested_function import nested_numpy

DEPTH = 100  # ~500 steps forward and backward: three loops of at most 400 steps, one chain


def gradient(backend: str):
    nested = nested_numpy(DEPTH)
    return cr.grad(lambda x: np.sum(nested(x)), backend=backend)


def with_reductions(backend: str):
    """A chain whose last loop holds full reductions (a sum, a max) besides an elementwise output."""
    nested = nested_numpy(2 * DEPTH)  # forward only: ~600 steps, two loops

    def f(x):
        y = nested(x)
        return np.sum(y * x), np.max(np.cos(y) + x), y * 2.0

    return cr.jit(f, backend=backend)


def kernel_of(compiled, *args):
    entry, _ = compiled._specialize(args)
    return entry.kernel


def assert_identical(got, want, message: str) -> None:
    pairs = zip(got, want, strict=True) if isinstance(want, tuple) else [(got, want)]
    for a, b in pairs:
        np.testing.assert_array_equal(a, b, err_msg=message, strict=True)


@pytest.fixture
def exact_threads():
    yield llvm_kernel.set_exact_threads
    llvm_kernel.set_exact_threads(None)


def test_a_long_gradient_runs_as_one_chain_of_blocks():
    x = np.linspace(0.1, 3.0, 10_001)
    source = gradient("llvm").source(x)
    assert source.count("loops over 10001 points in blocks of") == 1
    assert source.count("call void @chainrule_parallel_run") == 1  # one parallel region


@pytest.mark.parametrize("points", [2, 63, 64, 65, 1_000, 10_001, 40_000 + 17])
def test_the_blocked_gradient_equals_the_numpy_backend(points):
    x = np.linspace(0.1, 3.0, points)
    np.testing.assert_allclose(gradient("llvm")(x), gradient("numpy")(x), rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("points", [0, 1])
def test_one_point_and_no_points(points):
    x = np.linspace(0.1, 3.0, points)
    got, want = gradient("llvm")(x), gradient("numpy")(x)
    assert got.shape == want.shape == (points,)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("points", [2, 65, 10_001, 100_003])
def test_reductions_in_a_chain_equal_the_numpy_backend(points):
    x = np.linspace(0.1, 3.0, points)
    compiled = with_reductions("llvm")
    assert "in blocks of" in compiled.source(x)
    for got, want in zip(compiled(x), with_reductions("numpy")(x), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("make", [lambda: gradient("llvm"), lambda: with_reductions("llvm")])
def test_one_to_four_threads_give_bit_identical_results(make, exact_threads):
    x = np.linspace(0.1, 3.0, 100_003)  # not a multiple of the block
    compiled = make()
    assert kernel_of(compiled, x).lowered.parallel_loops == 1
    exact_threads(1)
    first = compiled(x)
    for count in (2, 3, 4, 2):
        exact_threads(count)
        assert_identical(compiled(x), first, f"{count} threads")


def test_python_threads_calling_chained_kernels_at_once_get_the_one_thread_results(exact_threads):
    functions = [gradient("llvm"), with_reductions("llvm")]
    inputs = [np.linspace(0.1, 3.0, 50_001 + k * 4097) for k in range(3)]
    exact_threads(1)
    expected = {(f, i): functions[f](inputs[i]) for f in range(len(functions)) for i in range(len(inputs))}
    exact_threads(2)
    jobs = list(expected) * 3
    with ThreadPoolExecutor(6) as executor:
        results = list(executor.map(lambda job: functions[job[0]](inputs[job[1]]), jobs))
    for job, got in zip(jobs, results):
        assert_identical(got, expected[job], f"function {job[0]}, input {job[1]}")


def test_the_intermediates_take_block_sized_scratch_whatever_the_points():
    small, large = np.linspace(0.1, 3.0, 20_000), np.linspace(0.1, 3.0, 200_000)
    arena_small = kernel_of(gradient("llvm"), small).lowered.arena_bytes
    arena_large = kernel_of(gradient("llvm"), large).lowered.arena_bytes
    # full arrays of the ~400 values the backward loops read would be 400 x 8 x 200,000 bytes
    assert arena_large <= arena_small * 1.01 + 64 * 1024
    assert arena_large <= chains.MAX_SEATS * chains.SCRATCH_BUDGET * 1.25
