"""Neural ODE: a tanh-MLP vector field integrated by classical RK4 over 12 steps; the trajectory
(``np.stack`` of the states) is fit to observations with a smoothness penalty on the velocities."""

import numpy as np


def vector_field(state, W1, b1, W2):
    return np.tanh(state @ W1 + b1) @ W2


def loss(W1, b1, W2, y0, observed):
    dt = 0.1
    state = y0
    trajectory = [state]
    for _ in range(observed.shape[0] - 1):
        k1 = vector_field(state, W1, b1, W2)
        k2 = vector_field(state + 0.5 * dt * k1, W1, b1, W2)
        k3 = vector_field(state + 0.5 * dt * k2, W1, b1, W2)
        k4 = vector_field(state + dt * k3, W1, b1, W2)
        state = state + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        trajectory.append(state)
    path = np.stack(trajectory, axis=0)
    velocity = np.gradient(path, dt, axis=0)
    return np.mean((path - observed) ** 2) + 1e-3 * np.mean(np.square(velocity))


def example_args():
    rng = np.random.default_rng(39)
    t = np.linspace(0, 1.2, 13)
    observed = np.stack([np.cos(2 * t), np.sin(2 * t)], axis=1) * np.exp(-0.3 * t)[:, None]
    return (
        0.5 * rng.standard_normal((2, 8)),
        0.1 * rng.standard_normal(8),
        0.5 * rng.standard_normal((8, 2)),
        np.array([1.0, 0.0]) + 0.05 * rng.standard_normal(2),
        observed,
    )
