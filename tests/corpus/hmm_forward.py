"""Hidden-Markov-model log-likelihood of several symbol sequences by the forward recursion.

Log-space parameters; the forward variable moves with logsumexp over previous states and picks the
emission column of each observed symbol (a NumPy integer from iterating the sequence). The total
over sequences is Python's sum over map(functools.partial(...)).
"""

from functools import partial

import numpy as np
from scipy.special import logsumexp

SEQUENCES = [np.array([0, 2, 1, 1, 3]), np.array([3, 3, 0, 2]), np.array([1, 0, 2])]


def sequence_log_likelihood(params, symbols):
    log_start, log_transition, log_emission = params
    forward = log_start + log_emission[:, symbols[0]]
    for symbol in symbols[1:]:
        forward = logsumexp(forward[:, None] + log_transition, axis=0) + log_emission[:, symbol]
    return logsumexp(forward)


def loss(log_start, log_transition, log_emission):
    params = (log_start, log_transition, log_emission)
    return -sum(map(partial(sequence_log_likelihood, params), SEQUENCES))


def example_args():
    rng = np.random.default_rng(23)

    def log_rows(shape):
        weights = rng.uniform(0.2, 1.0, shape)
        return np.log(weights / weights.sum(-1, keepdims=True))

    return log_rows(3), log_rows((3, 3)), log_rows((3, 4))
