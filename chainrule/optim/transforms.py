"""Optimizers wrapped into new optimizers: gradient accumulation over micro-batches and top-k
gradient compression with error feedback (seed 003, 6.4 and 7.3).

Each wrapper returns an ordinary ``Optimizer`` whose per-parameter rule calls the wrapped one's,
with the wrapper's own state as extra slots, so it runs eagerly, inside a fused
``optim.train_step`` and under ``fit`` like any other. Decisions that depend on the step count
("is this the k-th micro-batch?") are ``np.where`` selections, not Python branches, so one
compiled step serves every micro-batch.

    >>> from chainrule import optim
    >>> opt = optim.accumulate(optim.adam(0.001), 4)
    >>> opt.name, opt.slot_names
    ('adam_accumulate4', ('accumulated', 'm', 'v'))
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.errors import ArgumentError
from chainrule.optim.optimizers import Optimizer


def whole_steps(count, every: int):
    """count // every for a count >= 0, on a NumPy integer or a traced one (no traced floor_divide:
    truncating the quotient is the floor for non-negative counts)."""
    return (count / every).astype(np.int64)


def accumulate(optimizer: Optimizer, k: int) -> Optimizer:
    """Gradient accumulation (seed 003, 6.4: "simulate larger batch sizes"): each update adds the
    gradient to a buffer, and every k-th update applies ``optimizer`` to the buffer's mean and
    empties it; the updates in between leave the parameters and the wrapped state unchanged.

    With a loss that is a mean over the batch and k micro-batches of one size, k updates equal
    one update on the k-times batch. The learning rate (or schedule) is the wrapped optimizer's,
    counted in its own steps (micro-batches // k). With ``train_step(..., clip_norm=...)`` each
    micro-batch's gradient is clipped as it comes in.
    """
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ArgumentError(f"accumulate needs a whole number of micro-batches k >= 1, got {k!r}")
    k = int(k)

    def learning_rate(count):
        return optimizer.learning_rate_at(whole_steps(count, k))

    def rule(g, p, slots, lr, t):
        accumulated, *inner_slots = slots
        accumulated = accumulated + g
        applies = t % k == 0
        # off the k-th step the inner rule's result is thrown away; its step number must stay >= 1
        # all the same (Adam divides by 1 - beta ** t)
        inner_t = np.maximum(whole_steps(t, k), 1)
        new_p, new_inner = optimizer.rule(accumulated / k, p, tuple(inner_slots), lr, inner_t)
        kept_inner = tuple(np.where(applies, new, old) for new, old in zip(new_inner, inner_slots))
        return np.where(applies, new_p, p), (np.where(applies, 0.0 * accumulated, accumulated), *kept_inner)

    return Optimizer(
        f"{optimizer.name}_accumulate{k}",
        learning_rate,
        ("accumulated", *optimizer.slot_names),
        rule,
        {**optimizer.hyperparameters, "k": k},
    )


def top_k_split(corrected, ratio: float):
    """(sent, kept): ``corrected`` with all but its ceil(ratio * size) largest-magnitude elements
    set to zero, and the boolean mask of the elements kept (ties at the threshold are all kept).
    Works on NumPy arrays and on traced ones (a sort and a comparison, no data-dependent shape),
    so ``topk_compression``'s compiled rule and ``chainrule.distributed``'s top-k transport,
    which sends ``np.flatnonzero(kept)`` and those values, select the same elements.

        >>> top_k_split(np.array([0.5, -3.0, 1.0, 2.0]), 0.5)[0]
        array([ 0., -3.,  0.,  2.])
    """
    size = int(np.size(corrected))
    kept_count = max(1, math.ceil(ratio * size))
    magnitude = np.abs(corrected)
    threshold = np.sort(np.ravel(magnitude))[size - kept_count]
    kept = magnitude >= threshold
    return np.where(kept, corrected, 0.0 * corrected), kept


def topk_compression(optimizer: Optimizer, ratio: float) -> Optimizer:
    """Top-k gradient sparsification with error feedback (seed 003, 7.3: "sparsification: send
    only large gradients" with "error compensation"; Lin et al. 2018, Stich et al. 2018).

    Per parameter array, the gradient plus the residual left over from earlier steps is
    corrected; only its ceil(ratio * size) largest-magnitude elements are passed to ``optimizer``
    (what a worker would send), and the rest become the new residual, so nothing is dropped for
    good: every gradient element is eventually applied, late. Ties at the threshold are all kept.
    """
    if not 0.0 < ratio <= 1.0:
        raise ArgumentError(f"topk_compression keeps a fraction 0 < ratio <= 1 of each gradient, got {ratio!r}")

    def rule(g, p, slots, lr, t):
        residual, *inner_slots = slots
        corrected = g + residual
        sent, _ = top_k_split(corrected, ratio)
        new_p, new_inner = optimizer.rule(sent, p, tuple(inner_slots), lr, t)
        return new_p, (corrected - sent, *new_inner)

    return Optimizer(
        f"{optimizer.name}_topk",
        optimizer.learning_rate,
        ("residual", *optimizer.slot_names),
        rule,
        {**optimizer.hyperparameters, "ratio": ratio},
    )
