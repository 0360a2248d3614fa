"""AdamW against Adam + L2 (seed 004): where decoupling the weight decay changes the answer.

Seed 004: "AdamW = Adam + decoupled weight decay. Original Adam applied weight decay
incorrectly: weight decay got mixed with gradient scaling, leading to over-regularization
[of some weights, under-regularization of others]. AdamW decouples weight decay from the gradient
update, theta <- theta - eta m_hat / (sqrt(v_hat) + eps) - eta lambda theta: the weight decay term
acts independently of adaptive scaling. Naming: Adam = Adaptive Moment Estimation, W = weight
decay decoupled." (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.)

With plain SGD, adding lambda/2 ||theta||^2 to the loss (L2) and shrinking the weights by
eta lambda theta each step (weight decay) are the same update. With Adam they are not: the L2
gradient lambda theta enters m and v and is divided by sqrt(v_hat) like the rest of the
gradient, so each weight is decayed at its own rate lambda / sqrt(v_hat): weights with large
gradients are hardly regularized, weights with small gradients very much. AdamW applies
eta lambda theta outside the adaptive scaling: every weight decays at the rate lambda.

Two runs on a least-squares problem whose ten features span two orders of magnitude of scale:

1. The effective decay rate of each weight after training: lambda / (sqrt(v_hat) + eps) under
   Adam + L2 spans orders of magnitude; under AdamW it is lambda for every weight.
2. Where it matters in practice: the same lambda under a loss multiplied by c (a sum over a
   batch of 100 instead of the mean, or targets in other units). Adam's step ignores the
   gradient's scale, so AdamW finds the same weights for every c: its lambda means one thing.
   Under Adam + L2 the data term grows by c against the fixed penalty, so the same lambda
   regularizes c times less, and a lambda tuned for one loss is wrong for the other.

It saves adamw_vs_adam_l2.png when matplotlib is installed.

    python examples/adamw_vs_adam_l2.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from chainrule import optim

FEATURES = 10
LAMBDA = 0.1
LR = 0.01


def regression_data(samples: int = 40, seed: int = 0) -> tuple:
    """X with feature scales from 0.1 to 10, targets from fixed true weights plus noise."""
    rng = np.random.default_rng(seed)
    scales = np.logspace(-1, 1, FEATURES)
    x = rng.standard_normal((samples, FEATURES)) * scales
    true_weights = rng.standard_normal(FEATURES) / scales  # every feature matters about as much
    return x, x @ true_weights + 0.5 * rng.standard_normal(samples), scales


def train(decoupled: bool, x, y, loss_scale: float = 1.0, steps: int = 3000) -> dict:
    """Full-batch training of w on loss_scale * mean squared error: AdamW with weight_decay
    LAMBDA, or Adam on the loss plus LAMBDA / 2 ||w||^2."""
    opt = optim.adamw(LR, weight_decay=LAMBDA) if decoupled else optim.adam(LR)

    def loss(params, x, y):
        residual = x @ params["w"] - y
        value = loss_scale * np.mean(residual * residual)
        return value if decoupled else value + 0.5 * LAMBDA * np.sum(params["w"] * params["w"])

    step = optim.train_step(loss, opt)
    params = {"w": np.zeros(FEATURES)}
    state = opt.init(params)
    for _ in range(steps):
        _, params, state = step(params, state, x, y)
    v_hat = state["v"]["w"] / (1 - 0.999 ** int(state["count"]))
    return {"w": params["w"], "effective_decay": LAMBDA / (np.sqrt(v_hat) + 1e-8) if not decoupled else None}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", default=".", help="directory for adamw_vs_adam_l2.png")
    args = parser.parse_args(argv)
    x, y, scales = regression_data()
    runs = {
        (name, c): train(decoupled, x, y, c, args.steps)
        for name, decoupled in (("Adam + L2", False), ("AdamW", True))
        for c in (1.0, 100.0)
    }
    print(f"1. effective weight decay per step, divided by lr (lambda = {LAMBDA}, {args.steps} full-batch steps)\n")
    print(f"{'feature scale':>14}{'sqrt(v_hat)':>14}{'Adam + L2: lambda/sqrt(v_hat)':>32}{'AdamW':>10}")
    decay = runs[("Adam + L2", 1.0)]["effective_decay"]
    for scale, rate in zip(scales, decay):
        print(f"{scale:>14.2f}{LAMBDA / rate:>14.3g}{rate:>32.3g}{LAMBDA:>10.3g}")
    print(f"\n   Adam + L2 decays its weights at rates {decay.min():.3g} to {decay.max():.3g}, a factor of")
    print(f"   {decay.max() / decay.min():.0f} set by each weight's gradient history (sqrt(v_hat)), not by lambda.\n")

    print("2. the same lambda, the loss multiplied by c (mean -> sum over 100 samples, or other units)\n")
    print(f"{'':<12}{'||w|| at c = 1':>16}{'||w|| at c = 100':>18}{'max |w(1) - w(100)|':>22}")
    for name in ("Adam + L2", "AdamW"):
        w1, w100 = runs[(name, 1.0)]["w"], runs[(name, 100.0)]["w"]
        print(f"{name:<12}{np.linalg.norm(w1):>16.4f}{np.linalg.norm(w100):>18.4f}{np.abs(w1 - w100).max():>22.3g}")
    least_squares = np.linalg.lstsq(x, y, rcond=None)[0]
    print(f"{'no penalty':<12}{np.linalg.norm(least_squares):>16.4f}")
    print("\n   AdamW's weights do not depend on how the loss is scaled; Adam + L2's do, because its")
    print("   penalty is weighed against a data gradient whose size the loss's units decide.")
    if not args.no_plot:
        plot(runs, scales, Path(args.out) / "adamw_vs_adam_l2.png")
    return {"runs": runs, "scales": scales, "least_squares": least_squares}


def plot(runs: dict, scales: np.ndarray, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    left.loglog(scales, runs[("Adam + L2", 1.0)]["effective_decay"], "o-", label="Adam + L2: λ / sqrt(v̂)")
    left.loglog(scales, np.full_like(scales, LAMBDA), "s-", label="AdamW: λ")
    left.set(xlabel="feature scale", ylabel="effective decay rate / lr", title="Each weight's weight decay")
    positions = np.arange(FEATURES)
    for offset, (key, style) in enumerate(
        {("Adam + L2", 1.0): "#ef4444", ("Adam + L2", 100.0): "#fca5a5", ("AdamW", 1.0): "#2563eb"}.items()
    ):
        weights = runs[key]["w"] * scales  # each weight times its feature's scale: its effect on y
        right.bar(
            positions + 0.27 * (offset - 1), weights, width=0.27, color=style, label=f"{key[0]}, loss x {key[1]:g}"
        )
    right.set(xlabel="feature", ylabel="w * feature scale", title="Same λ, loss scaled by c: only AdamW agrees")
    for axis in (left, right):
        axis.legend()
        axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
