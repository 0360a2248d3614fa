"""optim.mixed_precision_step (seed 003, 7.4): float16 forward and backward, float32 master weights,
dynamic loss scaling that backs off on overflow and grows after N clean steps; float16 training of
the spiral network reaches float32's loss."""

from __future__ import annotations

import doctest
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule import optim
from chainrule.errors import ArgumentError
from chainrule.optim import mixed_precision

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def linear_loss(params, x):
    return np.mean((x @ params["w"]).astype(np.float32) ** 2)


def test_small_gradients_underflow_in_float16_unless_the_loss_is_scaled():
    # x w = 1e-4 is a normal float16 and so is its cotangent 2 (x w) / n = 1e-4, but the gradient
    # x * 1e-4 = 2e-8 is below half float16's smallest subnormal (6e-8): it rounds to zero
    params = {"w": np.full(2, 0.5, np.float32)}
    x = np.eye(2, dtype=np.float32) * 2e-4
    exact = cr.grad(linear_loss)(params, x.astype(np.float64))["w"]
    found = {}
    for scale in (1.0, 2.0**16):
        scaling = optim.DynamicLossScale(initial_scale=scale)
        # lr 1e6 so the step is large enough for float32 weights of 0.5 to show
        step = optim.mixed_precision_step(linear_loss, optim.sgd(1e6), loss_scale=scaling)
        _, new, _, _, finite = step(params, optim.sgd(1e6).init(params), scaling.init(), x)
        assert bool(finite)
        found[scale] = (params["w"] - new["w"]) / 1e6
    np.testing.assert_array_equal(found[1.0], 0.0)  # lost to float16
    np.testing.assert_allclose(found[2.0**16], exact, rtol=5e-3)  # float16's precision, kept alive by scaling


def test_an_overflowing_step_is_skipped_and_the_scale_backs_off_then_grows_after_clean_steps():
    params = {"w": np.array([30.0, -20.0], np.float32)}
    x = np.eye(2, dtype=np.float32)
    scaling = optim.DynamicLossScale(initial_scale=2.0**14, growth_interval=3)
    opt = optim.adam(0.01)
    step = optim.mixed_precision_step(linear_loss, opt, loss_scale=scaling)
    opt_state, scale_state = opt.init(params), scaling.init()
    history = []
    for _ in range(10):
        before = params
        _, params, opt_state, scale_state, finite = step(params, opt_state, scale_state, x)
        history.append((float(scale_state["scale"]), bool(finite)))
        if not finite:  # skipped: nothing moved, the optimizer did not count it
            np.testing.assert_array_equal(params["w"], before["w"])
    # gradient 30 * 2^14 = 491,520 > 65,504 (float16's max) overflows; 30 * 2^11 = 61,440 does not
    assert history[:4] == [(2.0**13, False), (2.0**12, False), (2.0**11, False), (2.0**11, True)]
    assert history[4:6] == [(2.0**11, True), (2.0**12, True)]  # three clean steps in a row: grow
    assert int(opt_state["count"]) == sum(finite for _, finite in history)
    assert params["w"].dtype == np.float32


def test_clipping_after_unscaling_clips_the_true_gradient():
    params = {"w": np.array([3.0, 4.0], np.float32)}  # gradient 2 w / 2 = w: norm 5
    x = np.eye(2, dtype=np.float32)
    scaling = optim.DynamicLossScale(initial_scale=256.0)
    step = optim.mixed_precision_step(linear_loss, optim.sgd(1.0), loss_scale=scaling, clip_norm=1.0)
    _, new, _, _, _ = step(params, optim.sgd(1.0).init(params), scaling.init(), x)
    np.testing.assert_allclose(params["w"] - new["w"], [0.6, 0.8], rtol=1e-3)  # w / |w|


def spiral_losses(epochs: int) -> tuple:
    sys.path.insert(0, str(EXAMPLES))  # the example imports spiral_classifier's data
    try:
        spec = importlib.util.spec_from_file_location("mixed_precision_example", EXAMPLES / "mixed_precision.py")
        example = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(example)
        result = example.train_both(epochs)
    finally:
        sys.path.remove(str(EXAMPLES))
    losses = result["losses"]
    return losses["float32"][-1], losses["mixed float16"][-1], result["params"], result["scales"]


def test_float16_training_reaches_the_float32_loss_on_the_spirals():
    float32_loss, float16_loss, params, scales = spiral_losses(epochs=200)
    assert float32_loss < 0.05  # both learn the spirals
    # the stated tolerance: float16 ends within 25% (relative) of float32's loss, plus 0.002
    assert float16_loss <= 1.25 * float32_loss + 2e-3
    assert all(leaf.dtype == np.float32 for layer in params.values() for leaf in layer.values())
    skipped = [scale for scale, finite in scales if not finite]
    assert skipped and len(skipped) < 0.05 * len(scales)  # the scale overflowed and backed off, rarely
    assert max(scale for scale, _ in scales) > 2.0**15  # and grew after clean runs


def test_loss_scale_rejects_bad_settings_and_the_docstrings_run():
    with pytest.raises(ArgumentError, match="backoff_factor"):
        optim.DynamicLossScale(backoff_factor=1.5)
    with pytest.raises(ArgumentError, match="growth_interval"):
        optim.DynamicLossScale(growth_interval=0)
    assert doctest.testmod(mixed_precision).failed == 0
