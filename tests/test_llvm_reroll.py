"""A long loop body that repeats itself is compiled as one repeat inside a loop (reroll.py).

An unrolled Python loop gives the LLVM backend the same few instructions hundreds of times. The
rerolled kernel must compute exactly what the straight one does (bit for bit: the same instructions
run in the same order for every point), with LLVM seeing a module that does not grow with the
number of repeats. The rules that decide what may be rerolled are tested on small bodies: values
carried from one repeat to the next, pointers that step evenly, values used after the repeats.
"""

import re

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr
from chainrule.backends.llvm import engine, mathlib, reroll
from chainrule.backends.llvm.irtext import Function, Module
from chainrule.cli.nested_function import nested_numpy
from chainrule.transforms.reuse import forget_functions

needs_vector_math = pytest.mark.skipif(not mathlib.vector_isa().bits, reason="no vector math library here")
SIN = '"vector-function-abi-variant"="_ZGV_LLVM_N4v_llvm.sin.f64(_ZGVdN4v_sin)"'


def kernel_ir(compiled, *args):
    entry, _ = compiled._specialize(args)
    return entry.kernel.lowered.ir


def nested(depth):
    f = nested_numpy(depth)
    return lambda x: np.sum(f(x))


def damped(x, w):
    # a loop-invariant array (w), constants, a comparison and a select in every repeat (the
    # iterates stay below 2: away from the kink, where finite differences fail)
    for _ in range(120):
        x = x + 0.01 * (np.sin(w * x) - np.where(x > 2.0, x * x, 0.5 * x))
    return np.sum(x)


def body_of(repeats, offset=lambda r: 512 * r, tail=lambda last: [f"  store double %x{last}, ptr %out.p"]):
    """A scalar body of ``repeats`` repeats: x_r = sin(x_{r-1}) stored at %s<r>; and its pointers."""
    lines = ["  %x0.p = getelementptr double, ptr %in, i64 %i0", "  %x0 = load double, ptr %x0.p"]
    for r in range(1, repeats + 1):
        lines += [
            f"  ; repeat {r}",
            f"  %x{r} = call double @llvm.sin.f64(double %x{r - 1}) {SIN}",
            f"  %o{r} = getelementptr double, ptr %s{r}, i64 %i0",
            f"  store double %x{r}, ptr %o{r}",
        ]
    lines += ["  %out.p = getelementptr double, ptr %out, i64 %i0", *tail(repeats)]
    outside = [f"  %s{r} = getelementptr i8, ptr %scratch, i64 {offset(r)}" for r in range(1, repeats + 1)]
    return lines, outside


def rerolled(lines, outside):
    return reroll.reroll(lines, Function(Module(), "void @f(i64 %i0)", ""), "w.body", "double", outside)


def repeats_of(result):
    (count,) = re.findall(
        r"icmp ult i64 \S+, (\d+)", "\n".join(result.structure[m][1] for m in result.structure if "close" in m)
    )
    return int(count)


def test_a_chain_of_repeats_becomes_one_repeat_in_a_loop():
    lines, outside = body_of(100)
    result = rerolled(lines, outside)
    instructions = [line for line in result.lines if not line.startswith("  ;")]
    # the prefix (load), one phi carrying x, the period (call, address, store), the suffix
    assert len(instructions) == 2 + 1 + 3 + 2
    (phi,) = [line for line in instructions if " = phi " in line]
    assert re.fullmatch(r"  %x1\.carry = phi double \[ %x0, %w\.body \], \[ %x1, %repeat\.loop \]", phi)
    assert repeats_of(result) == 100
    addresses = result.structure["  ; reroll.body.0"]
    assert (
        "  %s1.k.at = mul nsw i64 %repeat, 512" in addresses and "  %s1.k.off = add nsw i64 %s1.k.at, 512" in addresses
    )
    # the suffix stores the last repeat's value, by the period's name; every %s<r> is now unused
    assert instructions[-1] == "  store double %x1, ptr %out.p"
    assert result.dropped_pointers == {f"%s{r}" for r in range(1, 101)}
    assert result.exit_label == "repeat.exit"


def test_short_bodies_are_left_alone():
    lines, outside = body_of(10)
    assert rerolled(lines, outside).lines == lines


def test_pointers_that_stop_stepping_evenly_end_the_repeats():
    lines, outside = body_of(100, offset=lambda r: 512 * r if r <= 60 else 512 * r + 64)
    result = rerolled(lines, outside)
    assert repeats_of(result) == 60
    # the repeats after the 60th stay as they were, reading the loop's last x by the period's name
    assert "  %x61 = call double @llvm.sin.f64(double %x1) " + SIN in result.lines


def test_a_middle_repeat_read_after_the_repeats_ends_them_there():
    lines, outside = body_of(
        100, tail=lambda last: ["  %y = fadd contract double %x40, %x100", "  store double %y, ptr %out.p"]
    )
    result = rerolled(lines, outside)
    assert repeats_of(result) == 40
    assert "  %y = fadd contract double %x1, %x100" in result.lines


def test_a_value_of_two_repeats_back_is_not_rerolled():
    lines = [
        "  %x0.p = getelementptr double, ptr %in, i64 %i0",
        "  %x0 = load double, ptr %x0.p",
        "  %x1 = fmul double %x0, %x0",
    ]
    for r in range(2, 200):
        lines.append(f"  %x{r} = fmul contract double %x{r - 1}, %x{r - 2}")
    lines.append("  store double %x199, ptr %x0.p")
    assert not rerolled(lines, []).structure


@needs_vector_math
def test_the_rerolled_nested_gradient_is_the_straight_ones_bit_for_bit(monkeypatch):
    x = np.linspace(4.0, 4.4, 1_003)  # a partial last vector
    with monkeypatch.context() as patched:
        patched.setattr(reroll, "MIN_REPEATS", 10**9)
        straight = cr.grad(nested(300), backend="llvm")
        straight_ir, expected = kernel_ir(straight, x), straight(x)
        del straight
    forget_functions()  # else the function made again finds the straight kernel
    compiled = cr.grad(nested(300), backend="llvm")
    ir_text = kernel_ir(compiled, x)
    assert "rerolled" not in straight_ir and "rerolled (reroll.py)" in ir_text
    assert engine.instruction_count(ir_text) * 5 < engine.instruction_count(straight_ir)
    np.testing.assert_array_equal(compiled(x), expected)
    np.testing.assert_allclose(expected, cr.grad(nested(300), backend="numpy")(x), rtol=1e-11)


@needs_vector_math
def test_the_module_does_not_grow_with_the_repeats():
    x = np.linspace(4.0, 4.4, 1_000)
    counts = {
        depth: engine.instruction_count(kernel_ir(cr.grad(nested(depth), backend="llvm"), x)) for depth in (500, 1_500)
    }
    # three times the depth: more chain loops (MAX_LOOP_STEPS each), each still one repeat long
    assert counts[1_500] < 2 * counts[500]


@needs_vector_math
def test_invariant_operands_comparisons_and_selects_reroll_correctly():
    x, w = np.linspace(0.1, 0.9, 2_001), np.linspace(0.5, 1.5, 2_001)
    compiled = cr.grad(damped, argnums=(0, 1), backend="llvm")
    assert "rerolled (reroll.py)" in kernel_ir(compiled, x, w)
    for got, want in zip(compiled(x, w), cr.grad(damped, argnums=(0, 1), backend="numpy")(x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    sample, weights = np.linspace(0.1, 0.9, 9), np.linspace(0.5, 1.5, 9)
    numeric = numerical_gradient(damped, (sample, weights), 0)
    assert relative_error(cr.grad(damped, backend="llvm")(sample, weights), numeric) < 1e-7


def test_a_pointer_another_outside_line_builds_on_keeps_its_definition():
    lines, outside = body_of(100)
    outside.append("  %t = getelementptr i8, ptr %s7, i64 8")
    kept = rerolled(lines, outside).outside(outside)
    # %s7's definition (line 6) stays for %t; %s6's (line 5) goes
    assert outside[6] in kept and outside[-1] in kept and outside[5] not in kept
