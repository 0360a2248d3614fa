"""Seed 002's optimizer comparison dashboard (12.18) on the spiral data.

The seed's network [2, 16, 8, 1] from the same initial weights, trained with
every optimizer in ``chainrule.optim`` on shuffled mini-batches of 64 (the same
shuffles for all). Learning rates as in the seed's comparison: 0.01 for
gradient descent and its momentum variants (and Adagrad), 0.001 for the
adaptive methods. Prints a table and saves optimizer_comparison.png
(convergence curves, final accuracy, training time) when matplotlib is installed.

    python examples/optimizer_comparison.py                  # 1000 epochs, ~15 s
    python examples/optimizer_comparison.py --epochs 200 --no-plot
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from spiral_classifier import BATCH_SIZE, accuracy, build_model, spiral_data

from chainrule import optim
from chainrule.train import fit

OPTIMIZERS = {
    "SGD": optim.sgd(0.01),
    "Momentum": optim.momentum(0.01, beta=0.9),
    "Nesterov": optim.nesterov(0.01, beta=0.9),
    "Adagrad": optim.adagrad(0.01),
    "RMSprop": optim.rmsprop(0.001),
    "Adam": optim.adam(0.001),
    "AdamW": optim.adamw(0.001, weight_decay=0.01),
}
COLORS = ["#ef4444", "#f97316", "#eab308", "#8b5cf6", "#0891b2", "#059669", "#64748b"]


def compare(epochs: int) -> dict:
    X, Y = spiral_data()
    results = {}
    for name, optimizer in OPTIMIZERS.items():
        model = build_model()
        start = time.perf_counter()
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
            progress=False,
        )
        results[name] = {
            "losses": result.history["loss"],
            "seconds": time.perf_counter() - start,
            "accuracy": accuracy(model, result.params, X, Y),
            "lr": optimizer.learning_rate,
        }
    return results


def first_epoch_below(losses, threshold):
    below = np.flatnonzero(np.asarray(losses) < threshold)
    return str(below[0]) if below.size else "-"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", default=".", help="directory for optimizer_comparison.png")
    args = parser.parse_args(argv)

    results = compare(args.epochs)
    middle = args.epochs // 2
    print(
        f"{'optimizer':<10}{'lr':>7}{'cost@10':>10}{f'cost@{middle}':>11}{'final cost':>12}"
        f"{'cost<0.1 at':>13}{'accuracy':>10}{'time s':>8}"
    )
    for name, row in results.items():
        losses = row["losses"]
        print(
            f"{name:<10}{row['lr']:>7g}{losses[min(10, len(losses) - 1)]:>10.4f}{losses[middle]:>11.4f}"
            f"{losses[-1]:>12.4f}{first_epoch_below(losses, 0.1):>13}{row['accuracy']:>9.2f}%"
            f"{row['seconds']:>8.2f}"
        )
    print("(time includes compiling each optimizer's train step; 'cost<0.1 at' is the first epoch below 0.1)")
    if not args.no_plot:
        plot(results, Path(args.out) / "optimizer_comparison.png")
    return results


def plot(results: dict, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    figure, axes = plt.subplots(1, 3, figsize=(18, 5))
    for name, color in zip(names, COLORS):
        axes[0].plot(
            results[name]["losses"], color=color, linewidth=2, label=f"{name} ({results[name]['accuracy']:.0f}%)"
        )
    axes[0].set(xlabel="epoch", ylabel="cost", title="Convergence", yscale="log")
    axes[0].legend()
    axes[1].bar(names, [results[n]["accuracy"] for n in names], color=COLORS)
    lowest = min(results[n]["accuracy"] for n in names)
    axes[1].set(title="Final training accuracy (%)", ylim=(max(0.0, lowest - 5), 100))
    axes[2].bar(names, [results[n]["seconds"] for n in names], color=COLORS)
    axes[2].set(title="Training time (s, compiling included)")
    for axis in axes[1:]:
        axis.tick_params(axis="x", rotation=30)
    figure.suptitle("Optimizer comparison on the spiral data (seed 002, 12.18)", fontweight="bold")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
