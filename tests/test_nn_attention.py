"""nn.MultiHeadAttention: output against attention written head by head with explicit loops and
against PyTorch's nn.MultiheadAttention (copied weights); gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from nn_layer_checks import check_layer_gradients, torch_tensor

from chainrule import nn
from chainrule.errors import ArgumentError, ShapeError


def attention_by_loops(p, query, key, value, heads, causal):
    """Each sample, head and query position separately, softmax written out."""
    embed = query.shape[2]
    size = embed // heads
    q, k, v = query @ p["W_q"] + p["b_q"], key @ p["W_k"] + p["b_k"], value @ p["W_v"] + p["b_v"]
    out = np.zeros_like(q)
    for b in range(q.shape[0]):
        for h in range(heads):
            cols = slice(h * size, (h + 1) * size)
            for i in range(q.shape[1]):
                visible = range(i + 1) if causal else range(k.shape[1])
                scores = np.array([q[b, i, cols] @ k[b, j, cols] / np.sqrt(size) for j in visible])
                weights = np.exp(scores - scores.max())
                weights /= weights.sum()
                out[b, i, cols] = sum(w * v[b, j, cols] for w, j in zip(weights, visible))
    return out @ p["W_o"] + p["b_o"]


def _params(layer, seed):
    params = layer.init(seed)
    rng = np.random.default_rng(seed + 1)
    return {
        name: value + (0.1 * rng.standard_normal(value.shape) if name.startswith("b") else 0)
        for name, value in params.items()
    }


@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_matches_loops_and_finite_differences(causal):
    layer = nn.MultiHeadAttention(6, 2, causal=causal)
    params = _params(layer, 0)
    x = np.random.default_rng(5).standard_normal((2, 4, 6))
    y = check_layer_gradients(layer, params, x)
    np.testing.assert_allclose(y, attention_by_loops(params, x, x, x, 2, causal), rtol=1e-12, atol=1e-13)


def test_cross_attention_takes_query_key_value():
    layer = nn.MultiHeadAttention(4, 2)
    params = _params(layer, 1)
    rng = np.random.default_rng(6)
    query, key, value = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 4))
    y = layer.apply(params, (query, key, value))
    np.testing.assert_allclose(y, attention_by_loops(params, query, key, value, 2, False), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_pytorch_with_copied_weights(causal):
    torch = pytest.importorskip("torch")
    layer = nn.MultiHeadAttention(8, 4, causal=causal)
    params = _params(layer, 2)
    module = torch.nn.MultiheadAttention(8, 4, batch_first=True).double()
    with torch.no_grad():
        module.in_proj_weight.copy_(torch_tensor(np.concatenate([params["W_q"].T, params["W_k"].T, params["W_v"].T])))
        module.in_proj_bias.copy_(torch_tensor(np.concatenate([params["b_q"], params["b_k"], params["b_v"]])))
        module.out_proj.weight.copy_(torch_tensor(params["W_o"].T))
        module.out_proj.bias.copy_(torch_tensor(params["b_o"]))
    x = np.random.default_rng(7).standard_normal((3, 5, 8))
    mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1) if causal else None
    expected = module(torch_tensor(x), torch_tensor(x), torch_tensor(x), attn_mask=mask, need_weights=False)[0]
    np.testing.assert_allclose(layer.apply(params, x), expected.detach().numpy(), rtol=1e-12, atol=1e-13)


def test_attention_rejects_bad_shapes():
    with pytest.raises(ArgumentError, match="not divisible"):
        nn.MultiHeadAttention(6, 4)
    layer = nn.MultiHeadAttention(4, 2)
    with pytest.raises(ShapeError, match=r"\(batch, seq, 4\)"):
        layer.apply(layer.init(0), np.zeros((2, 3, 5)))
