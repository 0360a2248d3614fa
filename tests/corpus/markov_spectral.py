"""Markov chain design: a row-softmax transition matrix, its 6-step distribution by
``np.linalg.matrix_power``, a spectral-gap penalty from ``eigvalsh`` of the symmetrized
(reversible-form) matrix, and a ``tensordot`` of two-step flows against a cost tensor."""

import numpy as np


def loss(logits, start, cost):
    P = np.exp(logits - logits.max(axis=1, keepdims=True))
    P = P / P.sum(axis=1, keepdims=True)
    target = np.full(P.shape[0], 1.0 / P.shape[0])
    p6 = start @ np.linalg.matrix_power(P, 6)
    sym = 0.5 * (P + P.T)
    eigs = np.linalg.eigvalsh(sym)
    gap_penalty = np.sum(np.maximum(0.0, np.abs(eigs[:-1]) - 0.5) ** 2)
    flows = start[:, None, None] * P[:, :, None] * P[None, :, :]
    transport = np.tensordot(flows, cost, axes=3)
    return np.sum((p6 - target) ** 2) + gap_penalty + 0.1 * transport


def example_args():
    rng = np.random.default_rng(401)
    start = rng.dirichlet(np.ones(4))
    return rng.standard_normal((4, 4)), start, rng.uniform(size=(4, 4, 4))
