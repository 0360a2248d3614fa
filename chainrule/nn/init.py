"""Weight initializers: ``initializer(rng, shape, dtype=np.float64) -> array``.

``shape`` is ``(fan_in, fan_out)`` for a Dense kernel; ``rng`` is a
``np.random.Generator`` or a seed. He scales for ReLU (Var = 2 / fan_in),
Xavier/Glorot for sigmoid and tanh (Var = 2 / (fan_in + fan_out)). Seed 002
calls sqrt(1 / fan_in) "Xavier"; that is LeCun's scale, here ``lecun_normal``.

    >>> from chainrule.nn import init
    >>> float(init.he_normal(0, (200, 1000)).std().round(3))   # sqrt(2 / 200)
    0.1
"""

from __future__ import annotations

import math

import numpy as np


def _fans(shape) -> tuple:
    if len(shape) < 1:
        raise ValueError(f"an initializer needs a shape with at least one dimension, got {shape}")
    fan_in = shape[0]
    fan_out = shape[1] if len(shape) > 1 else shape[0]
    receptive = math.prod(shape[2:])
    return fan_in * receptive, fan_out * receptive


def _normal(rng, shape, std, dtype):
    return (np.random.default_rng(rng).standard_normal(shape) * std).astype(dtype)


def _uniform(rng, shape, limit, dtype):
    return np.random.default_rng(rng).uniform(-limit, limit, shape).astype(dtype)


def he_normal(rng, shape, dtype=np.float64) -> np.ndarray:
    """N(0, 2 / fan_in) (He et al. 2015), for ReLU layers."""
    return _normal(rng, shape, math.sqrt(2.0 / _fans(shape)[0]), dtype)


def he_uniform(rng, shape, dtype=np.float64) -> np.ndarray:
    """U(-sqrt(6 / fan_in), sqrt(6 / fan_in)): He's variance from a uniform distribution."""
    return _uniform(rng, shape, math.sqrt(6.0 / _fans(shape)[0]), dtype)


def xavier_normal(rng, shape, dtype=np.float64) -> np.ndarray:
    """N(0, 2 / (fan_in + fan_out)) (Glorot & Bengio 2010), for sigmoid and tanh layers."""
    fan_in, fan_out = _fans(shape)
    return _normal(rng, shape, math.sqrt(2.0 / (fan_in + fan_out)), dtype)


def xavier_uniform(rng, shape, dtype=np.float64) -> np.ndarray:
    """U(-sqrt(6 / (fan_in + fan_out)), +...): Glorot's uniform form (Keras's default)."""
    fan_in, fan_out = _fans(shape)
    return _uniform(rng, shape, math.sqrt(6.0 / (fan_in + fan_out)), dtype)


def lecun_normal(rng, shape, dtype=np.float64) -> np.ndarray:
    """N(0, 1 / fan_in): what seed 002's DeepNeuralNetwork uses for its sigmoid/tanh layers."""
    return _normal(rng, shape, math.sqrt(1.0 / _fans(shape)[0]), dtype)


def zeros(rng, shape, dtype=np.float64) -> np.ndarray:
    """All zeros (biases)."""
    return np.zeros(shape, dtype=dtype)


BY_NAME = {
    "he": he_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "xavier": xavier_normal,
    "xavier_normal": xavier_normal,
    "glorot": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "lecun": lecun_normal,
    "lecun_normal": lecun_normal,
    "zeros": zeros,
}
