"""The conv2d and max_pool2d primitives (chainrule/ir/conv.py, chainrule/ir/pool.py) through
nn.conv.conv2d / nn.conv.max_pool2d: forward against explicit loops and PyTorch, gradients
against central finite differences (stride, padding, dilation, groups; both backends), second
order (Hessian-vector products) against finite differences of the gradient, forward mode against
reverse mode, vmap against a loop, and shape errors naming the user's line."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr
from chainrule.errors import ShapeError
from chainrule.nn.conv import conv2d, max_pool2d

CONV_GEOMETRIES = [  # (stride, padding, dilation, groups)
    ((1, 1), (0, 0), (1, 1), 1),
    ((2, 1), (1, 2), (1, 1), 1),
    ((1, 2), (1, 0), (2, 1), 2),
    ((2, 2), (2, 2), (2, 2), 4),
]


def conv_by_loops(x, w, stride, padding, dilation, groups):
    """Grouped cross-correlation, one output pixel at a time, from the definition."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    padded = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    padded[:, :, ph : ph + h, pw : pw + wd] = x
    out_h, out_w = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, o, out_h, out_w))
    for out_channel, row, col in itertools.product(range(o), range(out_h), range(out_w)):
        group = out_channel // (o // groups)
        for channel, i, j in itertools.product(range(cg), range(kh), range(kw)):
            pixel = padded[:, group * cg + channel, row * sh + i * dh, col * sw + j * dw]
            y[:, out_channel, row, col] += w[out_channel, channel, i, j] * pixel
    return y


def _operands(groups, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((4, 4 // groups, 3, 2))


@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"), CONV_GEOMETRIES)
def test_conv2d_forward_matches_loops_and_pytorch(stride, padding, dilation, groups):
    x, w = _operands(groups)
    geometry = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    expected = conv_by_loops(x, w, stride, padding, dilation, groups)
    np.testing.assert_allclose(conv2d(x, w, **geometry), expected, rtol=1e-12, atol=1e-12)
    for backend in ("numpy", "llvm"):
        compiled = cr.jit(lambda x, w: conv2d(x, w, **geometry), backend=backend)
        np.testing.assert_allclose(compiled(x, w), expected, rtol=1e-12, atol=1e-12)
    torch = pytest.importorskip("torch")
    peer = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), None, **geometry)
    np.testing.assert_allclose(conv2d(x, w, **geometry), peer.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"), CONV_GEOMETRIES)
def test_conv2d_gradients_match_finite_differences_on_both_backends(stride, padding, dilation, groups):
    x, w = _operands(groups, seed=1)
    geometry = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}

    def loss(x, w):
        return weighted_sum(np.tanh(conv2d(x, w, **geometry)))

    numeric = [numerical_gradient(loss, (x, w), argnum) for argnum in (0, 1)]
    for backend in ("numpy", "llvm"):
        gradients = cr.grad(loss, argnums=(0, 1), backend=backend)(x, w)
        for gradient, expected in zip(gradients, numeric):
            assert relative_error(gradient, expected) < 1e-9


@pytest.mark.parametrize(("stride", "padding", "dilation", "groups"), CONV_GEOMETRIES[1:])
def test_conv2d_hessian_vector_products_match_finite_differences_of_the_gradient(stride, padding, dilation, groups):
    x, w = _operands(groups, seed=2)
    geometry = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}

    def loss(x, w):  # not quadratic: the Hessian depends on where it is taken, through every conv op
        return weighted_sum(np.sin(conv2d(x, w, **geometry)))

    rng = np.random.default_rng(3)
    direction = (rng.standard_normal(x.shape), rng.standard_normal(w.shape))
    hv = cr.hvp(loss, argnums=(0, 1))(x, w, direction)
    gradient = cr.grad(loss, argnums=(0, 1))
    step = 1e-5
    plus = gradient(x + step * direction[0], w + step * direction[1])
    minus = gradient(x - step * direction[0], w - step * direction[1])
    for got, high, low in zip(hv, plus, minus):
        assert relative_error(got, (high - low) / (2 * step)) < 1e-7


def test_conv2d_forward_mode_matches_reverse_mode():
    x, w = _operands(2, seed=4)
    geometry = {"stride": (2, 1), "padding": (1, 1), "dilation": (1, 2), "groups": 2}
    f = lambda x, w: np.tanh(conv2d(x, w, **geometry))
    tangents = (np.random.default_rng(5).standard_normal(x.shape), np.random.default_rng(6).standard_normal(w.shape))
    _, forward = cr.jvp(f, (x, w), tangents)
    cotangent = np.random.default_rng(7).standard_normal(np.shape(forward))
    _, pullback = cr.vjp(f, x, w)
    backward = pullback(cotangent)
    # <cotangent, J t> = <J^T cotangent, t>
    assert np.isclose(np.sum(cotangent * forward), sum(np.sum(b * t) for b, t in zip(backward, tangents)), rtol=1e-12)


@pytest.mark.parametrize("kernels_batched", [False, True])
def test_vmap_of_a_conv_gradient_matches_a_loop(kernels_batched):
    rng = np.random.default_rng(8)
    xs, ws = rng.standard_normal((3, 2, 4, 5, 5)), rng.standard_normal((3, 6, 2, 3, 3))
    geometry = {"stride": 2, "padding": 1, "groups": 2}
    loss = lambda x, w: weighted_sum(np.tanh(conv2d(x, w, **geometry)))
    per_example = cr.grad(loss, argnums=(0, 1))
    if kernels_batched:
        got = cr.vmap(per_example)(xs, ws)
        expected = [per_example(x, w) for x, w in zip(xs, ws)]
    else:
        got = cr.vmap(per_example, in_axes=(0, None))(xs, ws[0])
        expected = [per_example(x, ws[0]) for x in xs]
    for position in (0, 1):
        np.testing.assert_allclose(got[position], np.stack([e[position] for e in expected]), rtol=1e-12, atol=1e-12)


def _untied_images(shape, seed):
    return np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape) / 7.0 - 3.0


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation"), [(2, None, 0, 1), (3, 2, 1, 1), ((2, 3), 1, (1, 0), 2)]
)
def test_max_pool_first_and_second_order_and_vmap_match_finite_differences_and_loops(kernel, stride, padding, dilation):
    x = _untied_images((2, 3, 7, 6), 9)
    pool = lambda x: max_pool2d(x, kernel, stride, padding, dilation)
    loss = lambda x: weighted_sum(np.sin(pool(x)) * pool(x))  # curved, so the Hessian is not zero
    for backend in ("numpy", "llvm"):
        gradient = cr.grad(loss, backend=backend)(x)
        assert relative_error(gradient, numerical_gradient(loss, (x,), 0)) < 1e-9
    direction = np.random.default_rng(10).standard_normal(x.shape)
    step = 1e-6  # the windows' argmax positions stay put over so small a step
    grad = cr.grad(loss)
    expected = (grad(x + step * direction) - grad(x - step * direction)) / (2 * step)
    assert relative_error(cr.hvp(loss)(x, direction), expected) < 1e-7
    xs = np.stack([x, _untied_images(x.shape, 11)])
    np.testing.assert_allclose(cr.vmap(grad)(xs), np.stack([grad(one) for one in xs]), rtol=1e-13)


def test_max_pool_gradient_of_tied_windows_goes_to_the_first_maximum_as_in_pytorch():
    torch = pytest.importorskip("torch")
    x = np.maximum(np.random.default_rng(12).standard_normal((2, 3, 6, 6)), 0.0)  # relu zeros tie
    x[0, 0, :2, :2] = 1.5  # a window of four equal maxima
    cotangent = np.random.default_rng(13).standard_normal((2, 3, 3, 3))
    _, pullback = cr.vjp(lambda x: max_pool2d(x, 2), x)
    (got,) = pullback(cotangent)
    peer = torch.from_numpy(x).requires_grad_()
    torch.nn.functional.max_pool2d(peer, 2).backward(torch.from_numpy(cotangent))
    np.testing.assert_array_equal(got, peer.grad.numpy())
    np.testing.assert_array_equal(max_pool2d(x, 2), torch.nn.functional.max_pool2d(torch.from_numpy(x), 2).numpy())


def test_shape_errors_name_the_user_line_and_the_shapes():
    x, w = _operands(1)
    with pytest.raises(ShapeError, match=r"test_conv_primitives.py:\d+.*\[2, 4, 7, 6\].*\[4, 2, 3, 2\]"):
        cr.jit(lambda x, w: conv2d(x, w))(x, w[:, :2])
    with pytest.raises(ShapeError, match="groups=3"):
        conv2d(x, w[:3, :1], groups=3)
    with pytest.raises(ShapeError, match=r"test_conv_primitives.py:\d+.*smaller than"):
        cr.jit(lambda x: max_pool2d(x, 9))(x)
