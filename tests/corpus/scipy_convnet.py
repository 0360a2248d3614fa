"""A small LeNet-style classifier written with scipy.signal: convolution, max-pooling, tanh, log-softmax.

Each filter is a 3-D kernel of shape (1, kh, kw) convolved with the batch of images (N, H, W) by
scipy.signal.convolve(mode="valid"); filter maps are stacked along a channel axis; pooling reshapes
every 2x2 block onto axes of its own and takes np.max twice, as autograd's convnet example does.
"""

import numpy as np
from scipy.signal import convolve


def log_softmax(z):
    shifted = z - np.max(z, axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def pool(maps):
    n, c, h, w = maps.shape
    blocks = maps.reshape((n, c, h // 2, 2, w // 2, 2))
    return np.max(np.max(blocks, axis=3), axis=4)


def loss(kernels, biases, dense, dense_bias, images, one_hot):
    maps = np.stack([convolve(images, k[None], mode="valid") for k in kernels], axis=1)
    hidden = pool(np.tanh(maps + biases[None, :, None, None]))
    flat = hidden.reshape((hidden.shape[0], -1))
    return -np.sum(log_softmax(flat @ dense + dense_bias) * one_hot) / len(images)


def example_args():
    rng = np.random.default_rng(28)
    images = rng.standard_normal((3, 7, 7))
    one_hot = np.eye(3)[[0, 2, 1]]
    return (
        rng.standard_normal((2, 2, 2)),
        0.1 * rng.standard_normal(2),
        0.3 * rng.standard_normal((18, 3)),
        np.zeros(3),
        images,
        one_hot,
    )
