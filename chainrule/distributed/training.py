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
    transport: str | None = None,
    backend: str = "numpy",
) -> Callable[..., Any]:
    """``step(params, opt_state, state, masks, x_batch, y_batch) -> (loss, params, opt_state, state)``
    for ``objective(params, state, masks, x_batch, y_batch) -> (mean loss, new state)``, with the
    gradient computed on ``client``'s workers. Model state (batch-norm statistics) would need the
    workers' batch statistics combined (synchronized batch norm), which this step does not do: a
    model with state is an UnsupportedError."""

    def loss_only(params: Any, state: Any, masks: Any, x_batch: Any, y_batch: Any) -> Any:
        return objective(params, state, masks, x_batch, y_batch)[0]

    distributed = value_and_grad(
        loss_only, 0, data_argnums=(2, 3, 4), reduction="mean", backend=backend, client=client, transport=transport
    )

    def step(params: Any, opt_state: Any, state: Any, masks: Any, x_batch: Any, y_batch: Any) -> tuple[Any, ...]:
        if flatten(state)[0]:
            raise UnsupportedError(
                "fit(..., client=) trains models without state: batch statistics would differ per worker "
                "(synchronized batch norm is not implemented); use LayerNorm, or train in one process"
            )
        loss, grads = distributed(params, state, masks, x_batch, y_batch)
        if clip_value is not None:
            grads = clip_by_value(grads, clip_value)
        if clip_norm is not None:
            grads, _ = clip_by_global_norm(grads, clip_norm)
        new_params, new_opt_state = optimizer.update(grads, opt_state, params)
        return loss, new_params, new_opt_state, state

    step.bytes_per_chunk = lambda: distributed.bytes_per_chunk  # type: ignore[attr-defined]
    return step
