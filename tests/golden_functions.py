"""The functions whose IR tests/test_golden_ir.py pins down, and their inputs.

Their line numbers are part of the golden files (the IR cites the user's
lines), so add new functions at the end: an edit above a function moves its
lines and changes its goldens.
"""

import numpy as np

from chainrule.cli.demo import PARAMS, X, Y


def tanh_layer(W, b, x):
    return np.sum(np.tanh(x @ W + b))


def seed_network(p, X, Y):
    # seed 002, 12.7 Example 1, as chainrule/demo.py writes it (copied so demo edits leave these lines alone)
    m = Y.shape[1]
    Z1 = np.dot(p["W1"], X) + p["b1"]
    A1 = np.maximum(0, Z1)
    Z2 = np.dot(p["W2"], A1) + p["b2"]
    A2 = 1 / (1 + np.exp(-Z2))
    return -np.sum(Y * np.log(A2) + (1 - Y) * np.log(1 - A2)) / m


def bce_hand_sigmoid(w, x, y):
    z = x @ w
    p = 1 / (1 + np.exp(-z))
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def softmax_cross_entropy(W, x, y):
    z = x @ W
    shifted = z - np.max(z, axis=1, keepdims=True)
    e = np.exp(shifted)
    p = e / np.sum(e, axis=1, keepdims=True)
    return -np.mean(np.sum(y * np.log(p), axis=1))


_rng = np.random.default_rng(0)

# name -> (function, arguments, argnums): each is compiled with cr.value_and_grad
CASES = {
    "tanh_layer": (
        tanh_layer,
        (_rng.standard_normal((3, 2)), _rng.standard_normal(2), _rng.standard_normal((4, 3))),
        (0, 1),
    ),
    "seed_network": (seed_network, (PARAMS, X, Y), 0),
    "bce_hand_sigmoid": (
        bce_hand_sigmoid,
        (_rng.standard_normal((3, 1)), _rng.standard_normal((5, 3)), (_rng.random((5, 1)) < 0.5).astype(float)),
        0,
    ),
    "softmax_cross_entropy": (
        softmax_cross_entropy,
        (_rng.standard_normal((3, 4)), _rng.standard_normal((5, 3)), np.eye(4)[[0, 2, 1, 3, 2]]),
        0,
    ),
}
