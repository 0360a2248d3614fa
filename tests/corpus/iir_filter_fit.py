"""System identification: a second-order IIR filter (``scipy.signal.lfilter``) whose numerator and
denominator coefficients are fit to a measured response, with a stability margin on the poles."""

import numpy as np
from scipy.signal import lfilter


def loss(b, a_tail, u, y_measured):
    a = np.concatenate([np.ones(1), a_tail])
    y = lfilter(b, a, u)
    margin = np.maximum(0.0, np.abs(a_tail[1]) - 0.9) ** 2
    return np.mean((y - y_measured) ** 2) + margin


def example_args():
    rng = np.random.default_rng(397)
    u = rng.standard_normal(40)
    y_measured = lfilter([0.3, 0.2, 0.1], [1.0, -0.6, 0.25], u) + 0.01 * rng.standard_normal(40)
    return np.array([0.25, 0.15, 0.05]), np.array([-0.5, 0.2]), u, y_measured
