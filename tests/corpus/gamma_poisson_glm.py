"""Count and duration model from SciPy's distributions: Poisson counts (``poisson.logpmf``) with a
log-linear rate, gamma-distributed durations (``gamma.logpdf`` with a traced shape and scale) and a
beta prior on the duration shape's logistic transform (``beta.logpdf``)."""

import numpy as np
from scipy import stats

_RNG = np.random.default_rng(399)
X = np.column_stack([np.ones(25), _RNG.standard_normal(25)])
_RATE = np.exp(X @ np.array([0.5, 0.3]))
COUNTS = _RNG.poisson(_RATE).astype(float)  # data, not a parameter: a pmf has no derivative in k


def loss(beta, log_shape, durations):
    rate = np.exp(X @ beta)
    shape = np.exp(log_shape)
    count_ll = stats.poisson.logpmf(COUNTS, rate)
    duration_ll = stats.gamma.logpdf(durations, shape, scale=1.0 / rate)
    prior = stats.beta.logpdf(1.0 / (1.0 + np.exp(-log_shape)), 2.0, 2.0)
    return -np.mean(count_ll) - np.mean(duration_ll) - prior / 25


def example_args():
    rng = np.random.default_rng(400)
    return np.array([0.4, 0.2]), np.array(0.5), rng.gamma(2.0, 1.0 / _RATE)
