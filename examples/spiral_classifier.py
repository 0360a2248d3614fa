"""Seed 002's spiral classifier (12.10.1), trained with gradients chainrule derives.

The forward pass and cost are the seed's, written with plain NumPy. The seed's
hand-written backward pass is replaced by ``cr.value_and_grad``; the Adam
update is the seed's. Run it:

    python examples/spiral_classifier.py            # prints the cost and accuracy
    python examples/spiral_classifier.py --plot     # also saves spiral.png (needs matplotlib)
"""

from __future__ import annotations

import sys
import time

import numpy as np

import chainrule as cr


def spiral_data(points_per_class=200, seed=1):
    """The seed's two interleaved spirals: X is (2, 400), Y is (1, 400)."""
    np.random.seed(seed)
    X = np.zeros((points_per_class * 2, 2))
    Y = np.zeros((points_per_class * 2, 1))
    for j in range(2):
        ix = range(points_per_class * j, points_per_class * (j + 1))
        r = np.linspace(0.0, 1, points_per_class)
        t = np.linspace(j * 4, (j + 1) * 4, points_per_class) + np.random.randn(points_per_class) * 0.2
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        Y[ix] = j
    return X.T, Y.T


def init_params(layer_dims, seed=42):
    """He initialization, as the seed does for ReLU layers (Xavier for the sigmoid output)."""
    rng = np.random.default_rng(seed)
    params = {}
    for l in range(1, len(layer_dims)):
        scale = np.sqrt((2.0 if l < len(layer_dims) - 1 else 1.0) / layer_dims[l - 1])
        params[f"W{l}"] = rng.standard_normal((layer_dims[l], layer_dims[l - 1])) * scale
        params[f"b{l}"] = np.zeros((layer_dims[l], 1))
    return params


def forward(params, X):
    L = len(params) // 2
    A = X
    for l in range(1, L + 1):
        Z = np.dot(params[f"W{l}"], A) + params[f"b{l}"]
        A = np.maximum(0, Z) if l < L else 1.0 / (1.0 + np.exp(-Z))
    return A


def cost(params, X, Y):
    m = Y.shape[1]
    AL = forward(params, X)
    return -(1 / m) * np.sum(Y * np.log(AL + 1e-8) + (1 - Y) * np.log(1 - AL + 1e-8))


def train(X, Y, layer_dims=(2, 16, 8, 1), epochs=2000, lr=0.01, batch_size=64, seed=0):
    params = init_params(list(layer_dims))
    step = cr.value_and_grad(cost)
    m_state = {k: np.zeros_like(v) for k, v in params.items()}
    v_state = {k: np.zeros_like(v) for k, v in params.items()}
    rng = np.random.default_rng(seed)
    t = 0
    history = []
    for epoch in range(epochs):
        order = rng.permutation(X.shape[1])
        epoch_cost = 0.0
        for start in range(0, X.shape[1], batch_size):
            batch = order[start:start + batch_size]
            value, grads = step(params, X[:, batch], Y[:, batch])
            epoch_cost += float(value) * len(batch) / X.shape[1]
            t += 1
            for k in params:  # Adam with bias correction, as in the seed
                m_state[k] = 0.9 * m_state[k] + 0.1 * grads[k]
                v_state[k] = 0.999 * v_state[k] + 0.001 * grads[k] ** 2
                m_hat = m_state[k] / (1 - 0.9 ** t)
                v_hat = v_state[k] / (1 - 0.999 ** t)
                params[k] -= lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        history.append(epoch_cost)
        if epoch % 200 == 0 or epoch == epochs - 1:
            print(f"epoch {epoch:4d}   cost {epoch_cost:.6f}")
    return params, history, step


def main() -> None:
    X, Y = spiral_data()
    params = init_params([2, 16, 8, 1])
    print(f"gradient check on 5 examples (seed 002's criterion: < 1e-7): "
          f"{cr.check_grad(cost, params, X[:, :5], Y[:, :5]):.2e}\n")
    start = time.perf_counter()
    params, history, step = train(X, Y)
    elapsed = time.perf_counter() - start
    accuracy = np.mean((forward(params, X) > 0.5) == Y) * 100
    print(f"\ntrained in {elapsed:.1f} s ({len(step._cache)} compiled signatures: full and last batch)")
    print(f"final accuracy on the spirals: {accuracy:.1f}%")
    if "--plot" in sys.argv:
        plot(params, X, Y, history)


def plot(params, X, Y, history) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xx, yy = np.meshgrid(np.linspace(-1.2, 1.2, 300), np.linspace(-1.2, 1.2, 300))
    grid = np.stack([xx.ravel(), yy.ravel()])
    probability = forward(params, grid).reshape(xx.shape)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    left.contourf(xx, yy, probability, levels=20, cmap="RdBu", alpha=0.7)
    left.scatter(X[0], X[1], c=Y[0], cmap="RdBu", edgecolors="k", s=12)
    left.set_title("decision surface")
    right.semilogy(history)
    right.set_xlabel("epoch")
    right.set_title("training cost")
    figure.tight_layout()
    figure.savefig("spiral.png", dpi=100)
    print("saved spiral.png")


if __name__ == "__main__":
    main()
