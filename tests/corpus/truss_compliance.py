"""Plane truss: member stiffnesses (areas are the parameters) assembled into the global stiffness
matrix with ``np.add.at`` at ``np.ix_`` blocks, supports removed, ``np.linalg.solve`` for the nodal
displacements; the loss is the compliance plus a material-volume penalty."""

import numpy as np

NODES = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
MEMBERS = np.array([[0, 1], [1, 2], [3, 4], [4, 5], [0, 3], [1, 4], [2, 5], [0, 4], [1, 5], [3, 1], [4, 2]])
FIXED = np.array([0, 1, 6, 7])


def loss(log_areas, load):
    areas = np.exp(log_areas)
    n_dof = 2 * len(NODES)
    K = np.zeros((n_dof, n_dof))
    for member, (i, j) in enumerate(MEMBERS):
        delta = NODES[j] - NODES[i]
        length = np.linalg.norm(delta)
        c, s = delta / length
        direction = np.array([-c, -s, c, s])
        dofs = np.array([2 * i, 2 * i + 1, 2 * j, 2 * j + 1])
        np.add.at(K, np.ix_(dofs, dofs), areas[member] / length * np.outer(direction, direction))
    free = np.setdiff1d(np.arange(n_dof), FIXED)
    u = np.linalg.solve(K[np.ix_(free, free)], load[free])
    lengths = np.linalg.norm(NODES[MEMBERS[:, 1]] - NODES[MEMBERS[:, 0]], axis=1)
    return load[free] @ u + 0.5 * np.sum(areas * lengths)


def example_args():
    rng = np.random.default_rng(394)
    load = np.zeros(12)
    load[5] = -1.0
    load[11] = -0.5
    load += 0.05 * rng.standard_normal(12)
    return 0.2 * rng.standard_normal(len(MEMBERS)), load
