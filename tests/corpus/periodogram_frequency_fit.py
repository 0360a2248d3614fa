"""Frequency fit of an unevenly sampled sinusoid: a nonuniform DFT periodogram over a frequency grid
(the complex constant ``np.exp(-2j*pi*f*t)``) of model and data compared on a log scale, plus
demodulation of the data at the traced frequency (``np.exp(-2j*np.pi*freq*t)``, ``z * np.conj(z)``)."""

import numpy as np

TIMES = np.sort(np.random.default_rng(45).uniform(0.0, 10.0, 40))
GRID = np.linspace(0.05, 1.0, 12)
FD_STEP = 1e-5  # the phase 2*pi*freq*t reaches ~60 rad: a smaller step keeps the fourth-order error down


def periodogram(y):
    basis = np.exp(-2j * np.pi * GRID[:, None] * TIMES[None, :])  # 12 x 40
    transform = np.sum(y * basis, axis=1)
    return np.abs(transform) ** 2 / TIMES.size


def loss(freq, amplitude, phase, y):
    model = amplitude * np.cos(2 * np.pi * freq * TIMES + phase)
    shape = np.mean((np.log(periodogram(model) + 0.1) - np.log(periodogram(y) + 0.1)) ** 2)
    z = np.mean(y * np.exp(-2j * np.pi * freq * TIMES))
    power = np.real(z * np.conj(z))
    return shape - power + 0.01 * np.mean((model - y) ** 2)


def example_args():
    rng = np.random.default_rng(46)
    y = 1.3 * np.cos(2 * np.pi * 0.42 * TIMES + 0.7) + 0.2 * rng.standard_normal(TIMES.size)
    return np.array(0.4), np.array(1.0), np.array(0.5), y
