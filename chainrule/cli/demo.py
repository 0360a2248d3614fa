"""``chainrule demo``: seed 002's worked example (12.7, Example 1), differentiated by chainrule.

A 4 -> 3 (ReLU) -> 1 (sigmoid) network on one example with binary
cross-entropy, written the way the seed writes its forward pass. chainrule
traces it, prints the IR and the backward code it generated, and sets the
gradients beside the numbers the seed computes by hand.
"""

from __future__ import annotations

import numpy as np

X = np.array([[1.0], [0.5], [-1.0], [2.0]])
Y = np.array([[1.0]])
PARAMS = {
    "W1": np.array([[0.2, -0.1, 0.4, 0.1], [0.3, 0.2, -0.3, 0.2], [-0.1, 0.5, 0.1, -0.2]]),
    "b1": np.array([[0.1], [-0.1], [0.0]]),
    "W2": np.array([[0.5, -0.3, 0.8]]),
    "b2": np.array([[0.1]]),
}

# The seed's hand-computed results (12.7, Example 1, steps B1-B8), to 4 decimals.
SEED_GRADIENTS = {
    "W2": np.array([[-0.0272, -0.5436, 0.0000]]),
    "b2": np.array([[-0.5436]]),
    "W1": np.array(
        [[-0.2718, -0.1359, 0.2718, -0.5436], [0.1631, 0.0816, -0.1631, 0.3262], [0.0000, 0.0000, 0.0000, 0.0000]]
    ),
    "b1": np.array([[-0.2718], [0.1631], [0.0000]]),
}


def loss(p, X, Y):
    m = Y.shape[1]
    Z1 = np.dot(p["W1"], X) + p["b1"]
    A1 = np.maximum(0, Z1)
    Z2 = np.dot(p["W2"], A1) + p["b2"]
    A2 = 1 / (1 + np.exp(-Z2))
    return -np.sum(Y * np.log(A2) + (1 - Y) * np.log(1 - A2)) / m


def run(out=print) -> None:
    import inspect

    import chainrule as cr

    out("chainrule demo: seed 002, 12.7 Example 1 (4 -> 3 ReLU -> 1 sigmoid, binary cross-entropy)\n")
    out("The model, as the seed writes it:\n")
    out(inspect.getsource(loss))
    gradient = cr.value_and_grad(loss)
    out("Traced IR:\n")
    out(gradient.ir(PARAMS, X, Y, stage="traced") + "\n")
    out("Forward and backward code chainrule generated (NumPy backend):\n")
    out(gradient.source(PARAMS, X, Y))
    value, grads = gradient(PARAMS, X, Y)
    out(
        f"loss = {float(value):.6f}   (seed: 0.7847, computed there from A2 rounded to 0.4564; "
        f"-log(sigmoid(-0.175)) = {-np.log(1 / (1 + np.exp(0.175))):.6f})\n"
    )
    out(f"{'gradient':<10}{'chainrule':>12}{'seed':>10}{'|diff|':>10}")
    for name in ("W2", "b2", "W1", "b1"):
        for index in np.ndindex(grads[name].shape):
            label = f"d{name}[{','.join(map(str, index))}]"
            ours, seed = grads[name][index], SEED_GRADIENTS[name][index]
            out(f"{label:<10}{ours:>12.6f}{seed:>10.4f}{abs(ours - seed):>10.1e}")
    worst = max(float(np.max(np.abs(grads[k] - SEED_GRADIENTS[k]))) for k in grads)
    out(
        f"\nlargest difference from the seed's 4-decimal numbers: {worst:.1e} "
        f"({'agrees' if worst < 6e-5 else 'DISAGREES'} to the printed precision)"
    )
