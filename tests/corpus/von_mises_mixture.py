"""Mixture of von Mises distributions for wind directions: log-densities ``kappa cos(theta - mu)
- log(2 pi I0(kappa))`` with the normalizer through the scaled Bessel function
(``log I0(k) = log i0e(k) + k``), mixed by a softmax, plus the mean resultant length of each
component (``i1e / i0e``) pulled toward an observed circular concentration."""

import numpy as np
from scipy.special import i0e, i1e, logsumexp


def loss(mu, log_kappa, logits, angles, observed_resultant):
    kappa = np.exp(log_kappa)
    log_weights = logits - logsumexp(logits)
    log_norm = np.log(2 * np.pi * i0e(kappa)) + kappa
    log_density = kappa * np.cos(angles[:, None] - mu) - log_norm + log_weights
    loglik = np.sum(logsumexp(log_density, axis=1))
    resultant = i1e(kappa) / i0e(kappa)  # E[cos(theta - mu)] of each component
    return -loglik / len(angles) + np.sum((resultant - observed_resultant) ** 2)


def example_args():
    rng = np.random.default_rng(409)
    angles = np.concatenate([rng.vonmises(0.5, 4.0, 25), rng.vonmises(-2.0, 1.5, 15)])
    return np.array([0.4, -1.8]), np.log(np.array([3.0, 1.2])), np.array([0.3, -0.2]), angles, np.array([0.8, 0.5])
