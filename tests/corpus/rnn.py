"""An Elman RNN over 10 steps, squared error on the last hidden state's readout."""

import numpy as np


def loss(Wx, Wh, b, w_out, xs):
    h = np.zeros(Wh.shape[0])
    total = 0.0
    for t in range(10):
        h = np.tanh(xs[t] @ Wx + h @ Wh + b)
        total = total + (h @ w_out - np.sin(t)) ** 2
    return total / 10


def example_args():
    rng = np.random.default_rng(15)
    return (
        0.5 * rng.standard_normal((3, 4)),
        0.4 * rng.standard_normal((4, 4)),
        0.1 * rng.standard_normal(4),
        rng.standard_normal(4),
        rng.standard_normal((10, 3)),
    )
