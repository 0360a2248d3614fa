"""Feature decorrelation penalty: off-diagonal correlations (np.corrcoef) and median absolute deviation."""

import numpy as np


def loss(Z):
    C = np.corrcoef(Z, rowvar=False)
    off = C - np.diag(np.diag(C))
    mad = np.median(np.abs(Z - np.median(Z, axis=0)), axis=0)
    return np.sum(off**2) + np.sum((mad - 1.0) ** 2) + 0.01 * np.sum(np.cov(Z.T))


def example_args():
    rng = np.random.default_rng(34)
    return (rng.standard_normal((15, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]]),)
