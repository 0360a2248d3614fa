"""Soft k-means: responsibilities are a softmax of minus the squared distances (scipy's ``cdist``)
between points and centroids at inverse temperature beta; the loss is the expected distortion
minus the entropy of the assignments over beta, plus a repulsion between centroids (``pdist``)."""

import numpy as np
from scipy.spatial.distance import cdist, pdist, squareform
from scipy.special import softmax


def loss(centroids, points):
    beta = 2.0
    d2 = cdist(points, centroids, "sqeuclidean")
    resp = softmax(-beta * d2, axis=1)
    distortion = np.sum(resp * d2) / len(points)
    entropy = -np.sum(resp * np.log(resp)) / len(points)
    # repulsion between centroids: pdist's euclidean pairs (no coincident points, so no kink at 0)
    repulsion = np.sum(np.exp(-squareform(pdist(centroids)))) - centroids.shape[0]
    return distortion - entropy / beta + 0.1 * repulsion


def example_args():
    rng = np.random.default_rng(393)
    blobs = np.array([[0.0, 0.0], [2.0, 1.0], [-1.0, 2.5]])
    points = (blobs[:, None, :] + 0.4 * rng.standard_normal((3, 7, 2))).reshape(-1, 2)
    return rng.standard_normal((3, 2)), points
