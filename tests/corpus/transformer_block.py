"""A pre-norm transformer block: multi-head causal self-attention and an erf-GELU feed-forward,
each behind a layer norm (mean and variance with keepdims), scored by next-token regression."""

import numpy as np
from scipy.special import erf


def layer_norm(x, gain, bias, eps=1e-5):
    mu = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return gain * (x - mu) / np.sqrt(var + eps) + bias


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def attention(x, Wqkv, Wo, heads):
    t, d = x.shape
    q, k, v = np.split(x @ Wqkv, 3, axis=-1)
    q, k, v = (a.reshape(t, heads, d // heads).transpose(1, 0, 2) for a in (q, k, v))
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(d // heads)
    mask = np.triu(np.ones((t, t), dtype=bool), k=1)
    scores = np.where(mask, -1e9, scores)
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=-1, keepdims=True)
    out = (weights @ v).transpose(1, 0, 2).reshape(t, d)
    return out @ Wo


def loss(Wqkv, Wo, W1, W2, ln, x):
    h = x + attention(layer_norm(x, ln[0], ln[1]), Wqkv, Wo, heads=2)
    h = h + gelu(layer_norm(h, ln[2], ln[3]) @ W1) @ W2
    return np.mean((h[:-1] - x[1:]) ** 2)


def example_args():
    rng = np.random.default_rng(392)
    d, t = 4, 6
    ln = np.concatenate([1 + 0.1 * rng.standard_normal((1, d)), 0.1 * rng.standard_normal((1, d))] * 2)
    return (
        0.4 * rng.standard_normal((d, 3 * d)),
        0.4 * rng.standard_normal((d, d)),
        0.4 * rng.standard_normal((d, 2 * d)),
        0.4 * rng.standard_normal((2 * d, d)),
        ln,
        rng.standard_normal((t, d)),
    )
