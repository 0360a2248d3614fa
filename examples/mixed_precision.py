"""Mixed-precision training with dynamic loss scaling (seed 003, 7.4), on seed 002's spirals.

Seed 003: "FP16 where safe, FP32 where necessary. Loss scaling: scale the loss to keep gradients
in FP16 range; prevents gradient underflow." float16 has 10 bits of mantissa and nothing below
6e-8: a gradient of 1e-8 is zero in float16, and one above 65,504 is inf. So the loss is
multiplied by a large scale S before the backward pass (pushing small gradients into range),
the float32 gradients are divided by S, and if any is inf or NaN the step is skipped and S halved
(``optim.DynamicLossScale``); after N clean steps in a row S doubles again, to find the largest
scale that does not overflow.

The spiral network [2, 16, 8, 1] is trained twice from the same float32 start, on the same
mini-batches: plainly in float32 (``optim.train_step``), and with its forward and backward
passes in float16 against float32 master weights (``optim.mixed_precision_step``). The run
prints both losses per epoch and the loss scale's history (every skip and growth), and saves
mixed_precision.png when matplotlib is installed.

    python examples/mixed_precision.py
    python examples/mixed_precision.py --epochs 100 --no-plot
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from spiral_classifier import spiral_data

from chainrule import nn, optim

BATCH_SIZE = 64


def train_both(epochs: int, growth_interval: int = 100) -> dict:
    """float32 and mixed-precision training on the same batches: per-epoch losses, final
    parameters of the mixed run, and the loss scale after every step with whether it was applied."""
    x, y = (part.astype(np.float32) for part in spiral_data())
    model = nn.Sequential([2, 16, 8, 1], activations=["relu", "relu", "linear"])

    def loss(params, x, y):  # the loss's reduction in float32, as autocast runs it
        return nn.binary_cross_entropy(model.apply(params, x).astype(np.float32), y, from_logits=True)

    start = {name: {k: v.astype(np.float32) for k, v in layer.items()} for name, layer in model.init(42).items()}
    opt = optim.adam(0.01)
    plain = optim.train_step(loss, opt)
    scaling = optim.DynamicLossScale(growth_interval=growth_interval)
    mixed = optim.mixed_precision_step(loss, opt, loss_scale=scaling)
    p32, s32 = start, opt.init(start)
    p16, s16, scale_state = start, opt.init(start), scaling.init()
    losses: dict = {"float32": [], "mixed float16": []}
    scales = []
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(x))
        for first in range(0, len(x), BATCH_SIZE):
            rows = order[first : first + BATCH_SIZE]
            _, p32, s32 = plain(p32, s32, x[rows], y[rows])
            _, p16, s16, scale_state, finite = mixed(p16, s16, scale_state, x[rows], y[rows])
            scales.append((float(scale_state["scale"]), bool(finite)))
        losses["float32"].append(float(loss(p32, x, y)))
        losses["mixed float16"].append(float(loss(p16, x, y)))
    return {"losses": losses, "scales": scales, "params": p16, "initial_scale": scaling.initial_scale}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", default=".", help="directory for mixed_precision.png")
    args = parser.parse_args(argv)
    result = train_both(args.epochs)
    losses, scales = result["losses"], result["scales"]
    print(f"{'epoch':>6}{'float32 loss':>15}{'mixed float16':>15}")
    for epoch in sorted({0, 4, 9, args.epochs // 4, args.epochs // 2, args.epochs - 1}):
        print(f"{epoch + 1:>6}{losses['float32'][epoch]:>15.5f}{losses['mixed float16'][epoch]:>15.5f}")
    print("\nloss scale history (step: event -> scale)")
    previous = result["initial_scale"]
    for step, (scale, finite) in enumerate(scales, start=1):
        if not finite:
            print(f"  step {step:>5}: overflow, step skipped -> {scale:g}")
        elif scale != previous:
            print(f"  step {step:>5}: clean steps, grown    -> {scale:g}")
        previous = scale
    skipped = sum(not finite for _, finite in scales)
    print(f"\n{skipped} of {len(scales)} steps skipped; final scale {scales[-1][0]:g}")
    if not args.no_plot:
        plot(losses, scales, Path(args.out) / "mixed_precision.png")
    return result


def plot(losses: dict, scales: list, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    for name, values in losses.items():
        left.semilogy(values, label=name, linewidth=2)
    left.set(xlabel="epoch", ylabel="loss (whole data set)", title="float32 against mixed float16")
    steps = np.arange(1, len(scales) + 1)
    right.semilogy(steps, [scale for scale, _ in scales], color="#0891b2", linewidth=1.5, label="loss scale")
    skipped = [(step, scale) for step, (scale, finite) in zip(steps, scales) if not finite]
    if skipped:
        right.scatter(*zip(*skipped), color="#ef4444", zorder=3, label="overflow: step skipped")
    right.set(xlabel="step", ylabel="scale", title="Dynamic loss scale")
    for axis in (left, right):
        axis.legend()
        axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
