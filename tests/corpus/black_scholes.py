"""Black-Scholes call prices and Greeks (delta, gamma, vega), Phi written with scipy.special.erf."""

import numpy as np
from scipy.special import erf


def phi(x):
    return np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi)


def Phi(x):
    return 0.5 * (1 + erf(x / np.sqrt(2)))


def loss(S, K, T, r, sigma):
    sqrtT = np.sqrt(T)
    d1 = (np.log(S / K) + (r + 0.5 * sigma**2) * T) / (sigma * sqrtT)
    d2 = d1 - sigma * sqrtT
    price = S * Phi(d1) - K * np.exp(-r * T) * Phi(d2)
    delta = Phi(d1)
    gamma = phi(d1) / (S * sigma * sqrtT)
    vega = S * phi(d1) * sqrtT
    return np.sum(price) + np.sum(delta) + 10 * np.sum(gamma) + 0.1 * np.sum(vega)


def example_args():
    rng = np.random.default_rng(5)
    S = rng.uniform(90, 110, 4)
    K = np.array([95.0, 100.0, 105.0, 100.0])
    T = rng.uniform(0.25, 1.0, 4)
    return S, K, T, np.array(0.03), rng.uniform(0.15, 0.3, 4)
