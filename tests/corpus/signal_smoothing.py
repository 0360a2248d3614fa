"""Signal smoothing: edge-padded np.convolve with a learned kernel, fit to a clean target."""

import numpy as np


def loss(signal, kernel, target):
    half = kernel.size // 2
    padded = np.pad(signal, half, mode="edge")
    smooth = np.convolve(padded, kernel / np.sum(kernel), mode="valid")
    return np.mean((smooth - target) ** 2) + 0.01 * np.sum(np.diff(smooth) ** 2)


def example_args():
    rng = np.random.default_rng(26)
    t = np.linspace(0, 2 * np.pi, 20)
    return np.sin(t) + 0.3 * rng.standard_normal(20), rng.uniform(0.5, 1.5, 5), np.sin(t)
