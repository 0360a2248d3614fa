"""BatchNorm against LayerNorm (seed 004): which axis each normalizes, and how each behaves in
training and in inference.

Seed 004: "BatchNorm: normalize using the average of my neighbors. LayerNorm: normalize using my
own features." BatchNorm takes the mean and variance of each feature over the batch (a column of
a (batch, features) array), so one sample's output depends on the others in its batch, a batch
of one normalizes to zeros, and inference must switch to running averages kept during training.
LayerNorm takes them over each sample's own features (a row), so it needs no batch, keeps no
state, and computes the same thing in training and inference, which is why RNNs and
Transformers use it.

The run prints, for one batch whose features live on very different scales,

1. the per-feature and per-sample mean and standard deviation after each layer;
2. sample 0's output in two different batches (BatchNorm's changes, LayerNorm's does not), and
   in a batch of one;
3. training against inference: BatchNorm's running statistics after k training steps, and how
   far its inference output still is from its training output; LayerNorm's gap is zero.

It saves norm_comparison.png when matplotlib is installed.

    python examples/norm_comparison.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import chainrule as cr
from chainrule import nn

FEATURES = 4
MEANS = np.array([5.0, -20.0, 300.0, 0.5])
SCALES = np.array([1.0, 10.0, 100.0, 0.1])  # feature j ~ N(MEANS[j], SCALES[j]^2)


def batch_of(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return MEANS + SCALES * rng.standard_normal((size, FEATURES))


def statistics_table(x: np.ndarray, outputs: dict) -> dict:
    """Mean and std per feature (over the batch, axis 0) and per sample (over features, axis 1)."""
    rows = {}
    print("   the largest |value| of each statistic\n")
    print(f"   {'':<12}{'per-feature mean':>18}{'per-feature std':>18}{'per-sample mean':>18}{'per-sample std':>18}")
    for name, y in {"input": x, **outputs}.items():
        rows[name] = {
            "feature_mean": y.mean(axis=0),
            "feature_std": y.std(axis=0),
            "sample_mean": y.mean(axis=1),
            "sample_std": y.std(axis=1),
        }
        summary = [np.abs(rows[name][key]).max() for key in rows[name]]
        print(f"   {name:<12}" + "".join(f"{value:>18.3g}" for value in summary))
    return rows


def train_and_infer_gap(batchnorm, layernorm, steps: int) -> list:
    """BatchNorm's running statistics after each training step, and the gap between its training
    and inference outputs on the next batch; LayerNorm's gap beside it."""
    bn_params, ln_params, state = batchnorm.init(), layernorm.init(), batchnorm.init_state()
    bn_train = cr.jit(lambda p, x, s: batchnorm.apply(p, x, state=s, training=True))
    gaps = []
    for step in range(steps):
        x = batch_of(32, seed=100 + step)
        train_output, state = bn_train(bn_params, x, state)
        infer_output, _ = batchnorm.apply(bn_params, x, state=state, training=False)
        ln_gap = np.abs(layernorm.apply(ln_params, x, training=True) - layernorm.apply(ln_params, x)).max()
        gaps.append((step + 1, state["mean"].copy(), np.abs(train_output - infer_output).max(), ln_gap))
    return gaps


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", default=".", help="directory for norm_comparison.png")
    args = parser.parse_args(argv)
    batchnorm, layernorm = nn.BatchNorm(FEATURES), nn.LayerNorm(FEATURES)
    bn_params, ln_params = batchnorm.init(), layernorm.init()

    x = batch_of(8, seed=0)
    outputs = {
        "BatchNorm": batchnorm.apply(bn_params, x, training=True),
        "LayerNorm": layernorm.apply(ln_params, x),
    }
    print(f"1. which axis each one normalizes (a batch of 8; feature means {MEANS.tolist()}, std {SCALES.tolist()})\n")
    stats = statistics_table(x, outputs)
    print("\n   BatchNorm: each feature (column) has mean 0, std 1; LayerNorm: each sample (row) has.\n")

    other = np.concatenate([x[:1], batch_of(7, seed=1)])
    print("2. sample 0's output depends on its batch under BatchNorm only\n")
    dependence = {}
    for name, layer, params in (("BatchNorm", batchnorm, bn_params), ("LayerNorm", layernorm, ln_params)):
        first = layer.apply(params, x, training=True)[0]
        second = layer.apply(params, other, training=True)[0]
        alone = layer.apply(params, x[:1], training=True)[0]
        dependence[name] = (first, second, alone)
        print(f"   {name:<10} in batch A  {np.array2string(first, precision=3, suppress_small=True)}")
        print(f"   {'':<10} in batch B  {np.array2string(second, precision=3, suppress_small=True)}")
        print(f"   {'':<10} alone       {np.array2string(alone, precision=3, suppress_small=True)}")

    print(f"\n3. training against inference, batches of 32 (momentum {batchnorm.momentum})\n")
    gaps = train_and_infer_gap(batchnorm, layernorm, args.steps)
    print(f"   {'step':>6}{'running mean of feature 2':>28}{'BN |train - infer|':>22}{'LN |train - infer|':>22}")
    for step, running_mean, bn_gap, ln_gap in gaps:
        if step in (1, 2, 5, 10, 20, args.steps):
            print(f"   {step:>6}{running_mean[2]:>28.3f}{bn_gap:>22.4f}{ln_gap:>22.1f}")
    print("\n   BatchNorm's running mean creeps towards the data's (300); its inference output differs from")
    print("   its training output until then, and a little after (a batch's statistics are noisy estimates")
    print("   of the population's). LayerNorm has nothing to estimate: no state and no gap.")
    if not args.no_plot:
        plot(x, outputs, gaps, Path(args.out) / "norm_comparison.png")
    return {"stats": stats, "dependence": dependence, "gaps": gaps}


def plot(x: np.ndarray, outputs: dict, gaps: list, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    for axis, (title, values) in zip(axes, {"input": x, **outputs}.items()):
        limits = {} if title == "input" else {"vmin": -2.5, "vmax": 2.5}  # the input's scale is its own
        image = axis.imshow(values, cmap="coolwarm", aspect="auto", **limits)
        axis.set(title=title, xlabel="feature", ylabel="sample", xticks=range(FEATURES))
    figure.colorbar(image, ax=axes[2])
    steps = [g[0] for g in gaps]
    axes[3].semilogy(steps, [g[2] for g in gaps], label="BatchNorm", linewidth=2)
    axes[3].axhline(1e-16, color="#059669", linewidth=2, label="LayerNorm (0)")
    axes[3].set(xlabel="training step", ylabel="max |train - inference|", title="Train vs inference output")
    axes[3].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
