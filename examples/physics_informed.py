"""A physics-informed network: solve u''(x) = -pi^2 sin(pi x) on [0, 1], u(0) = u(1) = 0.

The network's output is the solution; its loss is the equation's residual at collocation points,
which needs the network's second derivative in x, differentiated in turn with respect to the
weights. Written as a JAX user writes it, unmodified:

    d2u = cr.vmap(cr.grad(cr.grad(lambda x: u(params, x))))(xs)

The innermost function reads ``params`` through its closure while ``cr.grad(residual_loss)`` traces
them: chainrule captures them as inputs of the inner traces and inlines the inner gradients into the
outer one (docs/architecture.md, "Loops and branches"). The exact solution is sin(pi x); the trained
network's largest error on a fine grid is printed with the loss as training goes.

    python examples/physics_informed.py                  # 3000 Adam steps on the LLVM backend
    python examples/physics_informed.py --steps 500 --backend numpy --plot pinn.png
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import chainrule as cr
from chainrule import optim

GRID = np.linspace(0.0, 1.0, 201)


def init(seed: int = 0, width: int = 16) -> dict[str, np.ndarray]:
    """A 1-width-width-1 tanh network's weights, scaled so the hidden layers start unsaturated."""
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.standard_normal((1, width)),
        "b1": np.zeros(width),
        "W2": rng.standard_normal((width, width)) / np.sqrt(width),
        "b2": np.zeros(width),
        "W3": rng.standard_normal((width, 1)) / np.sqrt(width),
    }


def u(params: dict[str, np.ndarray], x):
    """The trial solution at one point: x (1 - x) N(x) meets both boundary conditions exactly."""
    hidden = np.tanh(x * params["W1"][0] + params["b1"])
    hidden = np.tanh(hidden @ params["W2"] + params["b2"])
    return x * (1 - x) * (hidden @ params["W3"])[0]


def residual_loss(params: dict[str, np.ndarray], xs: np.ndarray):
    """Mean squared residual of u'' + pi^2 sin(pi x) = 0 at the collocation points ``xs``."""
    d2u = cr.vmap(cr.grad(cr.grad(lambda x: u(params, x))))(xs)
    return np.mean((d2u + np.pi**2 * np.sin(np.pi * xs)) ** 2)


def largest_error(params: dict[str, np.ndarray]) -> float:
    """max |u(x) - sin(pi x)| on a 201-point grid."""
    values = cr.vmap(lambda x: u(params, x))(GRID)
    return float(np.max(np.abs(values - np.sin(np.pi * GRID))))


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--points", type=int, default=32, help="collocation points")
    parser.add_argument("--backend", default="llvm", choices=("numpy", "llvm"))
    parser.add_argument("--plot", default=None, help="save u and sin(pi x) to this image (needs matplotlib)")
    options = parser.parse_args(argv)

    xs = np.linspace(0.0, 1.0, options.points)
    params = init()
    optimizer = optim.adam(1e-2)
    step = optim.train_step(residual_loss, optimizer, backend=options.backend)
    state = optimizer.init(params)
    print(f"{'step':>6} {'residual loss':>14} {'max |u - sin(pi x)|':>20} {'seconds':>8}")
    start = time.perf_counter()
    report_every = max(options.steps // 6, 1)
    for number in range(1, options.steps + 1):
        loss, params, state = step(params, state, xs)
        if number == 1 or number % report_every == 0 or number == options.steps:
            elapsed = time.perf_counter() - start
            print(f"{number:>6} {float(loss):>14.3e} {largest_error(params):>20.3e} {elapsed:>8.2f}")
    error = largest_error(params)
    print(f"\nu(0.5) = {float(u(params, 0.5)):.6f} (exact 1); the first step traced and compiled the inner gradients")
    if options.plot:
        _plot(params, options.plot)
    return error


def _plot(params: dict[str, np.ndarray], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(GRID, np.sin(np.pi * GRID), label="sin(pi x), exact", linewidth=3, alpha=0.4)
    axis.plot(GRID, cr.vmap(lambda x: u(params, x))(GRID), "--", label="network u(x)")
    axis.set_xlabel("x")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
