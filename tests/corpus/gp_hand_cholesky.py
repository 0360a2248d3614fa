"""Gaussian-process evidence through a Cholesky factor written by hand: Python loops over lists of
traced scalars, about n**3 / 6 nodes (issue 24's program; tests/test_llvm_compile_work.py and
benchmarks/compile_scaling.py load ``negative_log_marginal`` from here for its compile cost)."""

import numpy as np

SIZE = 6


def observations(n):
    """n sorted inputs in [-3, 3] and noisy sines at them, seeded."""
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-3.0, 3.0, n))
    return x, np.sin(x) + 0.1 * rng.standard_normal(n)


def loss(log_parameters, x, y):
    n = x.shape[0]
    amplitude, length, noise = np.exp(log_parameters[0]), np.exp(log_parameters[1]), np.exp(log_parameters[2])
    kernel = amplitude * np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / length**2) + noise * np.eye(n)
    factor = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            s = kernel[i, j]
            for k in range(j):
                s = s - factor[i][k] * factor[j][k]
            factor[i][j] = np.sqrt(s) if i == j else s / factor[j][j]
    z = [0.0] * n
    for i in range(n):
        s = y[i]
        for k in range(i):
            s = s - factor[i][k] * z[k]
        z[i] = s / factor[i][i]
    return 0.5 * sum(zi * zi for zi in z) + sum(np.log(factor[i][i]) for i in range(n))


def negative_log_marginal(n):
    """``loss`` of the hyper-parameters alone, the data of size n its constants."""
    x, y = observations(n)
    return lambda log_parameters: loss(log_parameters, x, y)


def example_args():
    return (np.array([0.1, -0.2, -2.0]), *observations(SIZE))
