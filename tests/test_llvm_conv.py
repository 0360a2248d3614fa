"""The convolution and max-pooling primitives compiled natively by the LLVM backend (im2col and
col2im loops around BLAS gemm, chainrule/backends/llvm/conv.py; max pooling's loops,
chainrule/backends/llvm/maxpool.py): every primitive under every attribute combination agrees with
the NumPy backend (the pools exactly, NaN, infinities and ties included, since their arithmetic is
the same; the products to rounding), strided and transposed operands work, float16 falls back to
the NumPy callback, derivatives match finite differences, and a CNN's gradient kernel calls no
Python."""

from __future__ import annotations

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr
from chainrule import nn
from chainrule.backends.llvm import kernel as llvm_kernel
from chainrule.frontends.tracer import operation
from chainrule.ir import conv_kernels

CONV_OPS = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad")
POOL_OPS = ("max_pool2d", "max_pool2d_scatter", "max_pool2d_gather")
CONV_GEOMETRIES = [  # (stride, padding, dilation, groups)
    ((1, 1), (0, 0), (1, 1), 1),
    ((2, 1), (1, 2), (1, 1), 1),
    ((1, 2), (1, 0), (2, 1), 2),
    ((2, 2), (2, 2), (2, 2), 4),
    ((3, 1), (0, 1), (1, 3), 1),
]
POOL_GEOMETRIES = [  # (kernel, stride, padding, dilation)
    ((2, 2), (2, 2), (0, 0), (1, 1)),  # windows side by side: the scatter writes
    ((3, 3), (2, 2), (1, 1), (1, 1)),  # overlapping windows: the scatter adds
    ((2, 3), (1, 1), (1, 0), (2, 1)),
    ((2, 2), (3, 3), (1, 1), (1, 1)),  # gaps between windows
]


def kernel_of(compiled, *args):
    entry, _ = compiled._specialize(args)
    return entry.kernel


def _conv_operands(op, geometry, dtype, seed=0):
    """Batch-last operands of ``op``: images (4, 7, 6, 3), kernels (4, 4 / groups, 3, 2), cotangents."""
    stride, padding, dilation, groups = geometry
    rng = np.random.default_rng(seed)
    images, kernels = rng.standard_normal((4, 7, 6, 3)), rng.standard_normal((4, 4 // groups, 3, 2))
    out_hw = [conv_kernels.out_size((7, 6)[a], (3, 2)[a], stride[a], padding[a], dilation[a]) for a in (0, 1)]
    cotangent = rng.standard_normal((4, *out_hw, 3))
    operands = {"conv2d": (images, kernels), "conv2d_input_grad": (cotangent, kernels)}
    operands["conv2d_weight_grad"] = (images, cotangent)
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    attrs |= {"conv2d_input_grad": {"input_hw": (7, 6)}, "conv2d_weight_grad": {"kernel": (3, 2)}}.get(op, {})
    return [a.astype(dtype) for a in operands[op]], attrs


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
@pytest.mark.parametrize("op", CONV_OPS)
def test_each_convolution_agrees_with_the_numpy_backend_without_a_callback(op, geometry, dtype):
    (a, b), attrs = _conv_operands(op, geometry, dtype)
    compiled = {
        backend: cr.jit(lambda a, b: operation(op, a, b, **attrs), backend=backend) for backend in ("numpy", "llvm")
    }
    expected, got = compiled["numpy"](a, b), compiled["llvm"](a, b)
    assert got.dtype == expected.dtype == np.dtype(dtype)
    tolerance = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)
    assert not kernel_of(compiled["llvm"], a, b).lowered.fallbacks


def _pool_images(shape, seed):
    """Images with ties (rounded values, zeros of both signs), NaNs and infinities of both signs."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal(shape) * 2) / 2
    flat = x.reshape(-1)
    spots = rng.permutation(flat.size)
    flat[spots[:4]], flat[spots[4:8]], flat[spots[8:12]] = np.nan, np.inf, -np.inf
    return x


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("geometry", POOL_GEOMETRIES)
@pytest.mark.parametrize("op", POOL_OPS)
def test_each_max_pool_op_equals_the_numpy_backend_with_ties_nans_and_infinities(op, geometry, dtype):
    kernel, stride, padding, dilation = geometry
    attrs = {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation}
    keys = _pool_images((3, 9, 8, 5), 1).astype(dtype)
    pooled_shape = conv_kernels.max_pool2d(keys, **attrs).shape
    rng = np.random.default_rng(2)
    second = rng.standard_normal(pooled_shape if op == "max_pool2d_scatter" else keys.shape).astype(dtype)
    second.reshape(-1)[:3] = (np.inf, -np.inf, np.nan)
    operands = (keys,) if op == "max_pool2d" else (keys, second)
    compiled = {
        backend: cr.jit(lambda *a: operation(op, *a, **attrs), backend=backend) for backend in ("numpy", "llvm")
    }
    expected, got = compiled["numpy"](*operands), compiled["llvm"](*operands)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)  # NaN where NumPy has NaN, the same numbers elsewhere
    assert not kernel_of(compiled["llvm"], *operands).lowered.fallbacks


def test_strided_and_transposed_operands_are_read_or_copied_for_blas():
    """NCHW images transposed to batch-last (im2col reads the strides) and kernels stored HWIO
    (gemm cannot read them as a matrix: copied into the workspace)."""
    rng = np.random.default_rng(3)
    x_nchw, w_hwio = rng.standard_normal((3, 4, 7, 6)), rng.standard_normal((3, 2, 2, 4))
    attrs = {"stride": (1, 2), "padding": (1, 1), "dilation": (1, 1), "groups": 2}

    def f(x_nchw, w_hwio):
        y = operation("conv2d", np.transpose(x_nchw, (1, 2, 3, 0)), np.transpose(w_hwio, (3, 2, 0, 1)), **attrs)
        return weighted_sum(np.tanh(y))

    expected = cr.grad(f, argnums=(0, 1))(x_nchw, w_hwio)
    llvm = cr.grad(f, argnums=(0, 1), backend="llvm")
    for got, want in zip(llvm(x_nchw, w_hwio), expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert not kernel_of(llvm, x_nchw, w_hwio).lowered.fallbacks


def test_float16_convolutions_and_pools_fall_back_to_the_numpy_callback():
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 5, 5, 2)).astype(np.float16), rng.standard_normal((3, 2, 2, 2)).astype(np.float16)
    attrs = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}
    pool = {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0), "dilation": (1, 1)}
    f = lambda x, w: operation("max_pool2d", operation("conv2d", x, w, **attrs), **pool)
    compiled = cr.jit(f, backend="llvm")
    np.testing.assert_array_equal(compiled(x, w), cr.jit(f)(x, w))
    assert sorted(f.op for f in kernel_of(compiled, x, w).lowered.fallbacks) == ["conv2d", "max_pool2d"]


def test_second_derivatives_on_the_llvm_backend_match_finite_differences_of_its_gradient():
    """The Hessian-vector products run every convolution op (forward, both adjoints, their
    adjoints) and the pool's scatter and gather natively."""
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 2, 7, 6)), rng.standard_normal((4, 1, 3, 3))

    def loss(x, w):
        y = nn.conv.conv2d(x, w, stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
        pooled = nn.conv.max_pool2d(np.sin(y), 2, 1, 1)
        return weighted_sum(pooled[:, :, : y.shape[2], : y.shape[3]] * y)

    direction = (rng.standard_normal(x.shape), rng.standard_normal(w.shape))
    hv = cr.hvp(loss, argnums=(0, 1), backend="llvm")(x, w, direction)
    gradient = cr.grad(loss, argnums=(0, 1), backend="llvm")
    step = 1e-6
    plus = gradient(x + step * direction[0], w + step * direction[1])
    minus = gradient(x - step * direction[0], w - step * direction[1])
    for got, high, low in zip(hv, plus, minus):
        assert relative_error(got, (high - low) / (2 * step)) < 1e-7
    for argnum, numeric in enumerate(numerical_gradient(loss, (x, w), argnum) for argnum in (0, 1)):
        assert relative_error(gradient(x, w)[argnum], numeric) < 1e-8


def test_vmapped_convolution_gradients_fold_into_groups_and_batch_natively():
    rng = np.random.default_rng(6)
    xs, ws = rng.standard_normal((3, 2, 4, 5, 5)), rng.standard_normal((3, 6, 2, 3, 3))
    loss = lambda x, w: weighted_sum(
        np.tanh(nn.conv.max_pool2d(nn.conv.conv2d(x, w, stride=2, padding=1, groups=2), 2))
    )
    per_example = cr.grad(loss, argnums=(0, 1))
    for in_axes in ((0, 0), (0, None)):
        batched = cr.jit(cr.vmap(per_example, in_axes=in_axes), backend="llvm")
        w_arg = ws if in_axes[1] == 0 else ws[0]
        got = batched(xs, w_arg)
        expected = [per_example(x, w) for x, w in zip(xs, ws if in_axes[1] == 0 else [ws[0]] * 3)]
        for position in (0, 1):
            np.testing.assert_allclose(got[position], np.stack([e[position] for e in expected]), rtol=1e-12, atol=1e-12)
        ops = {f.op for f in kernel_of(batched, xs, w_arg).lowered.fallbacks}
        assert not ops & set(CONV_OPS + POOL_OPS)


def test_a_cnn_training_gradient_calls_no_python():
    model = nn.Sequential(
        [
            nn.Conv2D(1, 4, 3, padding=1),
            nn.Activation("relu"),
            nn.MaxPool2D(2),
            nn.Conv2D(4, 6, 3, padding=1),
            nn.Activation("relu"),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dense(6 * 2 * 2, 3),
        ]
    )
    params = model.init(0)
    x, labels = np.random.default_rng(7).random((16, 1, 8, 8)), np.arange(16) % 3
    loss = lambda p, x, y: nn.cross_entropy(model.apply(p, x), y)
    llvm = cr.grad(loss, backend="llvm")
    got, expected = llvm(params, x, labels), cr.grad(loss)(params, x, labels)
    for layer, values in expected.items():
        for name, value in values.items():
            np.testing.assert_allclose(got[layer][name], value, rtol=1e-11, atol=1e-13)
    # nothing calls Python: not the convolutions and pools, nor Flatten's copy of transposed images,
    # nor the cross-entropy's pick of each label's log-probability and its adjoint (those two call
    # NumPy back only to raise its IndexError for a label out of range)
    callbacks = [f.op for f in kernel_of(llvm, params, x, labels).lowered.fallbacks if not f.on_error]
    assert callbacks == []


@pytest.fixture
def exact_threads():
    yield llvm_kernel.set_exact_threads
    llvm_kernel.set_exact_threads(None)


def test_large_convolutions_and_pools_run_over_channels_on_the_pool_with_the_same_bits_on_any_thread_count(
    exact_threads,
):
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((128, 8, 16, 16)), rng.standard_normal((8, 8, 3, 3))
    loss = lambda x, w: weighted_sum(np.tanh(nn.conv.max_pool2d(nn.conv.conv2d(x, w, padding=1), 2)))
    gradient = cr.grad(loss, argnums=(0, 1), backend="llvm")
    exact_threads(1)
    one = gradient(x, w)
    exact_threads(3)
    three = gradient(x, w)
    for a, b, want in zip(one, three, cr.grad(loss, argnums=(0, 1))(x, w)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, want, rtol=1e-11, atol=1e-12)
    source = gradient.source(x, w)
    assert source.count("im2col") >= 2 and source.count("col2im") >= 1
    assert kernel_of(gradient, x, w).lowered.parallel_loops >= 5  # im2col twice, col2im, two pool passes


def test_the_thread_estimate_counts_the_convolution_and_pool_loops():
    """im2col and the pool passes run on the kernel's threads: a kernel of convolutions is offered
    threads by its estimated work like one of elementwise loops (it was estimated at 0 before)."""
    rng = np.random.default_rng(5)
    x, w = rng.random((128, 4, 16, 16)), rng.random((8, 4, 3, 3))
    convolution = cr.jit(lambda x, w: nn.conv2d(x, w, padding=1), backend="llvm")
    pooling = cr.jit(lambda x: nn.max_pool2d(x, 2), backend="llvm")
    columns = 4 * 3 * 3 * 16 * 16 * 128  # channels x kernel offsets x output pixels x batch
    pooled = 4 * 8 * 8 * 128 * 2 * 2  # pooled elements x window
    assert llvm_kernel.estimated_work_ns(convolution.graph(x, w)) == pytest.approx(columns * llvm_kernel.ARITHMETIC_NS)
    assert llvm_kernel.estimated_work_ns(pooling.graph(x)) == pytest.approx(pooled * llvm_kernel.ARITHMETIC_NS)
    assert llvm_kernel.threads_for(llvm_kernel.estimated_work_ns(convolution.graph(x, w)), 1, 2) == 2
