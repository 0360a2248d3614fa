"""A character-level LSTM over a batch of one-hot sequences, log-likelihood of predicting each input.

Each gate multiplies [input, hidden, 1] built with np.hstack; the initial state is np.repeat-ed over
the batch; the loop iterates the time axis of a 3-D array; the log-softmax readout is
`out - logsumexp(out, axis=1, keepdims=True)`; the total accumulates in a Python float with +=.
"""

import numpy as np
from scipy.special import logsumexp

ALPHABET, HIDDEN = 5, 3


def gate_input(weights, *parts):
    stacked = np.hstack(parts + (np.ones((parts[0].shape[0], 1)),))
    return np.dot(stacked, weights)


def squash(x):
    return 0.5 * (np.tanh(x) + 1.0)


def loss(start, w_cell, w_forget, w_in, w_out, w_read, sequences):
    batch = sequences.shape[1]
    hidden = np.repeat(start, batch, axis=0)
    cell = np.zeros((batch, HIDDEN))
    total = 0.0
    for x in sequences:
        logits = gate_input(w_read, hidden)
        total += np.sum((logits - logsumexp(logits, axis=1, keepdims=True)) * x)
        candidate = np.tanh(gate_input(w_cell, x, hidden))
        cell = cell * squash(gate_input(w_forget, x, hidden)) + squash(gate_input(w_in, x, hidden)) * candidate
        hidden = squash(gate_input(w_out, x, hidden)) * np.tanh(cell)
    return -total / (sequences.shape[0] * batch)


def example_args():
    rng = np.random.default_rng(25)
    gate_shape = (ALPHABET + HIDDEN + 1, HIDDEN)
    weights = [0.5 * rng.standard_normal(gate_shape) for _ in range(4)]
    sequences = np.eye(ALPHABET)[rng.integers(0, ALPHABET, (4, 2))]
    return (
        0.1 * rng.standard_normal((1, HIDDEN)),
        *weights,
        0.5 * rng.standard_normal((HIDDEN + 1, ALPHABET)),
        sequences,
    )
