"""Blind deblurring with scipy.ndimage: a latent image and the width of a Gaussian blur (traced sigma,
fixed radius) are fit so that ``gaussian_filter`` of the latent image matches a blurred observation,
with a Laplacian-stencil smoothness prior (``convolve``, ``mode="nearest"``) and a local-contrast
term against a ``uniform_filter`` mean."""

import numpy as np
from scipy import ndimage

LAPLACE = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def loss(latent, log_sigma, observed):
    sigma = np.exp(log_sigma)
    blurred = ndimage.gaussian_filter(latent, sigma, mode="reflect", radius=4)
    data = np.mean((blurred - observed) ** 2)
    smooth = np.mean(ndimage.convolve(latent, LAPLACE, mode="nearest") ** 2)
    local_mean = ndimage.uniform_filter(latent, size=3, mode="mirror")
    contrast = np.mean(np.sqrt((latent - local_mean) ** 2 + 1e-3))
    return data + 0.02 * smooth + 0.01 * contrast


def example_args():
    rng = np.random.default_rng(406)
    yy, xx = np.mgrid[0:10, 0:10]
    sharp = ((xx - 4.5) ** 2 + (yy - 4.5) ** 2 < 10).astype(float)
    observed = ndimage.gaussian_filter(sharp, 1.2, radius=4) + 0.02 * rng.standard_normal((10, 10))
    return observed + 0.05 * rng.standard_normal((10, 10)), np.array(np.log(0.9)), observed
