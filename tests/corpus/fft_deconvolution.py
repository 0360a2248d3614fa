"""Tikhonov-regularized deconvolution by FFT circular convolution: a signal and a short blur kernel
(zero-padded by ``rfft(kernel, n=...)``) fit to blurred data, ``irfft(rfft(x) * rfft(k), n=len(x))``."""

import numpy as np


def circular_convolve(signal, kernel):
    n = len(signal)
    return np.fft.irfft(np.fft.rfft(signal) * np.fft.rfft(kernel, n=n), n=n)


def loss(signal, kernel, data):
    residual = circular_convolve(signal, kernel) - data
    roughness = np.sum(np.diff(signal) ** 2)
    return 0.5 * np.sum(residual**2) + 0.05 * np.sum(signal**2) + 0.1 * roughness + 0.5 * (np.sum(kernel) - 1) ** 2


def example_args():
    rng = np.random.default_rng(42)
    n = 23  # odd: irfft needs n= to give the length back
    clean = np.where(np.abs(np.arange(n) - 11) < 4, 1.0, 0.0)
    blur = np.array([0.25, 0.5, 0.25])
    data = circular_convolve(clean, blur) + 0.02 * rng.standard_normal(n)
    return data + 0.1 * rng.standard_normal(n), np.array([0.3, 0.4, 0.3]), data
