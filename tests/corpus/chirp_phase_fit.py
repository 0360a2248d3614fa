"""Chirp estimation from phase: a linear-FM model's phase is the running integral of its frequency
(``scipy.integrate.cumulative_trapezoid``); the complex signal's wrapped angle is unwrapped
(``np.unwrap``) and compared with a measured phase track, the misfit and the signal energy
integrated by ``scipy.integrate.simpson``."""

import numpy as np
from scipy.integrate import cumulative_trapezoid, simpson

T = np.linspace(0.0, 2.0, 64)


def loss(params, measured_phase):
    f0, rate, decay = params
    frequency = f0 + rate * T
    phase = 2 * np.pi * cumulative_trapezoid(frequency, T, initial=0)
    signal = np.exp(-decay * T) * np.exp(1j * phase)
    unwrapped = np.unwrap(np.angle(signal))
    misfit = simpson((unwrapped - measured_phase) ** 2, x=T)
    energy = simpson(np.abs(signal) ** 2, x=T)
    return misfit + 0.1 * (energy - 0.8) ** 2


def example_args():
    rng = np.random.default_rng(408)
    true_phase = 2 * np.pi * (1.0 * T + 0.5 * 0.6 * T**2)
    return np.array([0.9, 0.7, 0.3]), true_phase + 0.05 * rng.standard_normal(T.size)
