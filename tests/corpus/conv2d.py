"""A valid 2-D convolution via sliding_window_view and einsum, then a tanh readout."""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def loss(image, kernel, bias):
    windows = sliding_window_view(image, kernel.shape)
    out = np.einsum("ijkl,kl->ij", windows, kernel) + bias
    return np.mean(np.tanh(out) ** 2)


def example_args():
    rng = np.random.default_rng(4)
    return rng.standard_normal((8, 8)), 0.5 * rng.standard_normal((3, 3)), np.array(0.1)
