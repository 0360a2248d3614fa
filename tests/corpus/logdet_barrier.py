"""Log-det barrier of an LMI plus a log barrier of linear inequalities (interior-point objective)."""

import numpy as np


def loss(x, A, c):
    n = x.size
    S = np.eye(3) * 2.0 + np.einsum("i,ijk->jk", x, A)
    _sign, logdet = np.linalg.slogdet(S)
    slack = 1.0 - x**2 / n
    return c @ x - logdet - np.sum(np.log(slack))


def example_args():
    rng = np.random.default_rng(28)
    A = rng.standard_normal((4, 3, 3))
    A = 0.2 * (A + np.transpose(A, (0, 2, 1)))
    return 0.3 * rng.standard_normal(4), A, rng.standard_normal(4)
