"""Vanishing gradients (seed 002, 12.4.7): gradient norm per layer in deep sigmoid, tanh and ReLU nets.

Three networks of the same shape, ``depth`` hidden layers of 32 units on the
spiral data with a sigmoid output and binary cross-entropy, differing only in
the hidden activation (Xavier initialization for sigmoid and tanh, He for
ReLU, as the seed prescribes). chainrule computes every layer's weight
gradient; the table shows ||dW|| per layer at initialization. sigmoid' <= 0.25,
so each sigmoid layer can shrink the gradient by 4x or more (the seed: "after
10 layers: 0.25^10 ~ 1e-6"); ReLU passes it through unchanged where active.
Saves vanishing_gradients.png when matplotlib is installed.

    python examples/vanishing_gradients.py              # depth 10
    python examples/vanishing_gradients.py --depth 20 --no-plot
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from spiral_classifier import spiral_data

import chainrule as cr
from chainrule import nn

ACTIVATIONS = ("sigmoid", "tanh", "relu")
WIDTH = 32


def layer_gradient_norms(activation: str, depth: int, X, Y, seed: int = 0) -> np.ndarray:
    """||dW|| (Frobenius) of every layer, input layer first, at initialization."""
    model = nn.Sequential([2] + [WIDTH] * depth + [1], activations=[activation] * depth + ["sigmoid"])
    params = model.init(seed)
    grads = cr.grad(lambda p, x, y: nn.binary_cross_entropy(model.apply(p, x), y))(params, X, Y)
    return np.array([np.linalg.norm(grads[f"dense{layer}"]["W"]) for layer in range(1, depth + 2)])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=10, help="hidden layers")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", default=".", help="directory for vanishing_gradients.png")
    args = parser.parse_args(argv)

    X, Y = spiral_data()
    norms = {activation: layer_gradient_norms(activation, args.depth, X, Y) for activation in ACTIVATIONS}
    print(f"||dW|| per layer at initialization: [2] + [{WIDTH}] x {args.depth} + [1], 400 spiral points\n")
    print(f"{'layer':>6}" + "".join(f"{name:>12}" for name in ACTIVATIONS))
    for layer in range(args.depth + 1):
        label = "output" if layer == args.depth else str(layer + 1)
        print(f"{label:>6}" + "".join(f"{norms[name][layer]:>12.3e}" for name in ACTIVATIONS))
    print(f"{'1/out':>6}" + "".join(f"{norms[name][0] / norms[name][-1]:>12.1e}" for name in ACTIVATIONS))
    growth = {name: np.exp(np.mean(np.diff(np.log(norms[name][:-1])))) for name in ACTIVATIONS}
    print(
        "\ngeometric mean growth of ||dW|| per layer towards the output (hidden layers): "
        + ", ".join(f"{name} {factor:.2f}x" for name, factor in growth.items())
    )
    if not args.no_plot:
        plot(norms, args.depth, Path(args.out) / "vanishing_gradients.png")
    return norms


def plot(norms: dict, depth: int, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    layers = np.arange(1, depth + 2)
    for (name, values), color in zip(norms.items(), ["#ef4444", "#f97316", "#059669"]):
        axis.semilogy(layers, values, marker="o", linewidth=2, color=color, label=name)
    axis.set(xlabel="layer (1 = input side)", ylabel="||dW||", title=f"Gradient norm per layer, depth {depth}")
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
