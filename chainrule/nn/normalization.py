"""Layer normalization (Ba, Kiros & Hinton 2016), the per-sample counterpart of ``BatchNorm``.

``BatchNorm`` normalizes each feature over the batch (every axis but the last), so its output
for one sample depends on the others in its batch, and inference switches to running
statistics. ``LayerNorm`` normalizes each sample over its own features (the last axes), so it
behaves the same in training and inference, keeps no state, and works with a batch of one
(seed 004: "BatchNorm: normalize using the average of my neighbors; LayerNorm: normalize using
my own features"). ``examples/norm_comparison.py`` shows both side by side.
"""

from __future__ import annotations

import numpy as np

from chainrule.errors import ShapeError
from chainrule.nn.layers import Layer, check_keys, user_line


class LayerNorm(Layer):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, mean and (biased) variance taken over the
    trailing ``normalized_shape`` axes of each sample; gamma and beta have that shape
    (PyTorch's ``nn.LayerNorm`` with ``elementwise_affine=True``).

        >>> import numpy as np
        >>> from chainrule import nn
        >>> layer = nn.LayerNorm(4)
        >>> y = layer.apply(layer.init(), np.array([[1.0, 2.0, 3.0, 4.0]]))
        >>> np.round(y, 3)
        array([[-1.342, -0.447,  0.447,  1.342]])
    """

    kind = "layernorm"

    def __init__(self, normalized_shape, *, eps: float = 1e-5, dtype=np.float64):
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
        self.normalized_shape = tuple(int(n) for n in shape)
        self.eps = eps
        self.dtype = np.dtype(dtype)

    def init(self, rng=None) -> dict:
        return {
            "gamma": np.ones(self.normalized_shape, self.dtype),
            "beta": np.zeros(self.normalized_shape, self.dtype),
        }

    def forward(self, params, x, state, training, randomness) -> tuple:
        count = len(self.normalized_shape)
        if tuple(np.shape(x)[-count:]) != self.normalized_shape or np.ndim(x) < count:
            raise ShapeError(
                f"{self!r} normalizes trailing axes of shape {self.normalized_shape}, got inputs of shape "
                f"{tuple(np.shape(x))}",
                user_line(),
            )
        check_keys(self, params, ("gamma", "beta"))
        axes = tuple(range(-count, 0))
        centered = x - np.mean(x, axis=axes, keepdims=True)
        var = np.mean(centered * centered, axis=axes, keepdims=True)
        return params["gamma"] * (centered / np.sqrt(var + self.eps)) + params["beta"], state

    def __repr__(self) -> str:
        shape = self.normalized_shape[0] if len(self.normalized_shape) == 1 else self.normalized_shape
        return f"LayerNorm({shape})"
