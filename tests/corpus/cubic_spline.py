"""Natural cubic spline through knots (tridiagonal system via np.linalg.solve), roughness penalty."""

import numpy as np


def loss(y, x_eval_weights):
    n = y.size
    h = 1.0
    # natural spline second derivatives M: M[0] = M[-1] = 0, tridiagonal system inside
    main = 4.0 * np.eye(n - 2)
    off = np.eye(n - 2, k=1) + np.eye(n - 2, k=-1)
    rhs = 6.0 / h**2 * (y[2:] - 2 * y[1:-1] + y[:-2])
    M_inner = np.linalg.solve(main + off, rhs)
    M = np.concatenate([np.zeros(1), M_inner, np.zeros(1)])
    # spline values at interval midpoints
    mid = 0.5 * (y[:-1] + y[1:]) - h**2 / 16.0 * (M[:-1] + M[1:])
    roughness = h / 3.0 * np.sum(M[:-1] ** 2 + M[:-1] * M[1:] + M[1:] ** 2)
    return x_eval_weights @ mid + 0.01 * roughness


def example_args():
    rng = np.random.default_rng(31)
    return np.sin(np.linspace(0, 3, 8)) + 0.1 * rng.standard_normal(8), rng.uniform(0.5, 1.5, 7)
