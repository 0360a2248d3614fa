"""Black-Scholes call prices written with scipy.stats.norm.cdf (the way most code writes Phi)."""

import numpy as np
from scipy.stats import norm


def loss(S, K, T, r, sigma):
    d1 = (np.log(S / K) + (r + 0.5 * sigma**2) * T) / (sigma * np.sqrt(T))
    d2 = d1 - sigma * np.sqrt(T)
    return np.sum(S * norm.cdf(d1) - K * np.exp(-r * T) * norm.cdf(d2))


def example_args():
    rng = np.random.default_rng(5)
    return (
        rng.uniform(90, 110, 3),
        np.array([95.0, 100.0, 105.0]),
        rng.uniform(0.25, 1, 3),
        np.array(0.03),
        np.array([0.2, 0.25, 0.3]),
    )
