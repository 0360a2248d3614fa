"""Learning-rate schedules (seed 002, 12.6.5 and 12.18): callables ``step -> lr``.

``step`` counts updates from 0. Each schedule is written with NumPy functions
that chainrule traces, so an optimizer evaluates it inside a compiled train
step (the step count is an input there, not a constant); called with a Python
int it returns a float.

    >>> from chainrule.optim import schedules
    >>> lr = schedules.warmup_cosine(0.01, warmup_steps=20, total_steps=200)
    >>> [round(float(lr(s)), 6) for s in (0, 10, 20, 110, 200)]
    [0.0, 0.005, 0.01, 0.005, 0.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _whole(x):
    """floor(x) for x >= 0, on a Python number or a traced value (truncation is floor there)."""
    if isinstance(x, (int, float)):
        return float(math.floor(x))
    return x.astype(np.int64).astype(np.float64)


def _cosine(lr, final_lr, progress):
    return final_lr + (lr - final_lr) * 0.5 * (1 + np.cos(math.pi * progress))


@dataclass(frozen=True)
class constant:
    """The same learning rate at every step."""

    lr: float

    def __call__(self, step):
        return self.lr + 0.0 * step


@dataclass(frozen=True)
class step_decay:
    """lr * factor ** floor(step / every): halve (by default) every ``every`` steps."""

    lr: float
    every: int
    factor: float = 0.5

    def __call__(self, step):
        return self.lr * self.factor ** _whole(step / self.every)


@dataclass(frozen=True)
class exponential_decay:
    """lr * exp(-rate * step), the seed's exponential schedule."""

    lr: float
    rate: float

    def __call__(self, step):
        return self.lr * np.exp(-self.rate * step)


@dataclass(frozen=True)
class cosine_decay:
    """Cosine annealing from ``lr`` to ``final_lr`` over ``total_steps``, then ``final_lr``."""

    lr: float
    total_steps: int
    final_lr: float = 0.0

    def __call__(self, step):
        return _cosine(self.lr, self.final_lr, np.minimum(step, self.total_steps) / self.total_steps)


@dataclass(frozen=True)
class warmup_cosine:
    """Linear warm-up from 0 to ``lr`` over ``warmup_steps``, then cosine annealing to
    ``final_lr`` at ``total_steps`` (the seed's warmup + cosine)."""

    lr: float
    warmup_steps: int
    total_steps: int
    final_lr: float = 0.0

    def __post_init__(self):
        if not 0 < self.warmup_steps < self.total_steps:
            raise ValueError(
                f"warmup_cosine needs 0 < warmup_steps < total_steps, got warmup_steps="
                f"{self.warmup_steps}, total_steps={self.total_steps}"
            )

    def __call__(self, step):
        warm = self.lr * np.minimum(step, self.warmup_steps) / self.warmup_steps
        progress = (np.clip(step, self.warmup_steps, self.total_steps) - self.warmup_steps) / (
            self.total_steps - self.warmup_steps
        )
        return np.where(step < self.warmup_steps, warm, _cosine(self.lr, self.final_lr, progress))
