"""Seed 004's worked example: one gradient-descent step of linear regression, then many, at several
learning rates.

The data are three points, x = [1, 2, 3] and y = [2, 3, 5]; the model is y_hat = W x + b and the
loss the mean squared error L(W, b) = 1/n sum (y_i - (W x_i + b))^2. From W = b = 0 the seed
works out by hand

    dL/dW = -2/3 [1 (2 - 0) + 2 (3 - 0) + 3 (5 - 0)] = -2/3 * 23 = -15.33
    dL/db = -2/3 [(2 - 0) + (3 - 0) + (5 - 0)]       = -2/3 * 10 =  -6.67

and with the learning rate eta = 0.1 the step W <- W - eta dL/dW, b <- b - eta dL/db gives
W = 1.533, b = 0.667. chainrule differentiates the loss as written (``cr.value_and_grad``) and
prints the same numbers, then repeats the step: the best-fit line is y = 1.5 x + 0.33.

"What happens if the learning rate is too large, and the steps repeat?" (seed 004): each step
overshoots the minimum. The loss is a quadratic bowl whose steepest curvature is the largest
eigenvalue of its Hessian, 2/n [[sum x^2, sum x], [sum x, n]]; gradient descent converges when
eta < 2 / that eigenvalue (here 0.18) and diverges beyond it, oscillating ever wider. The run
prints the loss per step at a small, a good, a nearly-too-large and a too-large rate, and saves
linear_regression_step.png when matplotlib is installed.

    python examples/linear_regression_step.py
    python examples/linear_regression_step.py --steps 30 --no-plot
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import chainrule as cr

X = np.array([1.0, 2.0, 3.0])
Y = np.array([2.0, 3.0, 5.0])
RATES = (0.01, 0.1, 0.17, 0.2)


def loss(params, x, y):
    """The seed's MSE: 1/n sum (y_i - (W x_i + b))^2."""
    residual = y - (params["W"] * x + params["b"])
    return np.mean(residual * residual)


loss_and_gradient = cr.value_and_grad(loss)


def gradient_step(params: dict, lr: float) -> tuple:
    """(loss before the step, gradient, parameters after W <- W - lr dL/dW, b <- b - lr dL/db)."""
    value, gradient = loss_and_gradient(params, X, Y)
    return float(value), gradient, {name: params[name] - lr * gradient[name] for name in params}


def descend(lr: float, steps: int) -> dict:
    """Losses and parameters along ``steps`` steps of gradient descent from W = b = 0."""
    params = {"W": np.float64(0.0), "b": np.float64(0.0)}
    losses, path = [], [params]
    for _ in range(steps):
        value, _, params = gradient_step(params, lr)
        losses.append(value)
        path.append(params)
    return {"losses": losses, "path": path}


def stability_limit() -> float:
    """2 / the largest eigenvalue of the loss's Hessian: the largest rate that still converges."""
    hessian = cr.hessian(lambda w: loss({"W": w[0], "b": w[1]}, X, Y))(np.zeros(2))
    return 2.0 / float(np.linalg.eigvalsh(hessian).max())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", default=".", help="directory for linear_regression_step.png")
    args = parser.parse_args(argv)

    start = {"W": np.float64(0.0), "b": np.float64(0.0)}
    value, gradient, after = gradient_step(start, 0.1)
    print("one step from W = b = 0 with learning rate 0.1 (seed 004)")
    print(f"  loss      {value:.4f}")
    print(f"  dL/dW     {float(gradient['W']):.2f}     (seed: -15.33)")
    print(f"  dL/db     {float(gradient['b']):.2f}      (seed: -6.67)")
    print(f"  W         {float(after['W']):.3f}      (seed: 1.533)")
    print(f"  b         {float(after['b']):.3f}      (seed: 0.667)")

    limit = stability_limit()
    print(f"\ngradient descent converges for learning rates below 2 / max eig(Hessian) = {limit:.4f}\n")
    runs = {lr: descend(lr, args.steps) for lr in RATES}
    marks = sorted({0, 1, 2, 5, 10, args.steps // 2, args.steps - 1})
    print(f"{'loss at step':<14}" + "".join(f"{'lr ' + str(lr):>18}" for lr in RATES))
    for mark in marks:
        print(f"{mark:<14}" + "".join(f"{runs[lr]['losses'][mark]:>18.4g}" for lr in RATES))
    print(f"{'final W, b':<14}" + "".join(_final(runs[lr]["path"][-1]) for lr in RATES))
    least_squares = np.polyfit(X, Y, 1)
    print(f"\nleast squares (np.polyfit): W = {least_squares[0]:.4f}, b = {least_squares[1]:.4f}")
    if not args.no_plot:
        plot(runs, Path(args.out) / "linear_regression_step.png")
    return {"gradient": gradient, "after": after, "runs": runs, "limit": limit}


def _final(params: dict) -> str:
    w, b = float(params["W"]), float(params["b"])
    return f"{'diverged':>18}" if abs(w) > 1e3 else f"{w:>11.3f}{b:>7.3f}"


def plot(runs: dict, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    colors = ["#64748b", "#059669", "#f97316", "#ef4444"]
    for (lr, run), color in zip(runs.items(), colors):
        right.semilogy(run["losses"], label=f"lr {lr}", color=color, linewidth=2)
        weights = [float(p["W"]) for p in run["path"][:16]]
        left.plot(weights, "o-", color=color, label=f"lr {lr}")
    left.axhline(1.5, color="black", linestyle="--", linewidth=1, label="best fit W = 1.5")
    left.set(ylim=(-2.0, 5.0), xlabel="step", ylabel="W", title="W per step: too large a rate overshoots, ever wider")
    right.set(xlabel="step", ylabel="MSE", title="Loss per step: too large a rate diverges")
    for axis in (left, right):
        axis.legend()
        axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
