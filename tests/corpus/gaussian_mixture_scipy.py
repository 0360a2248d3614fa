"""Gaussian-mixture log-likelihood using scipy.special.logsumexp."""

import numpy as np
from scipy.special import logsumexp


def loss(means, log_scales, logits, data):
    d = data.shape[1]
    log_w = logits - logsumexp(logits)
    sq = np.sum((data[:, None, :] - means[None, :, :]) ** 2, axis=-1)
    comp = -0.5 * sq * np.exp(-2 * log_scales) - d * log_scales - 0.5 * d * np.log(2 * np.pi) + log_w
    return -np.mean(logsumexp(comp, axis=1))


def example_args():
    rng = np.random.default_rng(6)
    data = np.concatenate([rng.normal(-2, 0.5, (10, 2)), rng.normal(2, 1.0, (10, 2))])
    return rng.standard_normal((3, 2)), 0.1 * rng.standard_normal(3), rng.standard_normal(3), data
