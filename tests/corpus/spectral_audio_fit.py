"""Spectral-loss synthesis fit: two Hann-windowed frames of a sum of damped sinusoids, scored by
the squared difference of log power spectra (``np.fft.rfft`` along the last axis, ``|X|**2 + eps``
inside the log, as in audio losses), plus a small waveform term."""

import numpy as np

RATE = 32.0
FRAME = 32


def synthesize(amplitudes, frequencies, decay):
    t = np.arange(2 * FRAME) / RATE
    partials = amplitudes[:, None] * np.sin(2 * np.pi * frequencies[:, None] * t) * np.exp(-decay * t)
    return np.sum(partials, axis=0)


def log_power(frames):
    spectrum = np.fft.rfft(frames * np.hanning(FRAME), axis=-1)
    return np.log(np.abs(spectrum) ** 2 + 1e-2)


def loss(amplitudes, frequencies, decay, target):
    frames = synthesize(amplitudes, frequencies, decay).reshape(2, FRAME)
    spectral = np.mean((log_power(frames) - log_power(target.reshape(2, FRAME))) ** 2)
    return spectral + 0.1 * np.mean((frames.ravel() - target) ** 2)


def example_args():
    rng = np.random.default_rng(41)
    target = synthesize(np.array([1.0, 0.5, 0.25]), np.array([3.0, 7.5, 11.0]), np.array(0.4))
    target = target + 0.05 * rng.standard_normal(2 * FRAME)
    return np.array([0.8, 0.6, 0.3]), np.array([3.2, 7.3, 11.2]), np.array(0.3), target
