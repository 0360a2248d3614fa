"""Synchronous data-parallel training: the step ``chainrule.train.fit(..., client=client)`` runs.

Per mini-batch: one distributed gradient over the batch's rows (split into one chunk per
worker, ``chainrule.distributed.value_and_grad``), then clipping and the optimizer's update on
the client, as ``optim.train_step(..., fused=False)`` does in one process. With the same seed
and batches, ``fit`` gives the one-process result to rounding (the chunks' gradients are added
in a different order).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.distributed.compression import TopK
from chainrule.distributed.gradients import value_and_grad
from chainrule.errors import UnsupportedError
from chainrule.frontends.pytree import flatten
from chainrule.optim.clipping import clip_by_global_norm, clip_by_value
from chainrule.optim.optimizers import Optimizer


def data_parallel_step(
    objective: Callable[..., Any],
    optimizer: Optimizer,
    client: Any,
    *,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    transport: str | TopK | None = None,
    backend: str = "numpy",
) -> Callable[..., Any]:
    """``step(params, opt_state, state, masks, x_batch, y_batch) -> (loss, params, opt_state, state)``
    for ``objective(params, state, masks, x_batch, y_batch) -> (mean loss, new state)``, with the
    gradient computed on ``client``'s workers; ``transport`` as in ``value_and_grad`` (with
    ``TopK`` each worker's residual carries over from step to step). Model state (batch-norm
    statistics) is an UnsupportedError naming the layers that have it: batch norm normalizes with
    the whole batch's mean and variance, so each row's loss depends on every chunk's rows and
    the loss is no sum of per-chunk losses; synchronized batch norm would need the statistics
    exchanged inside the forward pass, which per-chunk gradients cannot do."""

    def loss_only(params: Any, state: Any, masks: Any, x_batch: Any, y_batch: Any) -> Any:
        return objective(params, state, masks, x_batch, y_batch)[0]

    distributed = value_and_grad(
        loss_only, 0, data_argnums=(2, 3, 4), reduction="mean", backend=backend, client=client, transport=transport
    )

    def step(params: Any, opt_state: Any, state: Any, masks: Any, x_batch: Any, y_batch: Any) -> tuple[Any, ...]:
        _refuse_state(state)
        loss, grads = distributed(params, state, masks, x_batch, y_batch)
        if clip_value is not None:
            grads = clip_by_value(grads, clip_value)
        if clip_norm is not None:
            grads, _ = clip_by_global_norm(grads, clip_norm)
        new_params, new_opt_state = optimizer.update(grads, opt_state, params)
        return loss, new_params, new_opt_state, state

    step.bytes_per_chunk = lambda: distributed.bytes_per_chunk  # type: ignore[attr-defined]
    step.release = distributed.release  # type: ignore[attr-defined]
    return step


def _refuse_state(state: Any) -> None:
    """An UnsupportedError naming the layers with state (``batchnorm1.mean``, ...), if any."""
    _, paths, _ = flatten(state, "state")
    if paths:
        raise UnsupportedError(
            f"fit(..., client=) cannot train a model with state ({', '.join(paths)}): batch norm normalizes "
            "each row with statistics of the whole batch, which no worker sees (synchronized batch norm is "
            "not implemented); use nn.LayerNorm, or train in one process"
        )
