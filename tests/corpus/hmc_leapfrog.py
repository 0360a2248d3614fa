"""Hamiltonian Monte Carlo: 10 leapfrog steps on a banana-shaped log density (its gradient written
by hand, as an HMC kernel does), scored by the energy error and the expected squared jump, as when
tuning a mass matrix and step size by differentiating through the integrator."""

import numpy as np


def potential(q, curvature):
    x, y = q[..., 0], q[..., 1]
    return 0.5 * x**2 + 0.5 * (y - curvature * x**2) ** 2


def potential_grad(q, curvature):
    x, y = q[..., 0], q[..., 1]
    r = y - curvature * x**2
    return np.stack([x - 2.0 * curvature * x * r, r], axis=-1)


def loss(log_mass, log_step, curvature, q0, p0):
    inv_mass = np.exp(-log_mass)
    eps = np.exp(log_step)
    q, p = q0, p0
    energy0 = potential(q, curvature) + 0.5 * np.sum(p**2 * inv_mass, axis=-1)
    p = p - 0.5 * eps * potential_grad(q, curvature)
    for step in range(10):
        q = q + eps * p * inv_mass
        if step < 9:
            p = p - eps * potential_grad(q, curvature)
    p = p - 0.5 * eps * potential_grad(q, curvature)
    energy1 = potential(q, curvature) + 0.5 * np.sum(p**2 * inv_mass, axis=-1)
    accept = np.minimum(1.0, np.exp(energy0 - energy1))
    jump = np.sum((q - q0) ** 2, axis=-1)
    return -np.mean(accept * jump) + np.mean((energy1 - energy0) ** 2)


def example_args():
    rng = np.random.default_rng(391)
    return (
        np.array([0.1, -0.2]),
        np.array(np.log(0.15)),
        np.array(0.4),
        rng.standard_normal((6, 2)),
        rng.standard_normal((6, 2)),
    )
