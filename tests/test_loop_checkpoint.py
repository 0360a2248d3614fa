"""Checkpointing inside loops: ``cr.scan``/``cr.fori_loop`` with ``checkpoint=`` or ``snapshots=``
(and ``cr.grad``'s policy reaching a loop) keep a schedule's snapshots of the carry instead of every
carry, and compute the others again in the backward pass.

Gradients are compared with the store-all gradient (same arithmetic, so to 1e-12) and with finite
differences; the steps computed again are counted by wrapping the bodies' compiled functions and
compared with Griewank's closed form t(l, c) = r·l − β(c+1, r−1); bytes are read from the memory
report and measured with tracemalloc.
"""

import math
import tracemalloc
from collections import Counter

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr
from chainrule.errors import ArgumentError
from chainrule.ir.control import Body


def recurrent(**checkpoint):
    """A scan with a dict carry holding an int counter, per-step inputs and closed-over weights."""

    def loss(h0, xs, W, u):
        def step(carry, x):
            h = np.tanh(carry["h"] @ W + x * u)
            return {"h": h, "n": carry["n"] + 1, "total": carry["total"] + np.sum(h**2)}, h[0]

        carry, ys = cr.scan(step, {"h": h0, "n": np.int64(0), "total": 0.0}, xs, **checkpoint)
        return carry["total"] + np.sum(np.sin(ys)) + np.sum(carry["h"]) * carry["n"]

    return loss


def recurrent_arguments(steps=37):
    rng = np.random.default_rng(7)
    return rng.normal(size=3) * 0.5, rng.normal(size=(steps, 3)), rng.normal(size=(3, 3)) * 0.6, rng.normal(size=3)


CHECKPOINTS = [
    {"checkpoint": "sqrt"},
    {"checkpoint": "optimal"},
    {"snapshots": 1},
    {"snapshots": 3},
    {"snapshots": 36},
    {"checkpoint": 5 * 32},  # bytes: five carries of 3 + 1 + 1 eight-byte numbers (the int travels as one)
]


@pytest.mark.parametrize("checkpoint", CHECKPOINTS, ids=[str(c) for c in CHECKPOINTS])
def test_checkpointed_scan_gradient_equals_the_store_all_gradient(checkpoint, backend):
    args = recurrent_arguments()
    store_all = cr.grad(recurrent(), argnums=(0, 1, 2, 3), backend=backend)(*args)
    checkpointed = cr.grad(recurrent(**checkpoint), argnums=(0, 1, 2, 3), backend=backend)(*args)
    for got, want in zip(checkpointed, store_all):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_checkpointed_scan_gradient_matches_finite_differences():
    args = recurrent_arguments()
    for argnum in range(4):
        gradient = cr.grad(recurrent(snapshots=4), argnums=argnum)(*args)
        assert relative_error(gradient, numerical_gradient(recurrent(), args, argnum)) < 1e-7


def test_reverse_scan_and_fori_loop_checkpoint(backend):
    def reverse_model(a, xs):
        carry, ys = cr.scan(lambda c, x: (np.sin(c) * a + x, c * x), 0.3, xs, reverse=True, snapshots=2)
        return carry + np.sum(ys * np.arange(1.0, 21.0))

    def fori_model(k, damping, **checkpoint):
        def body(i, state):
            x, v = state
            return (x + 0.05 * v, v + 0.05 * (-k * x - damping * v + 0.01 * np.cos(0.1 * i)))

        return cr.fori_loop(0, 60, body, (1.0, 0.0), **checkpoint)[0]

    xs = np.linspace(-1.0, 1.0, 20)
    for argnum in (0, 1):
        gradient = cr.grad(reverse_model, argnums=argnum, backend=backend)(0.7, xs)
        assert relative_error(gradient, numerical_gradient(reverse_model, (0.7, xs), argnum)) < 1e-7
    store_all = cr.grad(fori_model, argnums=(0, 1), backend=backend)(2.0, 0.3)
    sqrt = cr.grad(lambda k, d: fori_model(k, d, checkpoint="sqrt"), argnums=(0, 1), backend=backend)(2.0, 0.3)
    np.testing.assert_allclose(sqrt, store_all, rtol=1e-12)


def test_a_loop_nested_in_a_checkpointed_body_is_differentiated_through():
    def model(a, **checkpoint):
        def outer(i, c):
            return cr.fori_loop(0, 3, lambda j, d: np.sin(d * a) + 0.1 * j, c)

        return cr.fori_loop(0, 12, outer, 0.4, **checkpoint)

    gradient = cr.grad(lambda a: model(a, snapshots=3))(0.8)
    assert gradient == pytest.approx(cr.grad(model)(0.8), rel=1e-12)


def griewank_closed_form(steps, slots):
    """t(l, c) = r·l − C(c + r, r − 1) with r the least repetition number such that C(c + r, c) >= l."""
    r = 0
    while math.comb(slots + r, slots) < steps:
        r += 1
    return r * steps - math.comb(slots + r, r - 1) if r > 0 else 0


@pytest.fixture
def step_calls(monkeypatch):
    """Calls of each body's compiled step (forward body vs its VJP), by the body graph's name."""
    calls: Counter = Counter()
    original = Body.step

    def counting(body):
        step = original(body)

        def counted(*args):
            calls[body.graph.name] += 1
            return step(*args)

        return counted

    monkeypatch.setattr(Body, "step", counting)
    return calls


@pytest.mark.parametrize("steps,snapshots", [(37, 1), (37, 2), (37, 3), (37, 5), (100, 4), (1000, 10)])
def test_steps_computed_again_are_revolves_count(steps, snapshots, step_calls):
    args = recurrent_arguments(steps)
    gradient = cr.grad(recurrent(snapshots=snapshots), argnums=(0, 2))
    gradient(*args)  # compiled, and the bodies too
    step_calls.clear()
    gradient(*args)
    # the forward loop runs every step once; the backward pass computes Revolve's advances again
    assert step_calls["step_body"] == steps + griewank_closed_form(steps, snapshots)
    assert step_calls["step_body_vjp"] == steps
    (loop,) = gradient.memory(*args).loops
    assert loop.advances == griewank_closed_form(steps, snapshots) and loop.slots == snapshots


def test_sqrt_recomputes_one_sweep_and_holds_about_two_sqrt_n_carries(step_calls):
    steps = 100
    gradient = cr.grad(recurrent(checkpoint="sqrt"), argnums=2)
    args = recurrent_arguments(steps)
    gradient(*args)
    step_calls.clear()
    gradient(*args)
    # segments of 10 steps: the sweep storing their starts (90 steps), then 9 steps again in each
    assert step_calls["step_body"] == steps + 90 + 10 * 9
    (loop,) = gradient.memory(*args).loops
    assert loop.slots == 10 + 9  # the 10 segment starts, and the rest of one segment


def test_a_byte_budget_is_held_to_in_the_report_and_in_measured_memory():
    width, steps = 20_000, 64
    carry_bytes = 8 * width
    budget = 6 * carry_bytes + carry_bytes // 2  # six carries fit, not seven

    def model(w, h0, **checkpoint):
        return np.sum(cr.fori_loop(0, steps, lambda i, h: np.sin(h * w) + 0.01, h0, **checkpoint))

    w, h0 = np.full(width, 0.9), np.linspace(0.0, 1.0, width)
    store_all = cr.grad(model)
    checkpointed = cr.grad(lambda w, h0: model(w, h0, checkpoint=budget))
    np.testing.assert_allclose(checkpointed(w, h0), store_all(w, h0), rtol=1e-12)
    (loop,) = checkpointed.memory(w, h0).loops
    assert loop.slots == 6 and loop.snapshot_bytes == 6 * carry_bytes <= budget
    assert store_all.memory(w, h0).kept_bytes >= steps * carry_bytes  # the tape of every carry

    def measured_peak(gradient):
        tracemalloc.start()
        gradient(w, h0)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    # beyond the snapshots: the gradient, the cotangent and a step's temporaries, a few carries
    assert measured_peak(checkpointed) <= budget + 8 * carry_bytes
    assert measured_peak(store_all) >= steps * carry_bytes


def test_grads_checkpoint_policy_reaches_the_loops():
    args = recurrent_arguments(50)
    store_all = cr.grad(recurrent(), argnums=2)(*args)
    for policy in ("sqrt", "optimal"):
        gradient = cr.grad(recurrent(), argnums=2, checkpoint=policy)
        np.testing.assert_allclose(gradient(*args), store_all, rtol=1e-12)
        assert "loop_reversal" in gradient.ir(*args)
        (loop,) = gradient.memory(*args).loops
        assert loop.steps == 50
        assert "checkpointed loops" in str(gradient.memory(*args))


def test_grads_byte_budget_bounds_each_loops_snapshots():
    def model(w, h0):
        return np.sum(cr.fori_loop(0, 200, lambda i, h: np.sin(h * w), h0))

    w, h0 = np.full(1000, 1.1), np.linspace(0.0, 1.0, 1000)
    budget = 200_000  # 25 carries of 8,000 bytes; the tape would be 1.6 MB
    gradient = cr.grad(model, checkpoint=budget)
    np.testing.assert_allclose(gradient(w, h0), cr.grad(model)(w, h0), rtol=1e-12)
    (loop,) = gradient.memory(w, h0).loops
    assert loop.slots == 25 and loop.snapshot_bytes <= budget


def test_a_budget_holding_every_carry_keeps_the_tape():
    gradient = cr.grad(recurrent(checkpoint=10**9), argnums=2)
    args = recurrent_arguments()
    assert "loop_reversal" not in gradient.ir(*args) and gradient.memory(*args).loops == []


@pytest.mark.parametrize(
    "checkpoint,message",
    [
        ({"checkpoint": 16}, "holds no carry"),
        ({"snapshots": 0}, "at least one snapshot"),
        ({"checkpoint": "some"}, "checkpoint must be"),
        ({"checkpoint": "sqrt", "snapshots": 3}, "snapshots"),
    ],
)
def test_bad_checkpoints_are_argument_errors(checkpoint, message):
    with pytest.raises(ArgumentError, match=message):
        cr.grad(recurrent(**checkpoint), argnums=2)(*recurrent_arguments())


def test_ten_thousand_steps_tape_every_carry_or_a_sqrt_number_of_them():
    """RK4 pendulum, 10,000 steps: the tape is steps x carry bytes; under "sqrt" the backward pass
    holds 2·100 − 1 carries (100 segment starts and the rest of one segment)."""
    steps, dt = 10_000, 1e-3

    def final_angle(damping, **checkpoint):
        def rk4(state, _):
            def f(s):
                return (s[1], -9.81 * np.sin(s[0]) - damping * s[1])

            k1 = f(state)
            k2 = f((state[0] + dt / 2 * k1[0], state[1] + dt / 2 * k1[1]))
            k3 = f((state[0] + dt / 2 * k2[0], state[1] + dt / 2 * k2[1]))
            k4 = f((state[0] + dt * k3[0], state[1] + dt * k3[1]))
            step = [dt / 6 * (a + 2 * b + 2 * c + d) for a, b, c, d in zip(k1, k2, k3, k4)]
            return (state[0] + step[0], state[1] + step[1]), None

        (theta, _), _ = cr.scan(rk4, (1.0, 0.0), None, length=steps, **checkpoint)
        return theta

    store_all, sqrt = cr.grad(final_angle), cr.grad(lambda d: final_angle(d, checkpoint="sqrt"))
    assert sqrt(0.5) == pytest.approx(store_all(0.5), rel=1e-12)
    assert store_all.memory(0.5).kept_bytes >= steps * 16  # two float64 per step
    (loop,) = sqrt.memory(0.5).loops
    assert loop.slots == 199 and loop.snapshot_bytes == 199 * 16
    assert sqrt.memory(0.5).kept_bytes < 100 * 16


def second_order_model(**checkpoint):
    def loss(theta, x0, xs):
        def step(c, x):
            c = np.tanh(c * theta + x) + 0.1 * c
            return c, np.sum(c * x)

        c, ys = cr.scan(step, x0, xs, **checkpoint)
        return np.sum(c**2) + np.sum(np.sin(ys))

    return loss


SECOND_ORDER_ARGS = (
    np.array([0.9, 1.1, 0.7]),
    np.array([0.1, 0.2, 0.3]),
    np.linspace(0, 1, 40)[:, None] * [1.0, -0.5, 0.3],
)


@pytest.mark.parametrize("argnum", [0, 1, 2])
def test_hessian_through_a_checkpointed_scan_is_forward_over_the_reversal(argnum):
    checkpointed = cr.hessian(second_order_model(snapshots=4), argnums=argnum)(*SECOND_ORDER_ARGS)
    store_all = cr.hessian(second_order_model(), argnums=argnum)(*SECOND_ORDER_ARGS)
    np.testing.assert_allclose(checkpointed, store_all, rtol=1e-11, atol=1e-12 * np.max(np.abs(store_all)))
    # and the store-all Hessian is the finite differences' (test_loop_higher_order checks the method)
    gradient = cr.grad(second_order_model(), argnums=argnum)
    point, step = SECOND_ORDER_ARGS[argnum], 1e-5
    index = (0,) * point.ndim
    moved = [list(SECOND_ORDER_ARGS), list(SECOND_ORDER_ARGS)]
    for sign, args in zip((1, -1), moved):
        args[argnum] = point.copy()
        args[argnum][index] += sign * step
    column = (gradient(*moved[0]) - gradient(*moved[1])) / (2 * step)
    assert relative_error(checkpointed[(...,) + index], column) < 1e-7


@pytest.mark.parametrize("argnum", [0, 1, 2])
def test_grad_of_grad_through_a_checkpointed_scan_is_reverse_over_the_reversal(argnum):
    direction = np.array([1.0, -2.0, 0.5])

    def directional(model):
        return lambda *args: np.sum(cr.grad(model)(*args) * direction)

    checkpointed = cr.grad(directional(second_order_model(checkpoint="sqrt")), argnums=argnum)(*SECOND_ORDER_ARGS)
    store_all = cr.grad(directional(second_order_model()), argnums=argnum)(*SECOND_ORDER_ARGS)
    np.testing.assert_allclose(checkpointed, store_all, rtol=1e-11, atol=1e-12 * np.max(np.abs(store_all)))
