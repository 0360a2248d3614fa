"""Embedding: integer ids looked up in a trainable table."""

from __future__ import annotations

import numpy as np

from chainrule.errors import ArgumentError, ShapeError
from chainrule.nn.layers import Layer, RngLike, check_keys, user_line


class Embedding(Layer):
    """``table[ids]``: ids of any shape (integers in [0, num_embeddings)) become vectors of
    ``embedding_dim``, so (batch, seq) -> (batch, seq, dim). The table starts N(0, 1), as in
    PyTorch. The gradient of the table is a scatter-add: a row used twice gets both cotangents,
    rows not used get zero.

        >>> import numpy as np
        >>> from chainrule import nn
        >>> layer = nn.Embedding(10, 3)
        >>> layer.apply(layer.init(0), np.array([[1, 2], [1, 9]])).shape
        (2, 2, 3)
    """

    kind = "embedding"

    def __init__(self, num_embeddings: int, embedding_dim: int, *, dtype=np.float64):
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.dtype = np.dtype(dtype)

    def init(self, rng: RngLike = None) -> dict:
        table = np.random.default_rng(rng).standard_normal((self.num_embeddings, self.embedding_dim))
        return {"table": table.astype(self.dtype)}

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape) + (self.embedding_dim,)

    def forward(self, params, x, state, training, randomness) -> tuple:
        dtype = getattr(x, "dtype", None) or np.asarray(x).dtype
        if np.dtype(dtype).kind not in "iu":
            raise ArgumentError(f"{self!r} looks up integer ids, got {np.dtype(dtype)} inputs", user_line())
        check_keys(self, params, ("table",))
        # concrete ids are checked here (NumPy would read -1 as the last row); traced ones are inputs
        if isinstance(x, np.ndarray) and x.size and (x.min() < 0 or x.max() >= self.num_embeddings):
            raise ShapeError(
                f"{self!r} has ids 0..{self.num_embeddings - 1}, got ids from {x.min()} to {x.max()}", user_line()
            )
        return params["table"][x], state

    def __repr__(self) -> str:
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"
