"""Mixed-precision training with dynamic loss scaling (seed 003, 7.4 and 6.2).

The seed's recipe, PyTorch's ``autocast`` + ``GradScaler``:

    with autocast():                       # float16 forward where safe
        loss = criterion(model(inputs), targets)
    scaler.scale(loss).backward()          # multiply the loss so small gradients survive float16
    scaler.step(optimizer)                 # unscale; skip the step if a gradient overflowed
    scaler.update()                        # back off after an overflow, grow after N clean steps

``mixed_precision_step`` traces all of it into one compiled step. The master weights stay
float32; the step casts them and the floating inputs to ``compute_dtype`` (float16), so the
forward pass and, through the casts' derivatives, the backward pass run in float16; the
gradients arrive as float32, are divided by the scale and checked. A step whose gradients hold
an inf or NaN changes neither the parameters nor the optimizer state and multiplies the scale by
``backoff_factor``; after ``growth_interval`` clean steps in a row the scale grows by
``growth_factor``. ``loss_fn`` should compute its final reduction in float32 (cast the model's
output with ``.astype(np.float32)`` first), as autocast runs losses in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import chainrule.transforms.compiled as cr
from chainrule.errors import ArgumentError
from chainrule.frontends.pytree import flatten, tree_map, unflatten
from chainrule.optim.clipping import clip_by_global_norm, clip_by_value
from chainrule.optim.optimizers import Optimizer


@dataclass(frozen=True)
class DynamicLossScale:
    """GradScaler's policy: start at ``initial_scale``; on overflow multiply by ``backoff_factor``
    (and restart the count of clean steps); after ``growth_interval`` clean steps multiply by
    ``growth_factor``. Its state is ``{"scale": float32, "clean_steps": int64}``."""

    initial_scale: float = 2.0**15
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000

    def __post_init__(self):
        if not (self.initial_scale > 0 and self.growth_factor >= 1 and 0 < self.backoff_factor < 1):
            raise ArgumentError(
                "DynamicLossScale needs initial_scale > 0, growth_factor >= 1 and 0 < backoff_factor < 1, got "
                f"{self.initial_scale}, {self.growth_factor}, {self.backoff_factor}"
            )
        if self.growth_interval < 1:
            raise ArgumentError(f"DynamicLossScale needs growth_interval >= 1, got {self.growth_interval}")

    def init(self) -> dict:
        return {"scale": np.float32(self.initial_scale), "clean_steps": np.int64(0)}

    def adjust(self, state: dict, finite) -> dict:
        """The state after a step whose gradients were all finite (``finite``) or not."""
        clean = state["clean_steps"] + 1
        grows = clean >= self.growth_interval
        scale = np.where(
            finite,
            np.where(grows, state["scale"] * np.float32(self.growth_factor), state["scale"]),
            state["scale"] * np.float32(self.backoff_factor),
        )
        return {"scale": scale, "clean_steps": np.where(finite & ~grows, clean, 0 * clean)}


def mixed_precision_step(
    loss_fn: Callable,
    optimizer: Optimizer,
    *,
    loss_scale: DynamicLossScale | None = None,
    compute_dtype=np.float16,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    backend: str = "numpy",
) -> Callable:
    """``step(params, opt_state, scale_state, *args) -> (loss, params, opt_state, scale_state, finite)``.

    ``params`` are the float32 master weights; ``scale_state`` starts as ``loss_scale.init()``;
    ``loss`` is the unscaled float32 loss; ``finite`` says whether the step was applied (False:
    it overflowed and was skipped). Clipping, when asked, acts on the unscaled gradients, where
    its threshold means what it says (as PyTorch's ``scaler.unscale_`` before clipping).

        >>> import numpy as np
        >>> from chainrule import optim
        >>> loss = lambda p, x: np.mean((x @ p["w"]).astype(np.float32) ** 2)
        >>> opt, scaling = optim.sgd(0.1), optim.DynamicLossScale(initial_scale=1024.0)
        >>> step = optim.mixed_precision_step(loss, opt, loss_scale=scaling)
        >>> params = {"w": np.ones(2, np.float32)}
        >>> value, params, state, scale, finite = step(params, opt.init(params), scaling.init(), np.eye(2))
        >>> float(value), params["w"], bool(finite)
        (1.0, array([0.9, 0.9], dtype=float32), True)
    """
    policy = loss_scale if loss_scale is not None else DynamicLossScale()
    low = np.dtype(compute_dtype)

    def to_compute(leaf):
        return leaf.astype(low) if np.dtype(leaf.dtype).kind == "f" else leaf

    def scaled_loss(params, scale, *args):
        loss = loss_fn(tree_map(to_compute, params), *tree_map(to_compute, list(args)))
        return loss.astype(np.float32) * scale

    value_and_grad = cr.value_and_grad(scaled_loss, backend=backend)
    step = _unscaled_update(value_and_grad, optimizer, policy, clip_norm, clip_value)
    step.__name__ = f"{getattr(loss_fn, '__name__', 'loss')}_{optimizer.name}_mixed_precision_step"
    compiled = cr.jit(step, backend=backend)

    def mixed_precision(params, opt_state, scale_state, *args):
        # overflowing to inf is how a too-large scale shows itself here, not something to warn about
        with np.errstate(over="ignore", invalid="ignore"):
            return compiled(params, opt_state, scale_state, *args)

    mixed_precision.compiled = compiled  # type: ignore[attr-defined]
    return mixed_precision


def _unscaled_update(
    value_and_grad: Callable, optimizer: Optimizer, policy: DynamicLossScale, clip_norm, clip_value
) -> Callable:
    """The traced step: scaled loss and gradients, unscaled, checked, clipped, applied or skipped."""

    def step(params, opt_state, scale_state, *args):
        scale = scale_state["scale"]
        scaled, grads = value_and_grad(params, scale, *args)
        grads = tree_map(lambda g: g / scale, grads)
        # inf - inf is NaN: one sum sees an overflow in any leaf
        finite = np.isfinite(sum(np.sum(g) for g in flatten(grads)[0]))
        grads = tree_map(lambda g: np.where(finite, g, np.zeros_like(g)), grads)
        if clip_value is not None:
            grads = clip_by_value(grads, clip_value)
        if clip_norm is not None:
            grads, _ = clip_by_global_norm(grads, clip_norm)
        new_params, new_opt_state = optimizer.update(grads, opt_state, params)
        params = _select(finite, new_params, params)
        opt_state = _select(finite, new_opt_state, opt_state)
        return scaled / scale, params, opt_state, policy.adjust(scale_state, finite), finite

    return step


def _select(condition, chosen, otherwise):
    """``chosen`` where ``condition`` holds, else ``otherwise``, leaf by leaf, in each leaf's dtype."""
    chosen_leaves, _, treedef = flatten(chosen)
    other_leaves = flatten(otherwise)[0]
    return unflatten(
        treedef, [np.where(condition, new, old).astype(old.dtype) for new, old in zip(chosen_leaves, other_leaves)]
    )
