"""Every function of ``chainrule.nn``: forward values, traced against eager, gradients, float32, stability.

Each public function has cases in ``NN_CASES`` (``test_every_nn_function_has_cases``
fails otherwise). A case is checked four ways: eagerly against an independent
NumPy/SciPy formula, traced (``cr.jit``) against eager to 1e-12, its gradient
against central finite differences (relative error < 1e-7), and with float32
inputs (float32 stays float32, close to float64). The stability tests write
out what the losses and their gradients must be at extreme logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.special
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr
import chainrule.nn as nn

# ---- independent finite differences ------------------------------------------------------


def weighted_sum(y):
    """sum(w * y) with fixed non-uniform weights of y's shape and dtype (traced or not)."""
    return np.sum(np.random.default_rng(7).uniform(0.5, 1.5, size=np.shape(y)).astype(y.dtype) * y)


def uniform(low, high, shape, seed=0):
    return np.random.default_rng(seed).uniform(low, high, size=shape)


def away_from_zero(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.2, 2.0, size=shape)


def one_hot(labels, classes):
    return np.eye(classes)[labels]


# ---- the case table ----------------------------------------------------------------------

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


@dataclass(frozen=True)
class NnCase:
    id: str
    function: str  # the name in chainrule.nn.FUNCTIONS this case exercises
    fn: Callable  # args -> array
    args: tuple
    reference: Callable  # args -> the same array, computed independently with NumPy / SciPy
    argnums: tuple = (0,)


NN_CASES: list[NnCase] = []


def nn_case(id, function, fn, reference, *args, argnums=(0,)):
    NN_CASES.append(NnCase(id, function, fn, tuple(args), reference, tuple(argnums)))


def _reference_gelu(x):
    return x * scipy.special.ndtr(x)


def _reference_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _reference_elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(x))


ACTIVATIONS = [
    # (name, call, independent formula, sample) -- kinked functions sampled away from 0
    ("sigmoid", nn.sigmoid, scipy.special.expit, lambda s: uniform(-5, 5, s)),
    ("relu", nn.relu, lambda x: np.where(x > 0, x, 0.0), away_from_zero),
    ("softplus", nn.softplus, lambda x: np.log1p(np.exp(x)), lambda s: uniform(-5, 5, s)),
    ("erf", nn.erf, scipy.special.erf, lambda s: uniform(-2, 2, s)),
    ("leaky_relu", nn.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x), away_from_zero),
    ("elu", nn.elu, _reference_elu, away_from_zero),
    ("selu", nn.selu, lambda x: SELU_SCALE * _reference_elu(x, SELU_ALPHA), away_from_zero),
    ("gelu", nn.gelu, _reference_gelu, lambda s: uniform(-3, 3, s)),
    ("silu", nn.silu, lambda x: x * scipy.special.expit(x), lambda s: uniform(-4, 4, s)),
    ("swish", nn.swish, lambda x: x * scipy.special.expit(x), lambda s: uniform(-4, 4, s)),
]
for _name, _call, _reference, _sample in ACTIVATIONS:
    for _shape in [(), (5,), (2, 1, 3)]:
        nn_case(f"{_name}-{_shape}", _name, _call, _reference, _sample(_shape))
nn_case(
    "leaky_relu-slope-0.2",
    "leaky_relu",
    lambda x: nn.leaky_relu(x, negative_slope=0.2),
    lambda x: np.where(x > 0, x, 0.2 * x),
    away_from_zero((2, 3)),
)
nn_case(
    "elu-alpha-0.5", "elu", lambda x: nn.elu(x, alpha=0.5), lambda x: _reference_elu(x, 0.5), away_from_zero((2, 3))
)
nn_case("gelu-tanh", "gelu", lambda x: nn.gelu(x, approximate="tanh"), _reference_gelu_tanh, uniform(-3, 3, (2, 3)))

for _shape, _axis in [((4,), -1), ((3, 4), -1), ((3, 4), 0), ((2, 3, 4), 1)]:
    nn_case(
        f"softmax-{_shape}-axis={_axis}",
        "softmax",
        lambda x, axis=_axis: nn.softmax(x, axis=axis),
        lambda x, axis=_axis: scipy.special.softmax(x, axis=axis),
        uniform(-3, 3, _shape),
    )
    nn_case(
        f"log_softmax-{_shape}-axis={_axis}",
        "log_softmax",
        lambda x, axis=_axis: nn.log_softmax(x, axis=axis),
        lambda x, axis=_axis: scipy.special.log_softmax(x, axis=axis),
        uniform(-3, 3, _shape),
    )
for _axis, _keepdims in [(None, False), (1, False), (-1, True), ((0, 2), False), ((0, 2), True), (None, True)]:
    nn_case(
        f"logsumexp-axis={_axis}-keepdims={_keepdims}",
        "logsumexp",
        lambda x, axis=_axis, keepdims=_keepdims: nn.logsumexp(x, axis=axis, keepdims=keepdims),
        lambda x, axis=_axis, keepdims=_keepdims: scipy.special.logsumexp(x, axis=axis, keepdims=keepdims),
        uniform(-3, 3, (2, 3, 4)),
    )

nn_case(
    "mse",
    "mse",
    nn.mse,
    lambda p, t: np.mean((p - t) ** 2),
    uniform(-2, 2, (4, 3), 1),
    uniform(-2, 2, (4, 3), 2),
    argnums=(0, 1),
)
nn_case(
    "mse-broadcast-target",
    "mse",
    nn.mse,
    lambda p, t: np.mean((p - t) ** 2),
    uniform(-2, 2, (4, 3), 1),
    uniform(-2, 2, (3,), 2),
    argnums=(0, 1),
)


def _reference_bce(p, t):
    return -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))


def _reference_bce_logits(z, t):
    p = scipy.special.expit(z)
    return -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))


nn_case(
    "binary_cross_entropy-probabilities",
    "binary_cross_entropy",
    nn.binary_cross_entropy,
    _reference_bce,
    uniform(0.1, 0.9, (4, 2), 1),
    uniform(0, 1, (4, 2), 2),
    argnums=(0, 1),
)
nn_case(
    "binary_cross_entropy-probabilities-hard-targets",
    "binary_cross_entropy",
    nn.binary_cross_entropy,
    _reference_bce,
    uniform(0.1, 0.9, (6,), 1),
    np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0]),
)
nn_case(
    "binary_cross_entropy-from_logits",
    "binary_cross_entropy",
    lambda z, t: nn.binary_cross_entropy(z, t, from_logits=True),
    _reference_bce_logits,
    uniform(-4, 4, (4, 2), 1),
    uniform(0, 1, (4, 2), 2),
    argnums=(0, 1),
)


def _reference_cross_entropy_labels(z, labels, axis=-1):
    log_p = np.moveaxis(scipy.special.log_softmax(z, axis=axis), axis, -1).reshape(-1, z.shape[axis])
    return -np.mean(log_p[np.arange(log_p.shape[0]), labels.reshape(-1)])


def _reference_cross_entropy_soft(z, t, axis=-1):
    return -np.sum(t * scipy.special.log_softmax(z, axis=axis)) / (z.size // z.shape[axis])


nn_case(
    "cross_entropy-labels",
    "cross_entropy",
    nn.cross_entropy,
    _reference_cross_entropy_labels,
    uniform(-3, 3, (4, 3)),
    np.array([2, 0, 1, 2]),
)
nn_case(
    "cross_entropy-labels-3d",
    "cross_entropy",
    nn.cross_entropy,
    _reference_cross_entropy_labels,
    uniform(-3, 3, (2, 3, 4)),
    np.array([[0, 3, 3], [1, 2, 0]]),
)
nn_case(
    "cross_entropy-labels-axis-1-of-3d",
    "cross_entropy",
    lambda z, y: nn.cross_entropy(z, y, axis=1),
    lambda z, y: _reference_cross_entropy_labels(z, y, axis=1),
    uniform(-3, 3, (2, 4, 3)),
    np.array([[0, 3, 3], [1, 2, 0]]),
)
nn_case(
    "cross_entropy-labels-axis-0",
    "cross_entropy",
    lambda z, y: nn.cross_entropy(z, y, axis=0),
    lambda z, y: _reference_cross_entropy_labels(z, y, axis=0),
    uniform(-3, 3, (3, 4)),
    np.array([2, 0, 1, 2]),
)
nn_case(
    "cross_entropy-soft-targets",
    "cross_entropy",
    nn.cross_entropy,
    _reference_cross_entropy_soft,
    uniform(-3, 3, (4, 3), 1),
    scipy.special.softmax(uniform(-1, 1, (4, 3), 2), axis=1),
    argnums=(0, 1),
)
nn_case(
    "cross_entropy-one-hot-axis-0",
    "cross_entropy",
    lambda z, t: nn.cross_entropy(z, t, axis=0),
    lambda z, t: _reference_cross_entropy_soft(z, t, axis=0),
    uniform(-3, 3, (3, 4)),
    one_hot(np.array([2, 0, 1, 2]), 3).T,
)


def test_every_nn_function_has_cases():
    missing = sorted(set(nn.FUNCTIONS) - {c.function for c in NN_CASES})
    assert not missing, f"chainrule.nn functions without cases in tests/test_nn.py: {missing}"


def test_case_ids_are_unique():
    ids = [c.id for c in NN_CASES]
    assert len(ids) == len(set(ids))


# ---- every case ----------------------------------------------------------------------------

_ids = {"ids": lambda c: c.id}


def _grad(c: NnCase):
    return cr.grad(lambda *args: weighted_sum(c.fn(*args)), argnums=c.argnums if len(c.argnums) > 1 else c.argnums[0])


def _gradients(c: NnCase, args):
    gradients = _grad(c)(*args)
    return gradients if len(c.argnums) > 1 else (gradients,)


@pytest.mark.parametrize("c", NN_CASES, **_ids)
def test_eager_value_matches_an_independent_formula(c: NnCase):
    np.testing.assert_allclose(c.fn(*c.args), c.reference(*c.args), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("c", NN_CASES, **_ids)
def test_traced_equals_eager(c: NnCase):
    traced, eager = cr.jit(c.fn)(*c.args), c.fn(*c.args)
    assert np.shape(traced) == np.shape(eager)
    np.testing.assert_allclose(traced, eager, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("c", NN_CASES, **_ids)
def test_gradient_matches_central_differences(c: NnCase):
    def scalar(*args):
        return weighted_sum(c.fn(*args))

    for argnum, gradient in zip(c.argnums, _gradients(c, c.args)):
        assert np.shape(gradient) == np.shape(c.args[argnum]) and np.asarray(gradient).dtype == np.float64
        numeric = numerical_gradient(scalar, c.args, argnum)
        error = relative_error(gradient, numeric)
        assert error < 1e-7, f"d/d arg{argnum}: relative error {error:.2e}\nchainrule: {gradient}\nFD: {numeric}"


def _float32(arg):
    return arg.astype(np.float32) if np.asarray(arg).dtype.kind == "f" else arg


@pytest.mark.parametrize("c", NN_CASES, **_ids)
def test_float32_stays_float32(c: NnCase):
    args32 = tuple(_float32(a) for a in c.args)
    args64 = tuple(a.astype(np.float64) if a.dtype == np.float32 else a for a in args32)  # the same point
    eager, traced = np.asarray(c.fn(*args32)), np.asarray(cr.jit(c.fn)(*args32))
    assert eager.dtype == np.float32 and traced.dtype == np.float32
    np.testing.assert_allclose(traced, c.reference(*args64), rtol=1e-4, atol=1e-6)

    def scalar(*args):
        return weighted_sum(c.fn(*args))

    for argnum, gradient in zip(c.argnums, _gradients(c, args32)):
        assert np.asarray(gradient).dtype == np.float32, f"d/d arg{argnum} is {np.asarray(gradient).dtype}"
        numeric = numerical_gradient(scalar, args64, argnum)
        scale = max(1.0, float(np.max(np.abs(numeric))))
        np.testing.assert_allclose(gradient, numeric, rtol=1e-4, atol=1e-5 * scale)


# ---- stability at extreme logits -------------------------------------------------------------

EXTREME_LOGITS = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [1000.0, 1000.0, -1000.0]])
THIRD = 1.0 / 3.0


@pytest.mark.parametrize("run", ["eager", "traced"])
def test_softmax_family_is_finite_and_exact_at_logits_of_plus_minus_1000(run):
    call = (lambda f: f) if run == "eager" else cr.jit
    np.testing.assert_allclose(
        call(nn.softmax)(EXTREME_LOGITS), [[1.0, 0.0, 0.0], [THIRD, THIRD, THIRD], [0.5, 0.5, 0.0]], rtol=1e-15, atol=0
    )
    # log_softmax = x - logsumexp(x) rounds to the spacing of the logits (~1e-13 at 1000), not of the result
    np.testing.assert_allclose(
        call(nn.log_softmax)(EXTREME_LOGITS),
        [[0.0, -2000.0, -1000.0], [-math.log(3)] * 3, [-math.log(2), -math.log(2), -2000.0 - math.log(2)]],
        rtol=1e-15,
        atol=np.spacing(1000.0),
    )
    np.testing.assert_allclose(
        call(lambda z: nn.logsumexp(z, axis=1))(EXTREME_LOGITS),
        [1000.0, -1000.0 + math.log(3), 1000.0 + math.log(2)],
        rtol=1e-15,
    )
    assert call(lambda z: nn.logsumexp(z))(EXTREME_LOGITS) == pytest.approx(1000.0 + math.log(3), rel=1e-15)


def test_softmax_family_gradients_are_finite_and_exact_at_logits_of_plus_minus_1000():
    # d logsumexp / dz = softmax(z); d sum(log_softmax) / dz = 1 - 3 softmax(z) (3 classes); softmax sums to 1
    softmax_rows = np.array([[1.0, 0.0, 0.0], [THIRD, THIRD, THIRD], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(
        cr.grad(lambda z: np.sum(nn.logsumexp(z, axis=1)))(EXTREME_LOGITS), softmax_rows, rtol=1e-15, atol=0
    )
    np.testing.assert_allclose(
        cr.grad(lambda z: np.sum(nn.log_softmax(z)))(EXTREME_LOGITS), 1 - 3 * softmax_rows, rtol=1e-14, atol=1e-15
    )
    np.testing.assert_allclose(cr.grad(lambda z: np.sum(nn.softmax(z)))(EXTREME_LOGITS), np.zeros((3, 3)), atol=1e-15)
    weighted = cr.grad(lambda z: weighted_sum(nn.softmax(z)))(EXTREME_LOGITS)
    assert np.all(np.isfinite(weighted))


LOGITS_40 = np.array([40.0, -40.0, 40.0, -40.0, 0.5])
TARGETS_40 = np.array([1.0, 0.0, 0.0, 1.0, 0.3])


def test_binary_cross_entropy_from_logits_is_exact_at_logits_of_plus_minus_40():
    loss = nn.binary_cross_entropy(LOGITS_40, TARGETS_40, from_logits=True)
    expected = np.mean(np.logaddexp(0.0, LOGITS_40) - TARGETS_40 * LOGITS_40)  # softplus(z) - t z
    assert loss == pytest.approx(expected, rel=1e-15)
    assert cr.jit(lambda z, t: nn.binary_cross_entropy(z, t, from_logits=True))(LOGITS_40, TARGETS_40) == pytest.approx(
        expected, rel=1e-15
    )
    assert expected == pytest.approx((40.0 + 40.0 + math.log1p(math.exp(0.5)) - 0.15) / 5, rel=1e-15)


def test_binary_cross_entropy_from_logits_gradient_is_sigmoid_minus_target_over_n_at_logits_40():
    loss = cr.grad(lambda z, t: nn.binary_cross_entropy(z, t, from_logits=True), argnums=(0, 1))
    dz, dt = loss(LOGITS_40, TARGETS_40)
    n = LOGITS_40.size
    assert np.all(np.isfinite(dz)) and np.all(np.isfinite(dt))
    np.testing.assert_allclose(dz, (scipy.special.expit(LOGITS_40) - TARGETS_40) / n, rtol=1e-14, atol=1e-18)
    np.testing.assert_allclose(dt, -LOGITS_40 / n, rtol=1e-15)


def test_binary_cross_entropy_on_probabilities_clamps_each_log_at_minus_100():
    p, t = np.array([0.0, 1.0, 0.5]), np.array([1.0, 0.0, 1.0])
    expected = (100.0 + 100.0 + math.log(2)) / 3
    with np.errstate(divide="ignore"):
        assert nn.binary_cross_entropy(p, t) == pytest.approx(expected, rel=1e-15)
        assert cr.jit(nn.binary_cross_entropy)(p, t) == pytest.approx(expected, rel=1e-15)


# ---- cross-entropy: labels, one-hot, gradient ------------------------------------------------

LOGITS = uniform(-3, 3, (5, 4), seed=11)
LABELS = np.array([3, 0, 0, 2, 1])


def test_cross_entropy_with_integer_labels_equals_with_one_hot_targets():
    targets = one_hot(LABELS, 4)
    assert nn.cross_entropy(LOGITS, LABELS) == pytest.approx(nn.cross_entropy(LOGITS, targets), rel=1e-14)
    assert cr.jit(nn.cross_entropy)(LOGITS, LABELS) == pytest.approx(
        cr.jit(nn.cross_entropy)(LOGITS, targets), rel=1e-14
    )
    np.testing.assert_allclose(
        cr.grad(nn.cross_entropy)(LOGITS, LABELS), cr.grad(nn.cross_entropy)(LOGITS, targets), rtol=1e-13, atol=1e-16
    )


def test_cross_entropy_gradient_is_softmax_minus_one_hot_over_n():
    expected = (scipy.special.softmax(LOGITS, axis=1) - one_hot(LABELS, 4)) / len(LABELS)
    np.testing.assert_allclose(cr.grad(nn.cross_entropy)(LOGITS, LABELS), expected, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(cr.grad(nn.cross_entropy)(LOGITS, one_hot(LABELS, 4)), expected, rtol=1e-13, atol=1e-16)


def test_cross_entropy_is_finite_and_exact_at_logits_of_plus_minus_1000():
    labels = np.array([0, 2, 1])
    # rows: p(label) = 1, 1/3, 1/2 -> losses 0, log 3, log 2
    expected = (0.0 + math.log(3) + math.log(2)) / 3
    assert nn.cross_entropy(EXTREME_LOGITS, labels) == pytest.approx(expected, rel=1e-15)
    assert cr.jit(nn.cross_entropy)(EXTREME_LOGITS, labels) == pytest.approx(expected, rel=1e-15)
    gradient = cr.grad(nn.cross_entropy)(EXTREME_LOGITS, labels)
    softmax_rows = np.array([[1.0, 0.0, 0.0], [THIRD, THIRD, THIRD], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(gradient, (softmax_rows - one_hot(labels, 3)) / 3, rtol=1e-14, atol=1e-16)


def test_cross_entropy_rejects_float_targets_of_the_wrong_shape():
    with pytest.raises(cr.ShapeError):
        cr.jit(nn.cross_entropy)(LOGITS, np.zeros(5))


# ---- conventions ----------------------------------------------------------------------------


def test_relu_gradient_at_zero_is_zero():
    np.testing.assert_array_equal(cr.grad(lambda x: np.sum(nn.relu(x)))(np.array([-1.0, 0.0, 1.0])), [0.0, 0.0, 1.0])


def test_leaky_relu_gradient_at_zero_is_the_negative_slope():
    g = cr.grad(lambda x: np.sum(nn.leaky_relu(x, negative_slope=0.2)))(np.array([-1.0, 0.0, 1.0]))
    np.testing.assert_allclose(g, [0.2, 0.2, 1.0], rtol=1e-15)


def test_elu_gradient_is_finite_for_large_positive_inputs():
    g = cr.grad(lambda x: np.sum(nn.elu(x)))(np.array([-800.0, -1.0, 1.0, 800.0]))
    np.testing.assert_allclose(g, [0.0, math.exp(-1.0), 1.0, 1.0], rtol=1e-15)


def test_gelu_tanh_form_is_close_to_the_erf_form():
    x = np.linspace(-4, 4, 33)
    np.testing.assert_allclose(nn.gelu(x, approximate="tanh"), nn.gelu(x), atol=1e-3)


def test_sigmoid_and_softplus_are_finite_at_plus_minus_1000():
    x = np.array([-1000.0, 1000.0])
    np.testing.assert_array_equal(nn.sigmoid(x), [0.0, 1.0])
    np.testing.assert_array_equal(nn.softplus(x), [0.0, 1000.0])
    np.testing.assert_array_equal(cr.grad(lambda x: np.sum(nn.softplus(x)))(x), [0.0, 1.0])
    np.testing.assert_array_equal(cr.grad(lambda x: np.sum(nn.sigmoid(x)))(x), [0.0, 0.0])
