"""Optimizers, learning-rate schedules, gradient clipping and a compiled train step.

Optimizers are ``init(params) -> state`` and ``update(grads, state, params) ->
(new_params, new_state)`` over pytrees; schedules are callables ``step -> lr``
(pass one as ``learning_rate``).
"""

from chainrule.optim import schedules
from chainrule.optim.clipping import clip_by_global_norm, clip_by_value, global_norm
from chainrule.optim.optimizers import Optimizer, adagrad, adam, adamw, momentum, nesterov, rmsprop, sgd
from chainrule.optim.schedules import constant, cosine_decay, exponential_decay, step_decay, warmup_cosine
from chainrule.optim.train_step import train_step

__all__ = [
    "Optimizer",
    "adagrad",
    "adam",
    "adamw",
    "clip_by_global_norm",
    "clip_by_value",
    "constant",
    "cosine_decay",
    "exponential_decay",
    "global_norm",
    "momentum",
    "nesterov",
    "rmsprop",
    "schedules",
    "sgd",
    "step_decay",
    "train_step",
    "warmup_cosine",
]
