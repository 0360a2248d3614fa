"""What bounds the LLVM backend's compile time, counted as work rather than seconds.

Issue 24's Gaussian-process likelihood with a hand-written Cholesky (Python loops unrolled: about
n**3 scalar nodes) must compile to a module linear in its graph and agree with NumPy and finite
differences. The nested gradient's long loop bodies must reach the vectorizer marked free of
dependences between iterations (else its dependence analysis grows with the square of the body's
arrays: 80% of the depth-1000 compile), with a fixed vector width, and not interleaved when they
stream many arrays. The arena's free list must stay sorted and coalesced without re-sorting.
"""

import importlib.util
import random
import re
from pathlib import Path

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr
from chainrule.backends.llvm import engine, loop_hints, mathlib
from chainrule.backends.llvm import kernel as llvm_kernel
from chainrule.backends.llvm.plan import ALIGNMENT, Arena


def gp_negative_log_marginal(n):
    """Issue 24's program, -log p(y | x, hyper-parameters) through a hand-written Cholesky factor
    (tests/corpus/gp_hand_cholesky.py, which also checks its gradient)."""
    path = Path(__file__).parent / "corpus" / "gp_hand_cholesky.py"
    spec = importlib.util.spec_from_file_location("chainrule_corpus_gp_hand_cholesky", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.negative_log_marginal(n)


def kernel_of(compiled, *args):
    entry, _ = compiled._specialize(args)
    return entry.kernel


LOG_PARAMETERS = np.array([0.1, -0.2, -2.0])


def test_gp_gradient_on_llvm_agrees_with_numpy_and_finite_differences():
    fn = gp_negative_log_marginal(8)
    expected = numerical_gradient(fn, (LOG_PARAMETERS,), 0)
    on_numpy = cr.grad(fn, backend="numpy")(LOG_PARAMETERS)
    on_llvm = cr.grad(fn, backend="llvm")(LOG_PARAMETERS)
    assert relative_error(on_llvm, expected) < 1e-7
    np.testing.assert_allclose(on_llvm, on_numpy, rtol=1e-12, atol=1e-14)


def test_gp_module_is_linear_in_its_graph_and_compiled_by_the_cheaper_pipeline(monkeypatch):
    lowered_graphs = []
    original_lower = llvm_kernel.lower

    def lower(graph, name):
        lowered_graphs.append(len(graph))
        return original_lower(graph, name)

    monkeypatch.setattr(llvm_kernel, "lower", lower)
    instructions_per_node = {}
    for n in (8, 16):
        fn = gp_negative_log_marginal(n)
        compiled = cr.grad(fn, backend="llvm")
        kernel = kernel_of(compiled, LOG_PARAMETERS)
        instructions = engine.instruction_count(kernel.lowered.ir)
        instructions_per_node[n] = instructions / lowered_graphs[-1]
    # about 4.5 instructions a node (n = 30: 148,000 for 33,000 nodes): a scalar node is one
    # instruction with its loads and stores, and nothing is emitted per pair of nodes
    assert max(instructions_per_node.values()) < 8
    assert instructions_per_node[16] < 1.25 * instructions_per_node[8]
    # n = 16 is ~24,000 instructions in ~500 straight-line functions: those are left unoptimized
    assert instructions > engine.O1_MAX_INSTRUCTIONS and kernel.native.optimization == "O1L"
    optimized = kernel.native.optimized_ir
    groups = re.findall(r"(?m)^define .*_loop[0-9]+\(.*\) (?:unnamed_addr )?(#[0-9]+)", optimized)
    attributes = dict(re.findall(r"(?m)^attributes (#[0-9]+) = \{(.*)\}$", optimized))
    assert groups and sum("optnone" in attributes[g] for g in groups) > len(groups) // 2
    np.testing.assert_allclose(
        compiled(LOG_PARAMETERS), cr.grad(fn, backend="numpy")(LOG_PARAMETERS), rtol=1e-12, atol=1e-14
    )


def nested_sum(x):
    for _ in range(100):
        x = np.cos(np.tan(np.sin(x)))
    return np.sum(x)


def loop_functions(ir_text):
    """Each outlined loop function's text."""
    return [
        f
        for f in re.split(r"(?m)^(?=define )", ir_text)
        if "_loop" in f.split("(")[0] and ("d0.cond" in f or "w.cond" in f)
    ]


def loop_properties(ir_text, function_text):
    """The properties of the ``!llvm.loop`` node the function's back edge names."""
    (node,) = re.findall(r"!llvm\.loop (![0-9]+)", function_text)
    metadata = dict(re.findall(r"(?m)^(![0-9]+) = (.*)$", ir_text))
    return [metadata[name] for name in re.findall(r"![0-9]+", metadata[node])[1:]]


def test_long_loop_bodies_reach_the_vectorizer_marked_parallel_and_with_a_fixed_width():
    x = np.linspace(4.0, 4.4, 1_000)
    ir_text = kernel_of(cr.grad(nested_sum, backend="llvm"), x).lowered.ir
    functions = loop_functions(ir_text)
    assert functions
    for function in functions:
        properties = loop_properties(ir_text, function)
        streams = len(re.findall(r"getelementptr i8, ptr %(?:arena|buffer|scratch)", function))
        if "w.body" in function:  # widened by chainrule (widen.py): the vectorizer is told to skip it
            # a long body: many arrays streamed, or repeats rerolled into a loop over them (reroll.py)
            assert streams > 16 or "rerolled (reroll.py)" in function
            assert properties == list(loop_hints.NOT_VECTORIZED)
            continue
        (group,) = re.findall(r'"llvm\.loop\.parallel_accesses", (![0-9]+)', " ".join(properties))
        body = function[function.index("d0.body") : function.rindex("d0.latch")]
        # the loop's arrays (a reduction's accumulator is a stack slot, a register before vectorizing)
        accesses = [
            line
            for line in re.findall(r"^\s+(?:%\S+ = load|store) .*$", body, re.MULTILINE)
            if not re.search(r"ptr %acc(\.[0-9]+)?$", line)
        ]
        assert accesses and all(f"!llvm.access.group {group}" in line for line in accesses)
        if mathlib.vector_isa().bits:
            lanes = mathlib.vector_isa().lanes("float64")
            assert f'!{{!"llvm.loop.vectorize.width", i32 {lanes}}}' in properties
        interleave = [p for p in properties if "interleave.count" in p]
        if streams > 16:  # the forward and backward loops at depth 100 stream ~130 arrays each
            assert interleave == ['!{!"llvm.loop.interleave.count", i32 1}']


def test_the_optimized_nested_loops_are_vectorized():
    x = np.linspace(4.0, 4.4, 1_000)
    kernel = kernel_of(cr.grad(nested_sum, backend="llvm"), x)
    if not mathlib.vector_isa().bits:
        pytest.skip("no vector math library on this machine")
    optimized = kernel.native.optimized_ir
    assert len(re.findall(r"call [^@]*@_ZGV\w+_sin\(", optimized)) >= 100


def rounded(nbytes):
    return max(ALIGNMENT, -(-nbytes // ALIGNMENT) * ALIGNMENT)


def merged(blocks):
    """``blocks`` (offset, size) sorted, touching ones joined: the free list by re-sorting everything."""
    result: list[tuple[int, int]] = []
    for start, size in sorted(blocks):
        if result and result[-1][0] + result[-1][1] == start:
            result[-1] = (result[-1][0], result[-1][1] + size)
        else:
            result.append((start, size))
    return result


@pytest.mark.parametrize("seed", range(20))
def test_arena_free_list_matches_a_resorting_first_fit_model(seed):
    rng = random.Random(seed)
    arena, live = Arena(), []
    free: list[tuple[int, int]] = []  # the model's free list
    size = 0  # the model's arena size
    for _ in range(300):
        if live and rng.random() < 0.5:
            offset, nbytes = live.pop(rng.randrange(len(live)))
            arena.give_back(offset, nbytes)
            free = merged(free + [(offset, rounded(nbytes))])
        else:
            nbytes = rng.choice([8, 64, 100, 512, 4096])
            fit = next((i for i, (_, s) in enumerate(free) if s >= rounded(nbytes)), None)
            if fit is None:
                expected, size = size, size + rounded(nbytes)
            else:
                expected, room = free.pop(fit)
                free = merged(
                    free + ([(expected + rounded(nbytes), room - rounded(nbytes))] if room > rounded(nbytes) else [])
                )
            assert arena.take(nbytes) == expected
            live.append((expected, nbytes))
        assert arena.free == free and arena.size == size
