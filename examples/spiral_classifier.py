"""Seed 002's spiral demo (12.10.1), trained with chainrule's toolkit.

The seed's ``DeepNeuralNetwork([2, 16, 8, 1])`` (ReLU, ReLU, sigmoid; He and
Xavier initialization) is ``nn.Sequential``; its hand-written backward pass and
Adam update are one compiled train step; its training loop (shuffled
mini-batches of 64, 2000 epochs, Adam at lr 0.001 with cosine decay) is
``chainrule.train.fit``. Run it:

    python examples/spiral_classifier.py              # prints a table; saves spiral.png with matplotlib
    python examples/spiral_classifier.py --epochs 300 --no-plot
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

import chainrule as cr
from chainrule import nn, optim
from chainrule.train import fit

BATCH_SIZE = 64


def spiral_data(points_per_class=200, seed=1):
    """The seed's two interleaved spirals, one example per row: X is (400, 2), Y is (400, 1)."""
    np.random.seed(seed)
    X = np.zeros((points_per_class * 2, 2))
    Y = np.zeros((points_per_class * 2, 1))
    for j in range(2):
        ix = range(points_per_class * j, points_per_class * (j + 1))
        r = np.linspace(0.0, 1, points_per_class)
        t = np.linspace(j * 4, (j + 1) * 4, points_per_class) + np.random.randn(points_per_class) * 0.2
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        Y[ix] = j
    return X, Y


def build_model():
    return nn.Sequential([2, 16, 8, 1], activations=["relu", "relu", "sigmoid"])


def train(X, Y, epochs=2000, lr=0.001, progress=True):
    """Adam with the seed's cosine schedule (per step here: the seed's runs per epoch)."""
    model = build_model()
    steps = epochs * math.ceil(len(X) / BATCH_SIZE)
    optimizer = optim.adam(optim.cosine_decay(lr, total_steps=steps))
    result = fit(
        model,
        model.init(42),
        X,
        Y,
        loss="bce",
        optimizer=optimizer,
        epochs=epochs,
        batch_size=BATCH_SIZE,
        seed=0,
        progress=progress,
    )
    return model, result


def accuracy(model, params, X, Y) -> float:
    return float(np.mean((model.apply(params, X) > 0.5) == Y) * 100)


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", default=".", help="directory for spiral.png")
    args = parser.parse_args(argv)

    X, Y = spiral_data()
    model = build_model()
    params = model.init(42)
    # Five examples spread over both spirals. Not the seed's X[:, :5]: each spiral starts at the origin,
    # where with zero biases every ReLU sits exactly at its kink and finite differences see slope 1/2.
    check = cr.check_grad(lambda p, x, y: nn.binary_cross_entropy(model.apply(p, x), y), params, X[30::75], Y[30::75])
    print(f"gradient check on 5 examples (seed 002's criterion: < 1e-7): {check:.2e}\n")

    start = time.perf_counter()
    model, result = train(X, Y, epochs=args.epochs)
    elapsed = time.perf_counter() - start
    history = result.history
    print(f"{'epoch':>6}  {'cost':>10}  {'lr':>10}")
    for epoch in sorted({*range(0, args.epochs, max(1, args.epochs // 10)), args.epochs - 1}):
        print(f"{epoch:>6}  {history['loss'][epoch]:>10.6f}  {history['lr'][epoch]:>10.2e}")
    final = accuracy(model, result.params, X, Y)
    steps = int(result.opt_state["count"])
    print(f"\n{steps} Adam steps in {elapsed:.1f} s ({elapsed / steps * 1e3:.2f} ms a step, compiling included)")
    print(f"final training accuracy on the spirals: {final:.2f}%")
    if not args.no_plot:
        plot(model, result.params, X, Y, history, Path(args.out) / "spiral.png")
    return final


def plot(model, params, X, Y, history, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xx, yy = np.meshgrid(np.linspace(-1.2, 1.2, 300), np.linspace(-1.2, 1.2, 300))
    probability = model.apply(params, np.stack([xx.ravel(), yy.ravel()], axis=1)).reshape(xx.shape)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    left.contourf(xx, yy, probability, levels=20, cmap="RdBu", alpha=0.7)
    left.scatter(X[:, 0], X[:, 1], c=Y[:, 0], cmap="RdBu", edgecolors="k", s=12)
    left.set_title("decision surface")
    right.semilogy(history["loss"])
    right.set_xlabel("epoch")
    right.set_title("training cost (binary cross-entropy)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
