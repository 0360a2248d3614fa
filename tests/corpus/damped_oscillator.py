"""A damped, driven oscillator integrated by explicit Euler in a Python loop; trajectory misfit."""

import numpy as np


def loss(params, state0):
    k, c = params
    dt = 0.05
    x, v = state0
    total = 0.0
    for step in range(30):
        a = -k * x - c * v + 0.5 * np.sin(step * dt)
        x, v = x + dt * v, v + dt * a
        total = total + (x - np.cos(step * dt)) ** 2
    return total * dt


def example_args():
    return np.array([4.0, 0.3]), np.array([1.0, 0.0])
