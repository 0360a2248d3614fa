"""Black-Scholes put prices with scipy.special.ndtr for the normal CDF."""

import numpy as np
from scipy.special import ndtr


def loss(S, K, T, r, sigma):
    d1 = (np.log(S / K) + (r + 0.5 * sigma**2) * T) / (sigma * np.sqrt(T))
    d2 = d1 - sigma * np.sqrt(T)
    return np.sum(K * np.exp(-r * T) * ndtr(-d2) - S * ndtr(-d1))


def example_args():
    rng = np.random.default_rng(35)
    return (
        rng.uniform(90, 110, 3),
        np.array([95.0, 100.0, 105.0]),
        rng.uniform(0.25, 1, 3),
        np.array(0.03),
        np.array([0.2, 0.25, 0.3]),
    )
