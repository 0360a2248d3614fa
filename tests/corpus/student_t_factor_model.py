"""A linear factor model with Student-t observation noise, fit jointly over loadings, factors and scale.

One flat parameter vector is cut into a loadings matrix, per-sample factors and a log noise scale
(np.reshape of slices); the likelihood is scipy.stats.t.logpdf with array loc and a traced scale.
"""

import numpy as np
from scipy.stats import t as student_t

OBSERVED, LATENT, SAMPLES = 4, 2, 6


def loss(flat, observations):
    n_loadings = OBSERVED * LATENT
    loadings = np.reshape(flat[:n_loadings], (OBSERVED, LATENT))
    factors = np.reshape(flat[n_loadings : n_loadings + LATENT * SAMPLES], (LATENT, SAMPLES))
    scale = np.exp(flat[-1])
    predicted = np.dot(loadings, factors).T
    return -np.sum(student_t.logpdf(predicted, 3.5, observations, scale)) / SAMPLES


def example_args():
    rng = np.random.default_rng(24)
    flat = rng.standard_normal(OBSERVED * LATENT + LATENT * SAMPLES + 1)
    return flat, rng.standard_normal((SAMPLES, OBSERVED))
