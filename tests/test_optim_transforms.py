"""optim.accumulate and optim.topk_compression (seed 003, 6.4 and 7.3), and how train_step's
gradient clipping composes with them."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import chainrule as cr
from chainrule import optim
from chainrule.errors import ArgumentError
from chainrule.optim import transforms


def squared_error(params, x, y):
    """A mean over the batch, so the gradient of a batch is the mean of its halves' gradients."""
    residual = np.tanh(x @ params["W"]) @ params["v"] + params["b"] - y
    return np.mean(residual * residual)


def problem(samples=12, seed=0):
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((3, 4)), "v": rng.standard_normal(4), "b": np.float64(0.3)}
    return params, rng.standard_normal((samples, 3)), rng.standard_normal(samples)


def full_batch_steps(optimizer, params, x, y, batches, steps):
    """Reference: the plain optimizer, each step on ``batches`` micro-batches joined together."""
    state = optimizer.init(params)
    gradient = cr.grad(squared_error)
    for step in range(steps):
        rows = np.concatenate(batches[step])
        params, state = optimizer.update(gradient(params, x[rows], y[rows]), state, params)
    return params


@pytest.mark.parametrize(
    "make_optimizer",
    [lambda: optim.sgd(0.1), lambda: optim.adam(0.05), lambda: optim.adam(optim.cosine_decay(0.05, 3))],
    ids=["sgd", "adam", "adam-cosine"],
)
@pytest.mark.parametrize("fused", [True, False])
def test_k_accumulated_micro_batches_equal_one_step_on_the_k_times_batch(make_optimizer, fused):
    params, x, y = problem()
    k = 3
    micro = [[np.arange(i, i + 2) + 6 * step for i in range(0, 6, 2)] for step in range(2)]  # 2 steps of 3 x 2
    expected = full_batch_steps(make_optimizer(), params, x, y, micro, steps=2)
    accumulating = optim.accumulate(make_optimizer(), k)
    step = optim.train_step(squared_error, accumulating, fused=fused)
    state = accumulating.init(params)
    current = params
    for big_step in range(2):
        for index, rows in enumerate(micro[big_step]):
            before = current
            _, current, state = step(current, state, x[rows], y[rows])
            if index < k - 1:  # between the k-th micro-batches nothing moves
                for name in params:
                    np.testing.assert_array_equal(current[name], before[name])
    for name in params:
        np.testing.assert_allclose(current[name], expected[name], rtol=1e-12, atol=1e-14)
    assert int(state["count"]) == 6
    np.testing.assert_array_equal(state["accumulated"]["W"], 0.0)


def test_accumulate_counts_its_learning_rate_in_whole_steps():
    opt = optim.accumulate(optim.sgd(optim.step_decay(1.0, every=1, factor=0.5)), 4)
    assert [float(opt.learning_rate_at(np.int64(c))) for c in range(9)] == [1.0] * 4 + [0.5] * 4 + [0.25]


def test_clipping_in_train_step_acts_on_each_micro_batch_before_it_is_accumulated():
    params, x, y = problem()
    gradient = cr.grad(squared_error)
    micro = [np.arange(0, 2), np.arange(2, 4)]
    clipped = [optim.clip_by_global_norm(gradient(params, x[rows], y[rows]), 0.05)[0] for rows in micro]
    mean = {name: (clipped[0][name] + clipped[1][name]) / 2 for name in params}
    expected = {name: params[name] - 0.1 * mean[name] for name in params}
    opt = optim.accumulate(optim.sgd(0.1), 2)
    step = optim.train_step(squared_error, opt, clip_norm=0.05)
    state, current = opt.init(params), params
    for rows in micro:
        _, current, state = step(current, state, x[rows], y[rows])
    for name in params:
        np.testing.assert_allclose(current[name], expected[name], rtol=1e-13)


def test_topk_sends_the_largest_elements_and_keeps_the_rest_as_residual():
    opt = optim.topk_compression(optim.sgd(1.0), ratio=0.25)
    params = {"w": np.zeros(8)}
    state = opt.init(params)
    g = np.array([0.1, -4.0, 0.3, 2.0, -0.2, 0.05, 0.7, -0.6])
    params, state = opt.update({"w": g}, state, params)
    np.testing.assert_array_equal(params["w"], [0, 4.0, 0, -2.0, 0, 0, 0, 0])  # ceil(0.25 * 8) = 2 sent
    np.testing.assert_array_equal(state["residual"]["w"], [0.1, 0, 0.3, 0, -0.2, 0.05, 0.7, -0.6])
    # error feedback: the residual joins the next gradient, so 0.7 and -0.6 go out next time
    params, state = opt.update({"w": np.zeros(8)}, state, params)
    np.testing.assert_array_equal(params["w"], [0, 4.0, 0, -2.0, 0, 0, -0.7, 0.6])


def test_topk_error_feedback_loses_nothing_and_ratio_one_is_the_optimizer_itself():
    rng = np.random.default_rng(3)
    gradients = [{"w": rng.standard_normal((4, 5))} for _ in range(6)]
    opt = optim.topk_compression(optim.sgd(0.1), ratio=0.1)
    params, state = {"w": np.zeros((4, 5))}, opt.init({"w": np.zeros((4, 5))})
    for g in gradients:
        params, state = opt.update(g, state, params)
    # what was applied plus what waits in the residual is every gradient: p = -lr (sum g - residual)
    total = sum(g["w"] for g in gradients)
    np.testing.assert_allclose(params["w"], -0.1 * (total - state["residual"]["w"]), rtol=1e-13, atol=1e-15)
    dense, compressed = optim.adam(0.01), optim.topk_compression(optim.adam(0.01), ratio=1.0)
    p1, s1 = {"w": np.ones((4, 5))}, dense.init({"w": np.ones((4, 5))})
    p2, s2 = {"w": np.ones((4, 5))}, compressed.init({"w": np.ones((4, 5))})
    for g in gradients:
        p1, s1 = dense.update(g, s1, p1)
        p2, s2 = compressed.update(g, s2, p2)
    np.testing.assert_array_equal(p1["w"], p2["w"])


def test_topk_compressed_training_still_fits_in_a_fused_step():
    params, x, y = problem(samples=64, seed=1)
    for opt in (optim.adam(0.02), optim.topk_compression(optim.adam(0.02), ratio=0.2)):
        step = optim.train_step(squared_error, opt, backend="llvm")
        state, current = opt.init(params), params
        first = float(squared_error(params, x, y))
        for _ in range(300):
            value, current, state = step(current, state, x, y)
        assert float(value) < 0.5 * first, opt.name


def test_transforms_reject_bad_settings_and_their_docstrings_run():
    with pytest.raises(ArgumentError, match="k >= 1"):
        optim.accumulate(optim.sgd(), 0)
    with pytest.raises(ArgumentError, match="0 < ratio <= 1"):
        optim.topk_compression(optim.sgd(), 0.0)
    assert doctest.testmod(transforms).failed == 0
