"""The LLVM kernels' worker pool and the timed choice of a thread count.

- A kernel gives bit-identical results on 1, 2, 3 and 4 threads (the task layout depends on the
  loop alone, parallel.py), elementwise and reductions alike.
- Eight Python threads calling kernels at once (the pool serves one, the others run inline) get
  the one-thread results.
- fork() after the pool has started does not hang the child, which starts its own workers.
- The first calls' trial settles, and restarts after RECHECK_CALLS calls or when the idle cores
  change; counted in decisions, never in seconds.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import chainrule as cr
from chainrule.backends.llvm import kernel as llvm_kernel
from chainrule.backends.llvm import parallel, pool, thread_choice
from chainrule.backends.llvm.thread_choice import ThreadChoice
from chainrule.cli.nested_function import nested_numpy

POINTS = 300_001  # not a multiple of the 64-element granule: the last task has a remainder


def nested_gradient():
    f = nested_numpy(5)
    return cr.grad(lambda x: np.sum(f(x)), backend="llvm")


def reductions():
    return cr.jit(lambda x: (np.sum(np.sin(x) * x), np.max(np.cos(x) * x), np.sum(x * x)), backend="llvm")


def kernel_of(compiled, *args):
    entry, _ = compiled._specialize(args)
    return entry.kernel


def assert_identical(got, want, message: str) -> None:
    """Bit for bit: an array, or a tuple of them."""
    pairs = zip(got, want, strict=True) if isinstance(want, tuple) else [(got, want)]
    for a, b in pairs:
        np.testing.assert_array_equal(a, b, err_msg=message, strict=True)


@pytest.fixture
def exact_threads():
    """Force exactly n threads on every parallel loop; the per-kernel choice again afterwards."""
    yield llvm_kernel.set_exact_threads
    llvm_kernel.set_exact_threads(None)


def test_the_task_layout_matches_the_loop_not_the_threads():
    chunk, tasks = parallel.task_layout(POINTS, 64, 64)
    assert chunk % 64 == 0 and (tasks - 1) * chunk < POINTS <= tasks * chunk and tasks <= 64
    assert parallel.task_layout(10, 1, 64) == (1, 10)  # fewer elements than tasks: one each


@pytest.mark.parametrize("make", [nested_gradient, reductions])
def test_one_to_four_threads_give_bit_identical_results(make, exact_threads):
    x = np.linspace(0.1, 3.0, POINTS)
    compiled = make()
    assert kernel_of(compiled, x).lowered.parallel_loops >= 1
    results = {}
    for count in (1, 2, 3, 4, 2, 1):
        exact_threads(count)
        results.setdefault(count, []).append(compiled(x))
    assert pool.worker_count() >= 3  # four threads: the caller and three workers
    for count, runs in results.items():
        for got in runs:
            assert_identical(got, results[1][0], f"{count} threads")


def test_the_reductions_are_right(exact_threads):
    x = np.linspace(0.1, 3.0, POINTS)
    exact_threads(3)
    total, largest, squares = reductions()(x)
    np.testing.assert_allclose(total, np.sum(np.sin(x) * x), rtol=1e-12)
    assert largest == np.max(np.cos(x) * x)
    np.testing.assert_allclose(squares, np.sum(x * x), rtol=1e-12)


def test_eight_python_threads_calling_kernels_at_once_get_the_one_thread_results(exact_threads):
    functions = [nested_gradient(), reductions(), nested_gradient()]
    inputs = [np.linspace(0.1, 3.0, POINTS + k * 4097) for k in range(4)]
    exact_threads(1)
    expected = {(f, i): functions[f](inputs[i]) for f in range(len(functions)) for i in range(len(inputs))}
    exact_threads(2)
    jobs = list(expected) * 4
    with ThreadPoolExecutor(8) as executor:
        results = list(executor.map(lambda job: functions[job[0]](inputs[job[1]]), jobs))
    for job, got in zip(jobs, results):
        assert_identical(got, expected[job], f"function {job[0]}, input {job[1]}")


_FORKED = {}  # what the forked children call: inherited, not pickled


def _in_child(count: int) -> tuple[int, np.ndarray, int]:
    llvm_kernel.set_exact_threads(count)
    started = pool.worker_count()
    result = _FORKED["gradient"](_FORKED["x"])
    return started, result, pool.worker_count()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork() here")
def test_fork_after_the_pool_started_does_not_hang_the_child(exact_threads):
    exact_threads(2)
    _FORKED["gradient"], _FORKED["x"] = nested_gradient(), np.linspace(0.1, 3.0, POINTS)
    expected = _FORKED["gradient"](_FORKED["x"])
    assert pool.worker_count() >= 1
    with multiprocessing.get_context("fork").Pool(2) as processes:
        answers = processes.map_async(_in_child, [2, 3]).get(timeout=300)  # a hang fails here
    for started, result, workers in answers:
        assert started == 0  # the parent's workers are not the child's
        assert workers >= 1  # the child started its own
        np.testing.assert_array_equal(result, expected)


def settle(choice: ThreadChoice, one_ns: int, many_ns: int) -> None:
    while not choice.settled:
        count = choice.next_count()
        choice.record(count, one_ns if count == 1 else many_ns)


def test_the_trial_settles_on_the_faster_count_once():
    faster = ThreadChoice(2, load=lambda: 0)
    settle(faster, one_ns=1000, many_ns=600)
    assert (faster.threads, faster.decisions) == (2, 1)
    slower = ThreadChoice(2, load=lambda: 0)
    settle(slower, one_ns=1000, many_ns=1100)
    assert (slower.threads, slower.decisions) == (1, 1)
    barely = ThreadChoice(4, load=lambda: 0)  # less than GAIN's 10%: one thread
    settle(barely, one_ns=1000, many_ns=950)
    assert (barely.threads, barely.decisions) == (1, 1)
    assert ThreadChoice(1).settled and ThreadChoice(1).decisions == 0  # nothing to try


def test_the_trial_restarts_after_many_calls_and_when_the_idle_cores_change(monkeypatch):
    monkeypatch.setattr(thread_choice, "cpu_count", lambda: 4)
    running = [1]  # only the caller runs: 3 idle cores
    choice = ThreadChoice(4, load=lambda: running[0])
    settle(choice, one_ns=1000, many_ns=400)
    for _ in range(thread_choice.RECHECK_CALLS - 1):
        choice.tick()
    assert choice.settled
    choice.tick()
    assert not choice.settled  # re-checked after RECHECK_CALLS calls
    settle(choice, one_ns=1000, many_ns=400)
    assert (choice.threads, choice.decisions) == (4, 2)
    running[0] = 2  # one core got busy: seen on two reads in a row
    for _ in range(thread_choice.LOAD_CHECK_CALLS):
        choice.tick()
    assert choice.settled  # one read: maybe a blip
    for _ in range(thread_choice.LOAD_CHECK_CALLS):
        choice.tick()
    assert not choice.settled
    settle(choice, one_ns=1000, many_ns=1200)  # now the threads lose
    assert (choice.threads, choice.decisions) == (1, 3)


def test_a_kernel_settles_after_its_trial_calls():
    before = llvm_kernel.get_num_threads()
    llvm_kernel.set_num_threads(2)  # at most 2 threads, chosen per kernel
    try:
        settles_after_its_trial_calls()
    finally:
        llvm_kernel.set_num_threads(before)


def settles_after_its_trial_calls():
    gradient = nested_gradient()
    x = np.linspace(0.1, 3.0, POINTS)
    kernel = kernel_of(gradient, x)
    first = gradient(x)
    choice = kernel.thread_choice()
    assert choice.candidate == 2 and not choice.settled
    for _ in range(len(thread_choice.TRIAL)):
        np.testing.assert_array_equal(gradient(x), first)
    assert choice.settled and choice.decisions == 1 and choice.threads in (1, 2)
    assert kernel.thread_count() == choice.threads
