"""The LLVM kernels' thread count: one thread for small work, several offered to large, the settings honoured.

No timing here: the rule (kernel.threads_for) is checked on its inputs, and kernels on theirs; the
timed confirmation of a count and the pool are tested in test_thread_pool.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule.backends.llvm import kernel as llvm_kernel
from chainrule.cli.nested_function import nested_numpy

ROOT = Path(__file__).resolve().parents[1]


def kernel_of(compiled, *args):
    entry, _ = compiled._specialize(args)
    return entry.kernel


def nested_sum_gradient():
    f = nested_numpy(30)
    return cr.grad(lambda x: np.sum(f(x)), backend="llvm")


@pytest.fixture
def at_most():
    """Set the maximum thread count for a test; restored afterwards."""
    before = llvm_kernel.get_num_threads()
    yield llvm_kernel.set_num_threads
    llvm_kernel.set_num_threads(before)


def test_the_rule_gives_one_thread_to_small_work_and_all_to_large():
    one_loop = llvm_kernel.WAKE_NS + llvm_kernel.HANDOFF_NS  # an extra thread's cost for one loop
    assert llvm_kernel.threads_for(one_loop, 1, 8) == 1
    assert llvm_kernel.threads_for(1e12, 1, 8) == 8
    assert llvm_kernel.threads_for(1e12, 0, 8) == 1  # no parallel loop: nothing to share
    assert llvm_kernel.threads_for(1e12, 1, 1) == 1
    # more parallel loops (hand-offs) need more work for the same count
    work = 2.5 * llvm_kernel.THREAD_PAYOFF * one_loop
    assert llvm_kernel.threads_for(work, 1, 2) == 2
    assert llvm_kernel.threads_for(work, 100, 2) == 1


def test_a_small_kernel_runs_on_one_thread(at_most):
    at_most(4)
    x = np.linspace(0.1, 3.0, 100)
    kernel = kernel_of(nested_sum_gradient(), x)
    assert kernel.thread_count() == 1


def test_a_large_kernel_runs_on_several_threads_when_allowed(at_most):
    x = np.linspace(0.1, 3.0, 1_000_000)
    grad = nested_sum_gradient()
    kernel = kernel_of(grad, x)
    assert kernel.lowered.parallel_loops >= 1
    at_most(2)
    assert kernel.thread_count() == 2
    at_most(1)
    assert kernel.thread_count() == 1
    one_thread = grad(x)
    at_most(2)
    for _ in range(8):  # the trial's calls run on 1 and 2 threads: every result the same
        np.testing.assert_array_equal(grad(x), one_thread)  # elementwise: the same code on every thread


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: the default is one thread")
def test_by_default_a_large_kernel_is_offered_every_cpu():
    # offered: its first calls time 1 thread against this count before it settles (test_thread_pool)
    code = (
        "import numpy as np, chainrule as cr; from chainrule.cli.nested_function import nested_numpy;"
        "f = nested_numpy(30); g = cr.grad(lambda x: np.sum(f(x)), backend='llvm'); x = np.ones(10**6);"
        "entry, _ = g._specialize((x,)); print(entry.kernel.thread_count())"
    )
    environment = {k: v for k, v in os.environ.items() if k not in llvm_kernel.THREAD_VARIABLES}
    environment["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True)
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert int(done.stdout.strip()) == expected


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"CHAINRULE_NUM_THREADS": "3", "OMP_NUM_THREADS": "5"}, 3),
        ({"OMP_NUM_THREADS": "5"}, 5),
        ({"OMP_NUM_THREADS": "6,2"}, 6),  # OpenMP's nested list: the outer level
        ({"CHAINRULE_NUM_THREADS": "zero", "OMP_NUM_THREADS": "4"}, 4),  # not a count: the next setting
        ({"CHAINRULE_NUM_THREADS": "0"}, None),  # not positive: the CPU count
    ],
)
def test_the_environment_sets_the_maximum(variables, expected):
    cpus = llvm_kernel.threads_from_environment({})
    assert llvm_kernel.threads_from_environment(variables) == (cpus if expected is None else expected)


def test_the_environment_is_read_at_import_and_set_num_threads_overrides_it():
    code = (
        "from chainrule.backends.llvm import kernel; print(kernel.get_num_threads());"
        "kernel.set_num_threads(2); print(kernel.get_num_threads())"
    )
    environment = dict(os.environ, PYTHONPATH=str(ROOT), CHAINRULE_NUM_THREADS="7", OMP_NUM_THREADS="3")
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["7", "2"]


@pytest.mark.parametrize("count", [0, -1, 1.5, True])
def test_set_num_threads_rejects_what_is_not_a_positive_count(count):
    with pytest.raises(ValueError):
        llvm_kernel.set_num_threads(count)
