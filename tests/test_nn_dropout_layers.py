"""nn.Dropout after each of issue 22's layers (Embedding, MultiHeadAttention, LayerNorm, PReLU;
the convolutional and recurrent ones have their own tests): the masks follow each layer's output
shape, and the gradient through the masked network matches central finite differences."""

from __future__ import annotations

import numpy as np
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr
from chainrule import nn


def test_dropout_after_embedding_attention_layernorm_and_prelu_masks_and_differentiates():
    model = nn.Sequential(
        [
            nn.Embedding(10, 8),
            nn.Dropout(0.1),
            nn.MultiHeadAttention(8, 2),
            nn.Dropout(0.2),
            nn.LayerNorm(8),
            nn.PReLU(),
            nn.Dropout(0.3),
            nn.Dense(8, 2),
        ]
    )
    ids = np.random.default_rng(0).integers(0, 10, (4, 5))
    masks = model.dropout_masks(0, ids.shape)
    assert [m.shape for m in masks] == [(4, 5, 8)] * 3
    # inverted dropout: each mask is 0 or 1 / keep probability
    assert all(set(np.unique(m)) <= {0.0, 1 / keep} for m, keep in zip(masks, (0.9, 0.8, 0.7)))
    params = model.init(0)

    def loss_of_output_weights(w):
        layer = dict(params["attention1"], W_o=w)
        return np.sum(np.tanh(model.apply(dict(params, attention1=layer), ids, training=True, rng=masks)))

    gradient = cr.grad(lambda p: np.sum(np.tanh(model.apply(p, ids, training=True, rng=masks))))(params)
    expected = numerical_gradient(loss_of_output_weights, (params["attention1"]["W_o"],), 0)
    assert relative_error(gradient["attention1"]["W_o"], expected) < 1e-7
