"""A training step: loss, gradients, clipping and the optimizer update.

``train_step(loss_fn, optimizer)`` traces all of it into one program that
chainrule compiles: the forward pass, the backward pass and the update
arithmetic of every parameter are one graph, so the compiler fuses the
update's elementwise chain (for Adam: the moments, bias corrections, square
root and division) into the backward code. ``fused=False`` gives the usual
loop instead: a compiled gradient, then the update run eagerly with NumPy.
"""

from __future__ import annotations

from collections.abc import Callable

import chainrule.transforms.compiled as cr
from chainrule.optim.clipping import clip_by_global_norm, clip_by_value
from chainrule.optim.optimizers import Optimizer


def train_step(
    loss_fn: Callable,
    optimizer: Optimizer,
    *,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    has_aux: bool = False,
    fused: bool = True,
    backend: str = "numpy",
) -> Callable:
    """``step(params, opt_state, *args) -> (loss, new_params, new_opt_state)``.

    ``loss_fn(params, *args)`` returns the scalar loss, or ``(loss, aux)`` with
    ``has_aux=True`` (then the step returns ``aux`` fourth: a model's new
    batch-norm statistics, say). Gradients are clipped by value, then by global
    norm, when asked. The step is pure: nothing passed in is modified. A
    learning-rate schedule runs traced in the fused step, so a schedule of
    your own must be NumPy code (``np.where``, not ``if``), or use ``fused=False``.
    ``backend`` compiles the step (or, unfused, the gradient) with "numpy" or "llvm".

        >>> import numpy as np
        >>> from chainrule import optim
        >>> loss = lambda p, x: np.sum((x @ p["w"] - 1.0) ** 2)
        >>> opt = optim.sgd(0.1)
        >>> step = optim.train_step(loss, opt)
        >>> params, state = {"w": np.zeros(2)}, opt.init({"w": np.zeros(2)})
        >>> value, params, state = step(params, state, np.eye(2))
        >>> float(value), params["w"]
        (2.0, array([0.2, 0.2]))
    """
    objective = _loss_only(loss_fn) if has_aux else loss_fn
    value_and_grad = cr.value_and_grad(objective, backend=backend)
    apply_update = _update(optimizer, clip_norm, clip_value)

    if fused:

        def fused_step(params, opt_state, *args):
            loss, grads = value_and_grad(params, *args)
            result = apply_update(params, opt_state, loss, grads)
            if has_aux:
                # Traced a second time for aux: hash-consing merges this forward pass with the one
                # inside the gradient, so the compiled step computes it once.
                result += (loss_fn(params, *args)[1],)
            return result

        fused_step.__name__ = f"{getattr(loss_fn, '__name__', 'loss')}_{optimizer.name}_step"
        return cr.jit(fused_step, backend=backend)

    auxiliary = cr.jit(lambda params, *args: loss_fn(params, *args)[1], backend=backend) if has_aux else None

    def unfused_step(params, opt_state, *args):
        loss, grads = value_and_grad(params, *args)
        result = apply_update(params, opt_state, loss, grads)
        return result + (auxiliary(params, *args),) if has_aux else result

    return unfused_step


def _loss_only(loss_fn: Callable) -> Callable:
    def objective(params, *args):
        return loss_fn(params, *args)[0]

    return objective


def _update(optimizer: Optimizer, clip_norm: float | None, clip_value: float | None) -> Callable:
    """``apply_update(params, opt_state, loss, grads) -> (loss, new_params, new_opt_state)``."""

    def apply_update(params, opt_state, loss, grads):
        if clip_value is not None:
            grads = clip_by_value(grads, clip_value)
        if clip_norm is not None:
            grads, _ = clip_by_global_norm(grads, clip_norm)
        new_params, new_state = optimizer.update(grads, opt_state, params)
        return loss, new_params, new_state

    return apply_update
