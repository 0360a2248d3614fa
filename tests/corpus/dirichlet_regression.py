"""Dirichlet regression of compositions (sand/silt/clay fractions of soil samples): concentrations
``exp(X W)`` per sample, the likelihood ``scipy.stats.dirichlet.logpdf`` of each observed composition
given without its last fraction (SciPy completes it to 1), plus a ridge penalty."""

import numpy as np
from scipy import stats


def loss(W, X, fractions):
    concentrations = np.exp(X @ W)  # (samples, 3)
    loglik = sum(stats.dirichlet.logpdf(y, a) for y, a in zip(fractions, concentrations))
    return -loglik / len(X) + 0.01 * np.sum(W**2)


def example_args():
    rng = np.random.default_rng(410)
    X = np.column_stack([np.ones(12), rng.standard_normal((12, 2))])
    truth = np.exp(X @ np.array([[1.0, 0.8, 0.5], [0.4, -0.3, 0.1], [-0.2, 0.3, 0.6]]))
    compositions = np.array([rng.dirichlet(a) for a in truth])
    return 0.2 * rng.standard_normal((3, 3)), X, compositions[:, :2]
