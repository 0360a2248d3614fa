"""chainrule.optim: each optimizer against an independent element-by-element reference, the seed's
worked numbers, schedules against the seed's formulas, clipping, and the traced forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule import optim

# ---- references: one scalar at a time, with math, written from the papers' formulas -------------


def reference_step(name, hyper, g, p, slots, lr, t):
    """One update of one scalar parameter; slots is a dict of floats, updated in place."""
    if name == "sgd":
        return p - lr * g
    if name in ("momentum", "nesterov"):
        beta = hyper["beta"]
        slots["v"] = beta * slots.get("v", 0.0) + (1 - beta) * g
        direction = slots["v"] if name == "momentum" else beta * slots["v"] + (1 - beta) * g
        return p - lr * direction
    if name == "rmsprop":
        slots["s"] = hyper["decay"] * slots.get("s", 0.0) + (1 - hyper["decay"]) * g * g
        return p - lr * g / (math.sqrt(slots["s"]) + hyper["eps"])
    if name == "adagrad":
        slots["G"] = slots.get("G", 0.0) + g * g
        return p - lr * g / (math.sqrt(slots["G"]) + hyper["eps"])
    b1, b2, eps = hyper["beta1"], hyper["beta2"], hyper["eps"]
    slots["m"] = b1 * slots.get("m", 0.0) + (1 - b1) * g
    slots["v"] = b2 * slots.get("v", 0.0) + (1 - b2) * g * g
    m_hat, v_hat = slots["m"] / (1 - b1**t), slots["v"] / (1 - b2**t)
    decay = hyper.get("weight_decay", 0.0) * p
    return p - lr * (m_hat / (math.sqrt(v_hat) + eps) + decay)


OPTIMIZERS = {
    "sgd": (optim.sgd(0.1), {}),
    "momentum": (optim.momentum(0.1, beta=0.8), {"beta": 0.8}),
    "nesterov": (optim.nesterov(0.1, beta=0.8), {"beta": 0.8}),
    "rmsprop": (optim.rmsprop(0.01, decay=0.95, eps=1e-7), {"decay": 0.95, "eps": 1e-7}),
    "adagrad": (optim.adagrad(0.05, eps=1e-9), {"eps": 1e-9}),
    "adam": (optim.adam(0.01, beta1=0.85, beta2=0.99, eps=1e-7), {"beta1": 0.85, "beta2": 0.99, "eps": 1e-7}),
    "adamw": (optim.adamw(0.01, weight_decay=0.1), {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.1}),
}


def params_and_gradients(steps, seed=0):
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((3, 2)), "b": [rng.standard_normal(2), rng.standard_normal(())]}
    grads = [
        {"W": rng.standard_normal((3, 2)), "b": [rng.standard_normal(2), rng.standard_normal(())]} for _ in range(steps)
    ]
    return params, grads


def flat(tree):
    return np.concatenate([np.ravel(tree["W"]), np.ravel(tree["b"][0]), np.ravel(tree["b"][1])])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_matches_an_independent_reference_over_several_steps(name):
    opt, hyper = OPTIMIZERS[name]
    schedule = optim.exponential_decay(opt.learning_rate, 0.1)
    for learning_rate in (opt.learning_rate, schedule):
        opt_now = optim.Optimizer(opt.name, learning_rate, opt.slot_names, opt.rule, opt.hyperparameters)
        params, grads = params_and_gradients(steps=6)
        expected = list(flat(params))
        slots = [{} for _ in expected]
        state = opt_now.init(params)
        for t, gradient in enumerate(grads, start=1):
            params, state = opt_now.update(gradient, state, params)
            lr = learning_rate(t - 1) if callable(learning_rate) else learning_rate
            expected = [reference_step(name, hyper, g, p, s, lr, t) for g, p, s in zip(flat(gradient), expected, slots)]
        assert int(state["count"]) == 6
        np.testing.assert_allclose(flat(params), expected, rtol=1e-12, atol=1e-15)
        assert isinstance(params["b"], list) and params["b"][1].shape == ()


def test_adam_reproduces_seed_002_example_2():
    # t = 2, gradient [0.1, -0.3], m1 = [0.02, -0.06], v1 = [0.0001, 0.0009]
    opt = optim.adam(0.001, beta1=0.9, beta2=0.999, eps=1e-8)
    theta = np.array([0.5, -0.5])
    state = {"count": np.int64(1), "m": np.array([0.02, -0.06]), "v": np.array([0.0001, 0.0009])}
    new_theta, new_state = opt.update(np.array([0.1, -0.3]), state, theta)
    np.testing.assert_allclose(new_state["m"], [0.028, -0.084], rtol=1e-14)
    np.testing.assert_allclose(new_state["v"], [0.0001099, 0.0009891], rtol=1e-14)
    update = theta - new_theta
    assert np.round(update, 6).tolist() == [0.000629, -0.000629]
    # step 4 of the example, unrounded: 0.001 * m_hat / (sqrt(v_hat) + eps)
    m_hat = np.array([0.028, -0.084]) / 0.19
    v_hat = np.array([0.0001099, 0.0009891]) / 0.001999
    np.testing.assert_allclose(update, 0.001 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=1e-13)


def test_momentum_reproduces_seed_002_exercise():
    # 12.19: gradients [0.5, -0.2], [0.3, -0.4], [0.4, -0.3]; beta = 0.9, v0 = 0 -> v3; update with lr 0.01
    opt = optim.momentum(0.01, beta=0.9)
    theta = np.zeros(2)
    state = opt.init(theta)
    for gradient in ([0.5, -0.2], [0.3, -0.4], [0.4, -0.3]):
        previous = theta
        theta, state = opt.update(np.array(gradient), state, theta)
    np.testing.assert_allclose(state["v"], [0.1075, -0.0822], rtol=1e-13)
    np.testing.assert_allclose(previous - theta, [0.001075, -0.000822], rtol=1e-12)


def test_float32_parameters_stay_float32():
    params = {"w": np.ones(3, np.float32)}
    opt = optim.adam(optim.cosine_decay(0.01, 10))
    new_params, state = opt.update({"w": np.full(3, 0.5, np.float32)}, opt.init(params), params)
    assert new_params["w"].dtype == np.float32 and state["m"]["w"].dtype == np.float32
    assert state["v"]["w"].dtype == np.float32


def test_update_rejects_mismatched_structures():
    opt = optim.adam()
    params = {"W": np.ones(2), "b": np.ones(1)}
    with pytest.raises(cr.ArgumentError, match="structure"):
        opt.update({"W": np.ones(2)}, opt.init(params), params)
    with pytest.raises(cr.ArgumentError, match=r"what adam\.init returned"):
        opt.update(params, optim.sgd().init(params), params)


# ---- schedules --------------------------------------------------------------------------------


def test_schedules_match_seed_002_learning_rate_explorer():
    total, lr, epochs = 200, 0.01, np.arange(200)
    seed = {  # 12.18, "Learning Rate Schedule Explorer", verbatim
        "step": lr * (0.5 ** (epochs // 50)),
        "exponential": lr * np.exp(-0.02 * epochs),
        "cosine": lr * 0.5 * (1 + np.cos(np.pi * epochs / total)),
        "warmup_cosine": np.where(
            epochs < 20, lr * epochs / 20, lr * 0.5 * (1 + np.cos(np.pi * (epochs - 20) / (total - 20)))
        ),
    }
    ours = {
        "step": optim.step_decay(lr, every=50, factor=0.5),
        "exponential": optim.exponential_decay(lr, rate=0.02),
        "cosine": optim.cosine_decay(lr, total_steps=total),
        "warmup_cosine": optim.warmup_cosine(lr, warmup_steps=20, total_steps=total),
    }
    for name, schedule in ours.items():
        np.testing.assert_allclose(
            [float(schedule(int(e))) for e in epochs], seed[name], rtol=1e-14, atol=1e-18, err_msg=name
        )
        np.testing.assert_allclose(schedule(epochs), seed[name], rtol=1e-14, atol=1e-18, err_msg=name)


def test_schedules_written_out():
    assert [optim.step_decay(0.1, every=3, factor=0.1)(s) for s in (0, 2, 3, 7)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.001], rel=1e-14
    )
    cosine = optim.cosine_decay(1.0, total_steps=100, final_lr=0.1)
    assert [float(cosine(s)) for s in (0, 50, 100, 1000)] == pytest.approx([1.0, 0.55, 0.1, 0.1], rel=1e-14)
    warm = optim.warmup_cosine(1.0, warmup_steps=10, total_steps=110)
    assert [float(warm(s)) for s in (0, 5, 10, 60, 110, 200)] == pytest.approx([0, 0.5, 1.0, 0.5, 0, 0], abs=1e-15)
    assert float(optim.constant(0.3)(17)) == 0.3
    with pytest.raises(ValueError, match="warmup_steps"):
        optim.warmup_cosine(1.0, warmup_steps=10, total_steps=10)


@pytest.mark.parametrize(
    "schedule",
    [
        optim.step_decay(0.1, every=3),
        optim.exponential_decay(0.1, 0.05),
        optim.cosine_decay(0.1, 20, final_lr=0.01),
        optim.warmup_cosine(0.1, 4, 20),
        optim.constant(0.1),
    ],
    ids=lambda s: type(s).__name__,
)
def test_schedules_trace_with_the_step_count_as_an_input(schedule):
    traced = cr.jit(lambda count: schedule(count) + 0.0 * count)
    for step in (0, 1, 3, 4, 10, 25):
        assert float(traced(np.int64(step))) == pytest.approx(float(schedule(step)), rel=1e-14, abs=1e-18)
    assert len(traced._cache) == 1  # one compilation serves every step


# ---- clipping -------------------------------------------------------------------------------


def test_clip_by_value():
    clipped = optim.clip_by_value({"a": np.array([-3.0, 0.5, 2.0])}, 1.0)
    assert clipped["a"].tolist() == [-1.0, 0.5, 1.0]


def test_clip_by_global_norm_scales_every_leaf_by_one_factor():
    grads = {"a": np.array([3.0, 0.0]), "b": [np.array([[4.0]])]}
    clipped, norm = optim.clip_by_global_norm(grads, 1.0)
    assert float(norm) == 5.0
    np.testing.assert_allclose(clipped["a"], [0.6, 0.0], rtol=1e-15)
    np.testing.assert_allclose(clipped["b"][0], [[0.8]], rtol=1e-15)
    unchanged, _ = optim.clip_by_global_norm(grads, 10.0)
    assert unchanged["a"].tolist() == [3.0, 0.0] and unchanged["b"][0].tolist() == [[4.0]]
    with pytest.raises(ValueError):
        optim.clip_by_global_norm(grads, 0.0)


def test_clipping_traced_equals_eager():
    grads = {"a": np.array([3.0, -7.0]), "b": np.array([[4.0, 0.1]])}
    traced = cr.jit(lambda g: optim.clip_by_global_norm(optim.clip_by_value(g, 5.0), 2.0))
    (got, norm), (expected, expected_norm) = (
        traced(grads),
        optim.clip_by_global_norm(optim.clip_by_value(grads, 5.0), 2.0),
    )
    assert float(norm) == pytest.approx(float(expected_norm), rel=1e-15)
    for key in grads:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-15)
