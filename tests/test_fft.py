"""np.fft and complex arithmetic on traced values: values equal NumPy's, gradients equal central
finite differences (and forward mode equals reverse mode) on both backends, and what is not
supported on complex values raises, naming the function and the user's line."""

import doctest

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr
from chainrule.errors import TraceError, UnsupportedError
from chainrule.frontends import complex_values

RNG = np.random.default_rng(16)
X1 = RNG.standard_normal(6)
X2 = RNG.standard_normal((3, 4))
X3 = RNG.standard_normal((2, 3, 4))


def spectrum_loss(transform):
    """A real, nonlinear function of a transform's complex (or real) result, weighted so that
    every output element and both of its parts count."""

    def loss(x):
        z = transform(x)
        weights = np.linspace(0.5, 1.5, np.size(z)).reshape(np.shape(z))
        magnitude = np.sum(weights * np.abs(z) ** 2)
        return magnitude + np.sum(np.cos(weights) * np.real(z)) + np.sum(np.sin(weights) * np.imag(z))

    return loss


TRANSFORMS = [
    ("fft", lambda x: np.fft.fft(x), X1),
    ("fft-n-short", lambda x: np.fft.fft(x, n=4), X1),
    ("fft-n-long-ortho", lambda x: np.fft.fft(x, n=9, norm="ortho"), X1),
    ("fft-axis0-forward", lambda x: np.fft.fft(x, axis=0, norm="forward"), X2),
    ("ifft", lambda x: np.fft.ifft(x), X1),
    ("ifft-of-fft-times-x", lambda x: np.fft.ifft(np.fft.fft(x) * x, n=7), X1),
    ("rfft-even", lambda x: np.fft.rfft(x), X1),
    ("rfft-odd-n", lambda x: np.fft.rfft(x, n=5, norm="ortho"), X1),
    ("irfft-default-n", lambda x: np.fft.irfft(np.fft.fft(x)[:4] * (1 + x[:4])), X1),
    ("irfft-odd-n", lambda x: np.fft.irfft(np.fft.fft(x), n=7), X1),
    ("irfft-of-real", lambda x: np.fft.irfft(x, n=8, norm="forward"), X1),
    ("hfft", lambda x: np.fft.hfft(np.fft.fft(x)[:4], n=6), X1),
    ("ihfft", lambda x: np.fft.ihfft(x, norm="ortho"), X1),
    ("fft2", lambda x: np.fft.fft2(x), X2),
    ("ifft2-s", lambda x: np.fft.ifft2(x, s=(2, 5)), X2),
    ("rfft2", lambda x: np.fft.rfft2(x), X2),
    ("irfft2", lambda x: np.fft.irfft2(np.fft.rfft2(x) * np.exp(1j * x[:, :3]), s=(3, 4)), X2),
    ("fftn", lambda x: np.fft.fftn(x, norm="ortho"), X3),
    ("ifftn-axes", lambda x: np.fft.ifftn(x, axes=(0, 2)), X3),
    ("rfftn", lambda x: np.fft.rfftn(x), X3),
    ("irfftn", lambda x: np.fft.irfftn(np.fft.rfftn(x), s=(2, 3, 4), axes=(0, 1, 2)), X3),
    ("fftshift", lambda x: np.fft.fftshift(np.fft.fft2(x)), X2),
    ("ifftshift-axis", lambda x: np.fft.ifftshift(np.fft.fft(x), axes=0), X2),
    ("fftshift-real", lambda x: np.fft.fftshift(x), X2),
]


def _parts(transform):
    def both(x):
        z = transform(x)
        return np.real(z), np.imag(z) if np.iscomplexobj(z) else 0 * z

    return both


@pytest.mark.parametrize("name,transform,x", TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_a_transform_has_numpys_value_and_the_gradient_of_finite_differences(name, transform, x, backend):
    expected = transform(x)
    real, imaginary = cr.jit(_parts(transform), backend=backend)(x)
    np.testing.assert_allclose(real + 1j * imaginary, expected, rtol=1e-12, atol=1e-12)
    loss = spectrum_loss(transform)
    gradient = cr.grad(loss, backend=backend)(x)
    assert relative_error(gradient, numerical_gradient(loss, (x,), 0)) < 1e-7
    tangent = RNG.standard_normal(x.shape)
    _, directional = cr.jvp(loss, (x,), (tangent,), backend=backend)
    np.testing.assert_allclose(directional, np.sum(gradient * tangent), rtol=1e-10, atol=1e-12)


COMPLEX_PROGRAMS = [
    ("add-sub-constants", lambda x: np.fft.fft(x) + (2 - 1j) - x * 1j + np.ones(6) * 3j),
    ("multiply-by-complex-constant", lambda x: (0.5 + 2j) * np.fft.fft(x) * np.exp(1j * np.arange(6.0))),
    ("real-times-complex-constant", lambda x: x * np.exp(-2j * np.pi * np.arange(6) / 6)),
    ("divide", lambda x: np.fft.fft(x) / (2 + np.fft.fft(x[::-1]) ** 2) + 1 / (3 + np.fft.fft(x))),
    ("divide-by-real", lambda x: np.fft.fft(x) / (2 + x**2)),
    ("powers", lambda x: np.fft.fft(x) ** 3 + np.fft.fft(x) ** -2 + np.square(np.fft.fft(x)) + np.fft.fft(x) ** 0),
    ("exp-log", lambda x: np.exp(np.fft.fft(x) * 0.3) + np.log(np.fft.fft(x) + 5)),
    ("conj-angle", lambda x: np.conj(np.fft.fft(x)) * np.fft.fft(x).conj() + np.angle(np.fft.fft(x) + 1j)),
    ("negative-positive", lambda x: -np.fft.fft(x) + (+np.fft.fft(x)) * 2),
    ("matmul-dot", lambda x: np.exp(1j * np.outer(x, x)) @ x + np.dot(x, np.exp(1j * np.outer(x, x)))),
    ("outer-vdot", lambda x: np.outer(np.fft.fft(x), x)[2] + np.vdot(np.fft.fft(x), np.fft.fft(x * x))),
    ("sum-mean-axis", lambda x: np.sum(np.exp(1j * np.outer(x, x)), axis=0) + np.exp(1j * x).mean()),
    ("index-reshape-transpose", lambda x: np.fft.fft(x).reshape(2, 3).T[1:, ::-1].ravel()),
    ("concatenate-stack", lambda x: np.concatenate([np.fft.fft(x), x, np.stack([np.fft.fft(x), x])[1]])),
    ("roll-flip-diff-cumsum", lambda x: np.roll(np.fft.fft(x), 2) + np.flip(np.cumsum(np.fft.fft(x)))),
    ("real-imag-attributes", lambda x: np.fft.fft(x).real * np.fft.fft(x).imag + np.abs(np.fft.fft(x))),
    # the principal root in every quadrant and on both half-axes (x holds negative and positive values)
    ("sqrt", lambda x: np.sqrt(np.fft.fft(x)) + np.sqrt(x * (1 - 1e-3j)) + np.sqrt(1j * x + 2)),
]


@pytest.mark.parametrize("name,program", COMPLEX_PROGRAMS, ids=[p[0] for p in COMPLEX_PROGRAMS])
def test_complex_arithmetic_has_numpys_value_and_gradient(name, program, backend):
    real, imaginary = cr.jit(_parts(program), backend=backend)(X1)
    np.testing.assert_allclose(real + 1j * imaginary, program(X1), rtol=1e-11, atol=1e-11)
    loss = spectrum_loss(program)
    gradient = cr.grad(loss, backend=backend)(X1)
    assert relative_error(gradient, numerical_gradient(loss, (X1,), 0)) < 1e-7


def test_second_derivatives_vmap_and_float32():
    def power(x):
        return np.sum(np.abs(np.fft.rfft(x * x)) ** 2 * np.arange(1.0, 5.0))

    hessian = cr.hessian(power)(X1)
    by_differences = np.stack([numerical_gradient(lambda x, i=i: cr.grad(power)(x)[i], (X1,), 0) for i in range(6)])
    assert relative_error(hessian, by_differences) < 1e-7
    batch = RNG.standard_normal((3, 6))
    np.testing.assert_allclose(cr.vmap(cr.grad(power))(batch), [cr.grad(power)(row) for row in batch], rtol=1e-12)
    single = cr.grad(power)(X1.astype(np.float32))
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, cr.grad(power)(X1), rtol=1e-4)


def test_the_gradient_of_a_forward_transform_is_an_unscaled_inverse_transform():
    graph = cr.grad(lambda x: np.sum(np.fft.fft(x, norm="ortho").real * x)).graph(X1)
    transforms = sorted(
        (graph[i].params["inverse"], graph[i].params["scale"]) for i in range(len(graph)) if graph[i].op == "dft"
    )
    assert transforms == [(False, 1 / np.sqrt(6)), (True, 1 / np.sqrt(6))]


@pytest.mark.parametrize(
    "program,error,words",
    [
        (lambda x: np.fft.fft(x), TraceError, "complex"),
        (lambda x: np.sum(np.sin(np.fft.fft(x))).real, UnsupportedError, "np.sin is not supported on complex values"),
        (lambda x: np.sum(np.fft.rfft(np.fft.fft(x)).real), UnsupportedError, "rfft of a complex value"),
        (lambda x: np.sum((np.fft.fft(x) ** 0.5).real), UnsupportedError, "integer powers"),
        (lambda x: np.sum(np.fft.fft(x).astype(np.float64)), TraceError, "drops its imaginary part"),
        (lambda x: np.sum(x) if np.fft.fft(x)[0] == 1 else 0.0, TraceError, "comparisons"),
        (lambda x: float(np.fft.fft(x)[0]), TraceError, "has no value while tracing"),
    ],
    ids=["complex-result", "sin", "rfft-complex", "fractional-power", "astype-real", "compare", "float"],
)
def test_what_complex_values_do_not_support_raises_naming_it(program, error, words):
    with pytest.raises(error) as raised:
        cr.grad(program)(X1) if error is not TraceError or words != "complex" else cr.jit(program)(X1)
    assert words in str(raised.value)
    assert "test_fft.py" in str(raised.value)  # the user's line


def test_the_module_example_runs():
    assert doctest.testmod(complex_values).failed == 0


def test_a_zero_frequency_bin_gives_the_power_spectrums_gradient_not_nan(backend):
    def power(x):
        return np.sum(np.abs(np.fft.rfft(x)) ** 2)

    ones = np.ones(8)  # every bin but the first is exactly 0
    gradient = cr.grad(power, backend=backend)(ones)
    np.testing.assert_allclose(gradient, numerical_gradient(power, (ones,), 0), rtol=1e-9)
    assert np.all(cr.grad(lambda x: np.hypot(x, 0 * x).sum(), backend=backend)(np.zeros(3)) == 0)


# ---- the llvm backend: NumPy's pocketfft loops called from native code ----------------------------

NATIVE_PROGRAMS = [
    ("lines-along-last", lambda x: np.fft.fft(x, axis=1), (6, 8)),  # 6 lines: pocketfft's SIMD path
    ("lines-along-first", lambda x: np.fft.ifft(x, axis=0), (6, 8)),
    ("rfft-odd-3d", lambda x: np.fft.rfft(x, axis=1), (3, 7, 5)),
    ("irfft-even-3d", lambda x: np.fft.irfft(np.fft.rfft(x, axis=2) * x[..., :3], n=4, axis=2), (2, 5, 4)),
    ("transposed-pairs", lambda x: np.fft.fft(np.fft.fft(x, axis=1).T, axis=1), (6, 8)),
    ("every-other-line", lambda x: np.fft.ifft(np.fft.fft(x, axis=0)[::2] * 1j, axis=1), (6, 8)),
    ("reversed-bins", lambda x: np.fft.fft(np.fft.rfft(x, axis=0)[::-1], axis=0), (6, 8)),
    ("a-column-of-bins", lambda x: np.fft.irfft(np.fft.rfft(x, axis=1)[:, 1:3], n=4, axis=1), (6, 8)),
    ("broadcast-lines", lambda x: np.fft.fft(np.broadcast_to(np.fft.fft(x[0]), (3, x.shape[1])), axis=0), (6, 8)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,transform,shape", NATIVE_PROGRAMS, ids=[p[0] for p in NATIVE_PROGRAMS])
def test_the_llvm_backend_runs_the_transforms_natively_with_numpys_values(name, transform, shape, dtype):
    """No node of the gradient's kernel calls Python back; value and gradient equal the NumPy
    backend's (both run pocketfft) in both precisions, on strided, reversed and broadcast operands."""
    loss = spectrum_loss(transform)
    x = RNG.standard_normal(shape).astype(dtype)
    expected = cr.value_and_grad(loss, backend="numpy")(x)
    compiled = cr.value_and_grad(loss, backend="llvm")
    value, gradient = compiled(x)
    kernel = compiled._specialize((x,))[0].kernel
    assert [f.op for f in kernel.lowered.fallbacks if not f.on_error] == []
    assert gradient.dtype == dtype
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    assert abs(value - expected[0]) <= tolerance * abs(expected[0])
    assert relative_error(gradient, expected[1]) < tolerance


def test_a_numpy_whose_fft_ufunc_differs_keeps_the_callback(monkeypatch):
    """The loop's address is taken only from a ufunc that describes itself as expected."""
    from chainrule.backends.llvm import pocketfft

    assert all(pocketfft.address(loop, dtype) for loop in pocketfft.LOOPS for dtype in pocketfft.DTYPES)
    monkeypatch.setattr(pocketfft, "_expected_types", lambda loop, dtype: ["float16"] * 3)
    pocketfft.address.cache_clear()
    try:
        assert pocketfft.address("fft", "float64") == 0
        loss = spectrum_loss(np.fft.rfft)
        compiled = cr.value_and_grad(loss, backend="llvm")
        value, gradient = compiled(X1)
        assert {f.op for f in compiled._specialize((X1,))[0].kernel.lowered.fallbacks} == {"rdft", "irdft"}
        expected = cr.value_and_grad(loss, backend="numpy")(X1)
        assert abs(value - expected[0]) < 1e-12 * abs(expected[0])
        assert relative_error(gradient, expected[1]) < 1e-12
    finally:
        pocketfft.address.cache_clear()
