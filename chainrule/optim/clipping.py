"""Gradient clipping over pytrees, eagerly or inside a traced train step."""

from __future__ import annotations

import numpy as np

from chainrule.frontends.pytree import flatten, tree_map, unflatten


def clip_by_value(grads, limit: float):
    """Every gradient element clamped to [-limit, limit]."""
    if limit <= 0:
        raise ValueError(f"clip_by_value needs a positive limit, got {limit}")
    return tree_map(lambda g: np.clip(g, -limit, limit), grads)


def global_norm(tree):
    """sqrt of the sum of squares of every element of every leaf."""
    leaves = flatten(tree)[0]
    return np.sqrt(sum(np.sum(leaf * leaf) for leaf in leaves))


def clip_by_global_norm(grads, max_norm: float) -> tuple:
    """``(clipped, norm)``: the gradients scaled by max_norm / norm when their global norm exceeds
    ``max_norm`` (all leaves by the same factor, so the direction is kept), and the norm before
    clipping, as ``tf.clip_by_global_norm`` returns them."""
    if max_norm <= 0:
        raise ValueError(f"clip_by_global_norm needs a positive max_norm, got {max_norm}")
    leaves, _, treedef = flatten(grads)
    norm = global_norm(leaves)
    scale = max_norm / np.maximum(norm, max_norm)
    return unflatten(treedef, [g * scale.astype(g.dtype) if hasattr(g, "dtype") else g * scale for g in leaves]), norm
