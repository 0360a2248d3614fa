"""scipy.ndimage's linear filters on traced arrays (``frontends/scipy_ndimage.py``): values against
SciPy itself for every boundary mode (kernels wider than the image included), gradients of the image,
the weights and a Gaussian's sigma against finite differences on both backends, and the forms not
traced named in the error."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndimage
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr

RNG = np.random.default_rng(3)
IMAGE = RNG.standard_normal((7, 9))
WEIGHTS_2D, WEIGHTS_1D = RNG.standard_normal((3, 4)), RNG.standard_normal(4)
MODES = ["reflect", "mirror", "nearest", "wrap", "constant", "grid-wrap", "grid-mirror", "grid-constant"]
FILTERS = {
    "correlate1d": lambda x, m: ndimage.correlate1d(x, WEIGHTS_1D, axis=0, mode=m, cval=0.5),
    "correlate1d origin": lambda x, m: ndimage.correlate1d(x, WEIGHTS_1D, mode=m, origin=1),
    "convolve1d": lambda x, m: ndimage.convolve1d(x, WEIGHTS_1D, mode=m),
    "convolve1d odd": lambda x, m: ndimage.convolve1d(x, WEIGHTS_1D[:3], axis=0, mode=m, origin=-1),
    "correlate": lambda x, m: ndimage.correlate(x, WEIGHTS_2D, mode=m),
    "convolve origin": lambda x, m: ndimage.convolve(x, WEIGHTS_2D, mode=m, origin=(0, 1)),
    "gaussian_filter": lambda x, m: ndimage.gaussian_filter(x, 1.3, mode=m),
    "gaussian_filter wider than the image": lambda x, m: ndimage.gaussian_filter(x, (3.0, 0.0), mode=m),
    "gaussian_filter1d order 1": lambda x, m: ndimage.gaussian_filter1d(x, 0.8, axis=0, order=1, mode=m),
    "uniform_filter": lambda x, m: ndimage.uniform_filter(x, (3, 4), mode=m),
    "uniform_filter1d origin": lambda x, m: ndimage.uniform_filter1d(x, 4, mode=m, origin=-1),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(FILTERS))
def test_values_are_scipys_in_every_mode(name, mode):
    function = FILTERS[name]
    np.testing.assert_allclose(
        cr.jit(lambda x: function(x, mode))(IMAGE), function(IMAGE, mode), rtol=1e-12, atol=1e-13
    )


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_the_llvm_backend_computes_the_same(name):
    function = FILTERS[name]
    np.testing.assert_allclose(
        cr.jit(lambda x: function(x, "mirror"), backend="llvm")(IMAGE),
        function(IMAGE, "mirror"),
        rtol=1e-12,
        atol=1e-13,
    )


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("mode", ["reflect", "wrap", "constant"])
def test_gradients_of_image_and_weights_match_finite_differences(mode, backend):
    def score(image, weights, kernel):
        blurred = ndimage.convolve(image, weights, mode=mode, cval=0.3)
        return weighted_sum(np.tanh(ndimage.correlate1d(blurred, kernel, axis=0, mode=mode)))

    args = (IMAGE, WEIGHTS_2D, WEIGHTS_1D)
    gradients = cr.grad(score, argnums=(0, 1, 2), backend=backend)(*args)
    for index, analytic in enumerate(gradients):
        assert relative_error(analytic, numerical_gradient(score, args, index)) < 1e-7, f"argument {index}"


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_traced_sigma_with_a_fixed_radius_is_a_learnable_blur(backend):
    def score(image, sigma):
        return weighted_sum(ndimage.gaussian_filter(image, sigma, radius=3) ** 2)

    sigma = np.array(1.1)
    np.testing.assert_allclose(cr.jit(score, backend=backend)(IMAGE, sigma), score(IMAGE, 1.1), rtol=1e-12)
    gradients = cr.grad(score, argnums=(0, 1), backend=backend)(IMAGE, sigma)
    for index, analytic in enumerate(gradients):
        assert relative_error(analytic, numerical_gradient(score, (IMAGE, sigma), index)) < 1e-7


def test_float32_images_stay_float32():
    image = IMAGE.astype(np.float32)
    blurred = cr.jit(lambda x: ndimage.gaussian_filter(x, 1.0))(image)
    assert blurred.dtype == np.float32
    np.testing.assert_allclose(blurred, ndimage.gaussian_filter(image, 1.0), rtol=1e-5)


@pytest.mark.parametrize(
    "function,error,message",
    [
        (lambda x: ndimage.gaussian_filter(x, x[0, 0] ** 2), cr.UnsupportedError, "without radius="),
        (lambda x: ndimage.uniform_filter(x, 3, output=np.empty((7, 9))), cr.UnsupportedError, "output="),
        (lambda x: ndimage.correlate1d(x, WEIGHTS_1D, origin=3), cr.ShapeError, "Invalid origin"),
        (lambda x: ndimage.correlate(x, WEIGHTS_2D, mode="bogus"), cr.ShapeError, "boundary mode"),
    ],
)
def test_forms_not_traced_are_named(function, error, message):
    with pytest.raises(error, match=message):
        cr.jit(function)(IMAGE)
