"""Seed 002's learning-rate schedule explorer (12.18): the schedules, and what they do to training.

The schedules of ``chainrule.optim`` with the seed's settings (lr 0.01 over 200
epochs: halve every 50, exponential k = 0.02, cosine, 20 epochs of warm-up then
cosine), printed at a few epochs; then the spiral network trained with Adam
under each one, stretched over the run's optimizer steps (the seed advances
its schedules once per epoch; here they move every step). Saves
lr_schedules.png when matplotlib is installed.

    python examples/lr_schedules.py                   # ~5 s
    python examples/lr_schedules.py --epochs 50 --no-plot
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from spiral_classifier import BATCH_SIZE, accuracy, build_model, spiral_data

from chainrule import optim
from chainrule.train import fit

LR = 0.01


def schedules(epochs: int, steps_per_epoch: int = 1) -> dict:
    """The seed's schedules (for 200 epochs) scaled to ``epochs``, counted in optimizer steps."""
    total = epochs * steps_per_epoch
    return {
        "Constant": optim.constant(LR),
        "Step decay (/2 every quarter)": optim.step_decay(LR, every=max(1, total // 4), factor=0.5),
        "Exponential (k = 4 / total)": optim.exponential_decay(LR, rate=4 / total),
        "Cosine annealing": optim.cosine_decay(LR, total_steps=total),
        "Warmup (10%) + cosine": optim.warmup_cosine(LR, warmup_steps=max(1, total // 10), total_steps=total),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", default=".", help="directory for lr_schedules.png")
    args = parser.parse_args(argv)
    epochs = args.epochs
    table = schedules(epochs)

    marks = sorted({0, epochs // 20, epochs // 10, epochs // 4, epochs // 2, 3 * epochs // 4, epochs - 1})
    width = max(len(name) for name in table) + 2
    print(f"learning rate at epoch (lr {LR}, {epochs} epochs)\n")
    print(f"{'schedule':<{width}}" + "".join(f"{mark:>10}" for mark in marks))
    for name, schedule in table.items():
        print(f"{name:<{width}}" + "".join(f"{float(schedule(m)):>10.2e}" for m in marks))

    X, Y = spiral_data()
    per_step = schedules(epochs, math.ceil(len(X) / BATCH_SIZE))
    results = {}
    print(f"\nthe spiral network [2, 16, 8, 1], Adam, {epochs} epochs under each schedule\n")
    print(
        f"{'schedule':<{width}}{'cost@' + str(epochs // 4):>12}{'cost@' + str(epochs // 2):>12}"
        f"{'final cost':>12}{'accuracy':>10}"
    )
    for name in table:
        model = build_model()
        result = fit(
            model,
            model.init(42),
            X,
            Y,
            loss="bce",
            optimizer=optim.adam(per_step[name]),
            epochs=epochs,
            batch_size=BATCH_SIZE,
            seed=0,
            progress=False,
        )
        losses = result.history["loss"]
        results[name] = {
            "losses": losses,
            "lrs": result.history["lr"],
            "accuracy": accuracy(model, result.params, X, Y),
        }
        print(
            f"{name:<{width}}{losses[epochs // 4]:>12.4f}{losses[epochs // 2]:>12.4f}{losses[-1]:>12.4f}"
            f"{results[name]['accuracy']:>9.2f}%"
        )
    if not args.no_plot:
        plot(table, results, epochs, Path(args.out) / "lr_schedules.png")
    return results


def plot(table: dict, results: dict, epochs: int, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = ["#64748b", "#ef4444", "#f97316", "#059669", "#0891b2"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 5))
    steps = np.arange(epochs)
    for (name, schedule), color in zip(table.items(), colors):
        left.plot(steps, np.broadcast_to(schedule(steps), steps.shape), label=name, linewidth=2.5, color=color)
        right.semilogy(results[name]["losses"], label=name, linewidth=2, color=color)
    left.set(xlabel="epoch", ylabel="learning rate", title="Learning rate schedules")
    right.set(xlabel="epoch", ylabel="cost", title="Training cost on the spirals (Adam)")
    for axis in (left, right):
        axis.legend()
        axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
