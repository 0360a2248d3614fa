"""2-D image deblurring with a Gaussian point-spread function of learned width, applied by
``fft2``/``ifft2`` (the centred PSF moved to the origin by ``ifftshift``), with a power-spectrum
smoothness prior on the centred spectrum (``fftshift(fft2(...))``, weighted by squared frequency)."""

import numpy as np

SIZE = 8


def psf(log_width):
    r = np.arange(SIZE) - SIZE // 2
    squared = r[:, None] ** 2 + r[None, :] ** 2
    kernel = np.exp(-squared / (2 * np.exp(2 * log_width)))
    return kernel / np.sum(kernel)


def blur(image, log_width):
    transfer = np.fft.fft2(np.fft.ifftshift(psf(log_width)))
    return np.real(np.fft.ifft2(np.fft.fft2(image) * transfer))


def loss(image, log_width, observed):
    data_term = np.mean((blur(image, log_width) - observed) ** 2)
    centred = np.fft.fftshift(np.fft.fft2(image, norm="ortho"))
    f = np.fft.fftshift(np.fft.fftfreq(SIZE))
    weight = f[:, None] ** 2 + f[None, :] ** 2
    prior = np.sum(weight * np.abs(centred) ** 2)
    return data_term + 0.01 * prior


def example_args():
    rng = np.random.default_rng(44)
    truth = np.zeros((SIZE, SIZE))
    truth[2:6, 3:7] = 1.0
    observed = blur(truth, np.array(0.2)) + 0.02 * rng.standard_normal((SIZE, SIZE))
    return observed + 0.05 * rng.standard_normal((SIZE, SIZE)), np.array(0.0), observed
