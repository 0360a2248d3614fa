"""Pseudo-spectral viscous Burgers equation on a periodic grid: derivatives by ``np.fft.fft`` with
wavenumbers from ``np.fft.fftfreq``, the 2/3 dealiasing rule, and integrating-factor (exponential)
Euler steps; the final state is fit to a target w.r.t. the initial condition and the viscosity."""

import numpy as np

N = 16
LENGTH = 2 * np.pi
DT = 0.05


def loss(u0, viscosity, target):
    k = 2 * np.pi * np.fft.fftfreq(N, d=LENGTH / N)
    dealias = np.abs(k) < (2 / 3) * np.max(np.abs(k))
    decay = np.exp(-viscosity * k**2 * DT)
    u_hat = np.fft.fft(u0)
    for _ in range(6):
        u = np.real(np.fft.ifft(u_hat))
        nonlinear = -0.5j * k * np.fft.fft(u**2) * dealias
        u_hat = decay * (u_hat + DT * nonlinear)
    u_final = np.fft.ifft(u_hat).real
    return np.mean((u_final - target) ** 2) + 1e-3 * np.sum(np.abs(u_hat[1:4]) ** 2) / N**2


def example_args():
    rng = np.random.default_rng(43)
    x = np.arange(N) * LENGTH / N
    u0 = np.sin(x) + 0.5 * np.cos(2 * x) + 0.05 * rng.standard_normal(N)
    return u0, np.array(0.1), 0.8 * np.sin(x - 0.3)
