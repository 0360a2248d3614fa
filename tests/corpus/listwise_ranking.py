"""Listwise learning to rank: ListMLE (the Plackett-Luce likelihood of the true order, a reversed
log-cumsum-exp over scores gathered by ``argsort`` of the relevance) plus a pairwise hinge on the
top-k of the predicted order (``np.sort``, ``np.take_along_axis``)."""

import numpy as np


def loss(w, features, relevance):
    scores = features @ w  # (queries, items)
    order = np.argsort(-relevance, axis=1)
    ranked = np.take_along_axis(scores, order, axis=1)
    shifted = ranked - ranked.max(axis=1, keepdims=True)
    tail_lse = np.log(np.cumsum(np.exp(shifted[:, ::-1]), axis=1)[:, ::-1])
    list_mle = np.sum(tail_lse - shifted, axis=1)
    predicted = np.argsort(scores, axis=1)[:, ::-1][:, :3]
    top_rel = np.take_along_axis(relevance, predicted, axis=1)
    top_scores = np.sort(scores, axis=1)[:, ::-1][:, :3]
    gains = (2.0**top_rel - 1.0) / np.log2(np.arange(2, 5))
    margins = -np.diff(top_scores, axis=1)  # each of the top 3 over the next one
    hinge = np.maximum(0.0, 1.0 - margins) * gains[:, 1:]
    return np.mean(list_mle) + 0.1 * np.mean(hinge)


def example_args():
    rng = np.random.default_rng(396)
    features = rng.standard_normal((4, 8, 5))
    relevance = rng.integers(0, 4, size=(4, 8)).astype(float) + 0.01 * np.arange(8)
    return 0.3 * rng.standard_normal(5), features, relevance
