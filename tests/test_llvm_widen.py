"""Long elementwise loop bodies are widened to vector code by chainrule itself (widen.py), so LLVM's
loop vectorizer, half the optimization time of the nested gradient, has nothing left to do there.

The widened code must compute what the scalar code does: gradients agree with the NumPy backend and
central finite differences, with point counts that leave a partial last vector (its lanes masked),
broadcast operands, comparisons and selects. Work is counted, not timed: the module's instructions
per traced node are flat from depth 100 to 1,000, and no long loop body reaches the vectorizer.
"""

import re

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr
from chainrule.backends.llvm import chains, engine, interleave, mathlib, widen
from chainrule.backends.llvm.views import View
from chainrule.transforms.reuse import forget_functions

needs_vector_math = pytest.mark.skipif(not mathlib.vector_isa().bits, reason="no vector math library here")


def kernel_of(compiled, *args):
    entry, _ = compiled._specialize(args)
    return entry.kernel


def nested(depth):
    def nested_sum(x):
        for _ in range(depth):
            x = np.cos(np.tan(np.sin(x)))
        return np.sum(x)

    return nested_sum


def widened_functions(ir_text):
    return [f for f in re.split(r"(?m)^(?=define )", ir_text) if "w.body" in f]


def test_a_scalar_body_becomes_the_same_instructions_on_vectors():
    body = [
        "  ; %2 y = mul %0, %1",
        "  %x.p = getelementptr double, ptr %at, i64 %i0",
        "  %x = load double, ptr %x.p, !llvm.access.group !3",
        "  %s.p = getelementptr double, ptr %scale, i64 0",
        "  %s = load double, ptr %s.p, !llvm.access.group !3",
        "  %y = fmul contract double %x, %s",
        "  %big = fcmp contract ogt double %y, 0x4000000000000000",
        "  %z = select i1 %big, double %y, double 0x0000000000000000",
        '  %e = call double @llvm.exp.f64(double %z) "vector-function-abi-variant"='
        '"_ZGV_LLVM_N8v_llvm.exp.f64(_ZGVeN8v_exp)"',
        "  %a = call double @llvm.fabs.f64(double %e)",
        "  %out.p = getelementptr double, ptr %out, i64 %i0",
        "  store double %a, ptr %out.p, !llvm.access.group !3",
    ]
    vector = widen.widened(body, "%i0", "%iv", 8, "double", "%in")
    assert vector == [
        "  ; %2 y = mul %0, %1",
        "  %x.p.w = getelementptr double, ptr %at, i64 %iv",
        "  %x.w = call <8 x double> @llvm.masked.load.v8f64.p0(ptr %x.p.w, i32 8, <8 x i1> %in, <8 x double> "
        "zeroinitializer)",
        "  %s.p.w = getelementptr double, ptr %scale, i64 0",
        "  %s.w.one = load double, ptr %s.p.w",
        "  %s.w.lane = insertelement <8 x double> poison, double %s.w.one, i64 0",
        "  %s.w = shufflevector <8 x double> %s.w.lane, <8 x double> poison, <8 x i32> zeroinitializer",
        "  %y.w = fmul contract <8 x double> %x.w, %s.w",
        "  %iv.c0 = load volatile <8 x double>, ptr @splat.8xdouble.0x4000000000000000, align 64",
        "  %big.w = fcmp contract ogt <8 x double> %y.w, %iv.c0",
        "  %iv.c1 = load volatile <8 x double>, ptr @splat.8xdouble.0x0000000000000000, align 64",
        "  %z.w = select <8 x i1> %big.w, <8 x double> %y.w, <8 x double> %iv.c1",
        "  %e.w = call <8 x double> @_ZGVeN8v_exp(<8 x double> %z.w)",
        "  %a.w = call <8 x double> @llvm.fabs.v8f64(<8 x double> %e.w)",
        "  %out.p.w = getelementptr double, ptr %out, i64 %iv",
        "  call void @llvm.masked.store.v8f64.p0(<8 x double> %a.w, ptr %out.p.w, i32 8, <8 x i1> %in)",
    ]
    assert widen.intrinsic_declarations(vector) == {
        "declare <8 x double> @llvm.masked.load.v8f64.p0(ptr, i32, <8 x i1>, <8 x double>)",
        "declare <8 x double> @llvm.fabs.v8f64(<8 x double>)",
        "declare void @llvm.masked.store.v8f64.p0(<8 x double>, ptr, i32, <8 x i1>)",
    }
    assert widen.constant_definitions(vector) == {
        "@splat.8xdouble.0x4000000000000000 = private unnamed_addr constant <8 x double> "
        "splat (double 0x4000000000000000), align 64",
        "@splat.8xdouble.0x0000000000000000 = private unnamed_addr constant <8 x double> "
        "splat (double 0x0000000000000000), align 64",
    }


def test_a_negation_flips_the_sign_bits_and_a_constant_is_loaded_once_a_step():
    body = [
        "  %x.p = getelementptr float, ptr %at, i64 %i0",
        "  %x = load float, ptr %x.p",
        "  %y = fneg float %x",
        "  %z = fadd contract float %y, 0x3FF0000000000000",
        "  %w = fmul contract float %z, 0x3FF0000000000000",
    ]
    assert widen.widened(body, "%i0", "%iv", 8, "float")[2:] == [
        "  %iv.c0 = load volatile <8 x i32>, ptr @splat.8xi32.-2147483648, align 32",
        "  %y.w.bits = bitcast <8 x float> %x.w to <8 x i32>",
        "  %y.w.flipped = xor <8 x i32> %y.w.bits, %iv.c0",
        "  %y.w = bitcast <8 x i32> %y.w.flipped to <8 x float>",
        "  %iv.c1 = load volatile <8 x float>, ptr @splat.8xfloat.0x3FF0000000000000, align 32",
        "  %z.w = fadd contract <8 x float> %y.w, %iv.c1",
        "  %w.w = fmul contract <8 x float> %z.w, %iv.c1",
    ]


@pytest.mark.parametrize(
    "line",
    [
        "  %b = zext i1 %c to i8",  # a bool stored as a byte
        "  %y = fpext float %x to double",  # two dtypes
        "  %y = call double @hypot(double %x, double %x)",  # a libm call with no vector variant
        '  %y = call double @llvm.sin.f64(double %x) "vector-function-abi-variant"="_ZGV_LLVM_N4v_llvm.sin.f64(_ZGVdN4v_sin)"',
        "  %y = fmul double %x, %outside",  # a value computed outside the body
    ],
)
def test_a_body_with_anything_else_is_left_to_the_vectorizer(line):
    body = ["  %x.p = getelementptr double, ptr %at, i64 %i0", "  %x = load double, ptr %x.p", line]
    assert widen.widened(body, "%i0", "%iv", 8, "double", "%in") is None


def damped_chain():
    """A long, well-conditioned chain (finite differences stay accurate): ~300 nodes, ~100 arrays
    stored for the backward pass. Made anew per test, so no test finds another's kernel in memory."""

    def damped(x):
        for _ in range(100):
            x = x + 0.1 * np.sin(x) * np.cos(0.5 * x)
        return np.sum(x * x)

    return damped


def test_the_last_step_may_overlap_only_when_no_written_byte_is_read():
    def view(offset, n=100):
        return View(0, offset, (n,), (1,), "float64")

    assert widen.writes_apart_from_reads([view(0), view(800)], [view(1600)])
    assert not widen.writes_apart_from_reads([view(0), view(800)], [view(792, 1)])  # the last element read
    assert widen.writes_apart_from_reads([View(2, 0, (100,), (1,), "float64")], [view(0)])  # another buffer
    assert widen.writes_apart_from_reads([View(0, 0, (100,), (0,), "float64")], [view(8)])  # one element, broadcast


@needs_vector_math
@pytest.mark.parametrize("points", [1_000, 1_003, 77])
@pytest.mark.parametrize("overlap", [True, False], ids=["last-step-moved-back", "last-step-masked"])
def test_widened_gradients_agree_with_numpy_and_finite_differences(points, overlap, monkeypatch):
    if not overlap:
        monkeypatch.setattr(widen, "writes_apart_from_reads", lambda reads, writes: False)
    x = np.linspace(0.1, 1.0, points)
    damped = damped_chain()
    for fn in (nested(100), damped):
        compiled = cr.grad(fn, backend="llvm")
        ir_text = kernel_of(compiled, x).lowered.ir
        assert widened_functions(ir_text) and ("llvm.masked.load" not in ir_text) == overlap
        np.testing.assert_allclose(compiled(x), cr.grad(fn, backend="numpy")(x), rtol=1e-12, atol=1e-14)
    if points < 100:
        assert relative_error(cr.grad(damped, backend="llvm")(x), numerical_gradient(damped, (x,), 0)) < 1e-7


@needs_vector_math
@pytest.mark.parametrize("points", [15 * 64 + 3, 64 * 64 + 3], ids=["one-seat", "parallel"])
def test_chain_loops_widen_and_mask_a_last_block_shorter_than_a_step(points, monkeypatch):
    # blocks of 64 points: the last one of 3 points, fewer than a vector step; a step moved back
    # from it would read the scratch of another value (or of a seat another thread works in)
    monkeypatch.setattr(chains, "SCRATCH_BUDGET", 1)
    x = np.linspace(0.1, 1.0, points)
    compiled = cr.grad(damped_chain(), backend="llvm")
    ir_text = kernel_of(compiled, x).lowered.ir
    in_blocks = [f for f in widened_functions(ir_text) if "%scratch" in f.split("{")[0]]
    assert in_blocks and all("llvm.masked.load" in f for f in in_blocks)
    np.testing.assert_allclose(compiled(x), cr.grad(damped_chain(), backend="numpy")(x), rtol=1e-12, atol=1e-14)


def scaled_clipped(x, scale):
    for _ in range(40):
        # the iterates stay in (0, 1): away from the kinks at -1 and 2, where finite differences fail
        x = 0.5 * np.sin(x * scale) + 0.3 * np.maximum(x, -1.0) + np.where(x > 2.0, 0.2 * x * x, 0.3 * x)
    return np.sum(x)


@needs_vector_math
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_broadcast_operands_comparisons_and_selects_widen_correctly(dtype):
    x = np.linspace(0.1, 0.9, 203).astype(dtype)
    scale = np.asarray(0.7, dtype=dtype)
    compiled = cr.grad(scaled_clipped, argnums=(0, 1), backend="llvm")
    assert widened_functions(kernel_of(compiled, x, scale).lowered.ir)
    expected = cr.grad(scaled_clipped, argnums=(0, 1), backend="numpy")(x, scale)
    tolerance = 1e-12 if dtype == np.float64 else 2e-4
    for got, want in zip(compiled(x, scale), expected):
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)
    if dtype == np.float64:
        sample = np.linspace(0.1, 0.9, 7)
        numeric = numerical_gradient(scaled_clipped, (sample, 0.7), 0)
        assert relative_error(cr.grad(scaled_clipped, backend="llvm")(sample, 0.7), numeric) < 1e-7


@needs_vector_math
def test_long_bodies_skip_the_vectorizer_and_the_module_is_linear_in_depth():
    per_node, widened_share = {}, {}
    for depth in (100, 1_000):
        x = np.linspace(4.0, 4.4, 1_000)
        ir_text = kernel_of(cr.grad(nested(depth), backend="llvm"), x).lowered.ir
        per_node[depth] = engine.instruction_count(ir_text) / (3 * depth)
        loops = [f for f in re.split(r"(?m)^(?=define )", ir_text) if "_loop" in f.split("(")[0]]
        for function in widened_functions(ir_text):  # one vector body, no scalar copy, not optimized again
            assert "d0.body" not in function and " optnone" in function.split("{")[0]
            (node,) = re.findall(r"!llvm\.loop (![0-9]+)", function)
            assert ir_text.count(f"{node} = distinct !{{{node}, ") == 1
        widened_share[depth] = len(widened_functions(ir_text)) / len(loops)
    # at depth 100 one loop runs the whole forward pass and the sum (a reduction: left to the
    # vectorizer); at depth 1000 every loop but the sum's is widened (and rerolled: reroll.py)
    assert widened_share[1_000] > 0.9
    assert per_node[1_000] < 2 * per_node[100]


def copied_functions(ir_text):
    return [f for f in widened_functions(ir_text) if re.search(r"%\S+\.w1 = ", f)]


def levels(x):
    # a chain of math calls storing 20 arrays: a body widened by chainrule (not interleaved by LLVM), latency-bound
    out = []
    for _ in range(20):
        x = np.cos(np.tan(np.sin(x)))
        out.append(x)
    return tuple(out)


def one_copy_and_copies(function, x, monkeypatch):
    """The results of ``function(x)`` compiled with one copy of each widened body and with COPIES,
    and whether the second has copies."""
    with monkeypatch.context() as patched:
        patched.setattr(widen, "COPIES", 1)
        one = function()
        expected = one(x)
        assert not copied_functions(kernel_of(one, x).lowered.ir)
        del one
    forget_functions()  # else the function made again finds the kernel of one copy
    copied = function()
    return expected, copied(x), bool(copied_functions(kernel_of(copied, x).lowered.ir))


@needs_vector_math
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("points", [1_000, 1_003, 64 + 1])
def test_copies_of_a_latency_bound_body_compute_every_element_as_one_copy_does(dtype, points, monkeypatch):
    x = np.linspace(0.1, 1.0, points).astype(dtype)  # lengths not a multiple of a step (copies x lanes)
    expected, got, copied = one_copy_and_copies(lambda: cr.jit(lambda x: levels(x), backend="llvm"), x, monkeypatch)
    assert copied
    for want, value in zip(expected, got):
        np.testing.assert_array_equal(value, want)


@needs_vector_math
@pytest.mark.parametrize("last_block", [33, 5])
def test_chain_blocks_shorter_than_a_step_run_fewer_copies(last_block, monkeypatch):
    # 64-point blocks, the last of 33 points (copies) or of 5, fewer than two vectors (one copy)
    monkeypatch.setattr(chains, "SCRATCH_BUDGET", 1)
    x = np.linspace(0.1, 1.0, 64 * 64 + last_block)
    expected, got, copied = one_copy_and_copies(lambda: cr.grad(nested(300), backend="llvm"), x, monkeypatch)
    assert copied == (last_block >= 2 * mathlib.vector_isa().lanes("float64"))
    np.testing.assert_array_equal(got, expected)


@needs_vector_math
def test_short_loops_run_fewer_copies_and_bodies_of_independent_calls_one():
    lanes = mathlib.vector_isa().lanes("float64")
    assert [widen.copies(lanes, n) for n in (lanes - 1, 2 * lanes, 100 * lanes)] == [1, 2, widen.COPIES]
    variant = ' "vector-function-abi-variant"="_ZGV_LLVM_N4v_sin(_ZGVdN4v_sin)"'
    forward = ["  %a = call double @sin(double %x)", "  %b = call double @tan(double %a)"]
    assert interleave.latency_bound([line + variant for line in forward])
    backward = ["  %a = call double @sin(double %x)", "  %b = call double @cos(double %x)", "  %c = fmul double %a, %b"]
    assert not interleave.latency_bound([line + variant if "call" in line else line for line in backward])
