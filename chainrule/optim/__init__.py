"""Optimizers, learning-rate schedules, gradient clipping, a compiled train step, optimizer
transforms (gradient accumulation, top-k compression) and mixed-precision training.

Optimizers are ``init(params) -> state`` and ``update(grads, state, params) ->
(new_params, new_state)`` over pytrees; schedules are callables ``step -> lr``
(pass one as ``learning_rate``).
"""

from chainrule.optim import schedules
from chainrule.optim.clipping import clip_by_global_norm, clip_by_value, global_norm
from chainrule.optim.mixed_precision import DynamicLossScale, mixed_precision_step
from chainrule.optim.optimizers import Optimizer, adagrad, adam, adamw, momentum, nesterov, rmsprop, sgd
from chainrule.optim.schedules import constant, cosine_decay, exponential_decay, step_decay, warmup_cosine
from chainrule.optim.train_step import train_step
from chainrule.optim.transforms import accumulate, topk_compression

__all__ = [
    "DynamicLossScale",
    "Optimizer",
    "accumulate",
    "adagrad",
    "adam",
    "adamw",
    "clip_by_global_norm",
    "clip_by_value",
    "constant",
    "cosine_decay",
    "exponential_decay",
    "global_norm",
    "mixed_precision_step",
    "momentum",
    "nesterov",
    "rmsprop",
    "schedules",
    "sgd",
    "step_decay",
    "topk_compression",
    "train_step",
    "warmup_cosine",
]
