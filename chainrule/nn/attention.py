"""Multi-head scaled dot-product attention (Vaswani et al. 2017)."""

from __future__ import annotations

import math

import numpy as np

from chainrule.errors import ArgumentError, ShapeError
from chainrule.nn import functional
from chainrule.nn.layers import Layer, RngLike, check_keys, user_line


class MultiHeadAttention(Layer):
    """softmax(Q K^T / sqrt(d)) V in ``num_heads`` heads of d = embed_dim / num_heads, then the
    output projection.

    ``apply(params, x)`` with x of shape (batch, seq, embed_dim) is self-attention; ``x`` may also
    be a tuple ``(query, key, value)`` (key and value of one length, query of any).
    ``causal=True`` lets position i attend only to positions <= i. Parameters: ``W_q``, ``W_k``,
    ``W_v``, ``W_o`` of shape (embed_dim, embed_dim) (row-major, ``x @ W``) and biases ``b_q`` ...
    ``b_o``; PyTorch's ``in_proj_weight`` is ``[W_q.T; W_k.T; W_v.T]``. Xavier-uniform weights and
    zero biases, as PyTorch initializes them.

        >>> import numpy as np
        >>> from chainrule import nn
        >>> attention = nn.MultiHeadAttention(8, num_heads=2)
        >>> attention.apply(attention.init(0), np.ones((3, 5, 8))).shape
        (3, 5, 8)
    """

    kind = "attention"

    def __init__(self, embed_dim: int, num_heads: int, *, causal: bool = False, dtype=np.float64):
        if embed_dim % num_heads:
            raise ArgumentError(f"MultiHeadAttention: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.causal = int(embed_dim), int(num_heads), causal
        self.dtype = np.dtype(dtype)

    def init(self, rng: RngLike = None) -> dict:
        generator = np.random.default_rng(rng)
        # PyTorch draws the packed (3E, E) input projection at once: its Xavier bound is sqrt(6 / 4E)
        input_limit = math.sqrt(6.0 / (4 * self.embed_dim))
        params = {}
        for name in ("q", "k", "v"):
            params[f"W_{name}"] = generator.uniform(-input_limit, input_limit, (self.embed_dim,) * 2)
            params[f"b_{name}"] = np.zeros(self.embed_dim)
        output_limit = 1.0 / math.sqrt(self.embed_dim)  # PyTorch's Linear default for out_proj
        params["W_o"] = generator.uniform(-output_limit, output_limit, (self.embed_dim,) * 2)
        params["b_o"] = np.zeros(self.embed_dim)
        return {name: value.astype(self.dtype) for name, value in params.items()}

    def _heads(self, x, weight, bias):
        """(batch, seq, E) -> (batch, heads, seq, E / heads) after the projection."""
        batch, length = np.shape(x)[:2]
        projected = np.reshape(x @ weight + bias, (batch, length, self.num_heads, -1))
        return np.transpose(projected, (0, 2, 1, 3))

    def forward(self, params, x, state, training, randomness) -> tuple:
        query, key, value = x if isinstance(x, (tuple, list)) else (x, x, x)
        shapes = [tuple(np.shape(part)) for part in (query, key, value)]
        if any(len(s) != 3 or s[2] != self.embed_dim for s in shapes) or shapes[1] != shapes[2]:
            raise ShapeError(
                f"{self!r} takes (batch, seq, {self.embed_dim}) query, key and value (key and value of one "
                f"shape), got {shapes}",
                user_line(),
            )
        check_keys(self, params, ("W_q", "b_q", "W_k", "b_k", "W_v", "b_v", "W_o", "b_o"))
        q = self._heads(query, params["W_q"], params["b_q"])
        k = self._heads(key, params["W_k"], params["b_k"])
        v = self._heads(value, params["W_v"], params["b_v"])
        scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(self.embed_dim // self.num_heads)
        if self.causal:
            later = np.triu(np.ones((shapes[0][1], shapes[1][1]), dtype=bool), k=1)
            scores = np.where(later, -np.inf, scores)
        attended = functional.softmax(scores, axis=-1) @ v  # (batch, heads, query seq, head dim)
        merged = np.reshape(np.transpose(attended, (0, 2, 1, 3)), (shapes[0][0], shapes[0][1], self.embed_dim))
        return merged @ params["W_o"] + params["b_o"], state

    def __repr__(self) -> str:
        return f"MultiHeadAttention({self.embed_dim}, num_heads={self.num_heads}{', causal' if self.causal else ''})"
