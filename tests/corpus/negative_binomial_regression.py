"""Negative-binomial (NB2) regression: the log link for the mean and a log dispersion, the
log-likelihood written with ``gammaln`` and ``xlogy``, and a digamma-based moment penalty."""

import numpy as np
from scipy.special import digamma, gammaln, xlogy


def loss(beta, log_alpha, X, counts):
    mu = np.exp(X @ beta)
    r = np.exp(-log_alpha)  # the number of failures, 1 / dispersion
    loglik = (
        gammaln(counts + r) - gammaln(r) - gammaln(counts + 1.0) + xlogy(r, r / (r + mu)) + xlogy(counts, mu / (r + mu))
    )
    # E[log(lambda)] of the gamma mixing distribution, kept near log(mu)
    mixing = digamma(r) - np.log(r) + np.log(mu)
    return -np.mean(loglik) + 0.1 * np.mean((mixing - np.log(mu)) ** 2) + 0.01 * beta @ beta


def example_args():
    rng = np.random.default_rng(395)
    X = np.column_stack([np.ones(30), rng.standard_normal((30, 2))])
    mu = np.exp(X @ np.array([1.0, 0.5, -0.3]))
    counts = rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(float)
    return np.array([0.8, 0.3, -0.1]), np.array(np.log(0.6)), X, counts
