"""Mesh fairing: the vertices of a 6x6 grid mesh move to minimize the bi-Laplacian energy
``|L V|^2`` of a sparse graph Laplacian (``scipy.sparse``), held near noisy anchor positions, plus
the Dirichlet energy ``tr(V^T L V)`` of a displacement field over the same mesh."""

import numpy as np
import scipy.sparse as sparse

SIDE = 6


def grid_laplacian(side):
    ids = np.arange(side * side).reshape(side, side)
    edges = np.concatenate(
        [np.stack([ids[:, :-1].ravel(), ids[:, 1:].ravel()], 1), np.stack([ids[:-1].ravel(), ids[1:].ravel()], 1)]
    )
    adjacency = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(side * side,) * 2)
    adjacency = (adjacency + adjacency.T).tocsr()
    degree = sparse.diags(np.asarray(adjacency.sum(axis=1)).ravel())
    return (degree - adjacency).tocsr()


LAPLACIAN = grid_laplacian(SIDE)


def loss(vertices, displacement, anchors):
    curvature = LAPLACIAN @ vertices  # (n, 2): the umbrella operator at every vertex
    fairness = np.sum(curvature**2)
    fidelity = np.sum((vertices - anchors) ** 2)
    dirichlet = np.trace(displacement.T @ (LAPLACIAN @ displacement))
    boundary = np.sum((displacement.T @ LAPLACIAN[:SIDE].T) ** 2)  # sparse on the right: x @ A
    return fairness + 0.5 * fidelity + 0.1 * dirichlet + 0.01 * boundary


def example_args():
    rng = np.random.default_rng(404)
    grid = np.stack(np.meshgrid(np.linspace(0, 1, SIDE), np.linspace(0, 1, SIDE)), -1).reshape(-1, 2)
    anchors = grid + 0.03 * rng.standard_normal(grid.shape)
    return anchors + 0.05 * rng.standard_normal(grid.shape), 0.1 * rng.standard_normal((SIDE * SIDE, 3)), anchors
