"""Forward mode and second derivatives: seed 001's Jacobian, a Hessian, and Newton-CG with hvp.

1. Seed 001's two-layer tanh network z = tanh(tanh(x @ W1) @ W2): its Jacobian
   dz/dx by forward mode and by reverse mode (3 passes each, run as one
   vectorized program), checked against PyTorch's
   ``torch.autograd.functional.jacobian`` when PyTorch is installed.
2. The Hessian of Rosenbrock's function (forward over reverse), next to the
   one written out by hand.
3. Newton-CG on an L2-regularized logistic regression: each Newton step solves
   H p = -g by conjugate gradients, which only needs products H v (``cr.hvp``),
   so the Hessian is never built; the gradient norm falls quadratically.

    python examples/jacobians.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import chainrule as cr


def seed_001_network(x, W1, W2):
    y = np.tanh(x @ W1)  # layer 1: x -> y
    return np.tanh(y @ W2)  # layer 2: y -> z


def seed_001_jacobian(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x, W1, W2 = rng.standard_normal(3), rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    forward_mode, reverse_mode = cr.jacobian(seed_001_network, mode="fwd"), cr.jacobian(seed_001_network, mode="rev")
    result = {
        "x": x,
        "fwd": forward_mode(x, W1, W2),
        "rev": reverse_mode(x, W1, W2),
        "passes": (forward_mode.passes, reverse_mode.passes),
        "calls": (forward_mode.kernel_calls, reverse_mode.kernel_calls),
        "gradient": cr.grad(lambda x: np.sum(seed_001_network(x, W1, W2)))(x),
    }
    try:
        import torch
        from torch.autograd.functional import jacobian as torch_jacobian
    except ImportError:
        result["torch"] = None
    else:
        t1, t2 = torch.tensor(W1), torch.tensor(W2)
        result["torch"] = torch_jacobian(lambda x: torch.tanh(torch.tanh(x @ t1) @ t2), torch.tensor(x)).numpy()
    return result


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosenbrock_hessian_by_hand(x):
    n = len(x)
    hessian = np.zeros((n, n))
    for i in range(n - 1):
        hessian[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
        hessian[i + 1, i + 1] += 200
        hessian[i, i + 1] = hessian[i + 1, i] = -400 * x[i]
    return hessian


def logistic_loss(w, X, y):
    z = X @ w
    return np.mean(np.logaddexp(0.0, z) - y * z) + 0.5e-2 * np.sum(w * w)


def conjugate_gradient(apply_hessian, b, tolerance=1e-10, max_steps=100):
    """Solve H p = b to a relative ``tolerance`` with products H v only; returns (p, products used)."""
    p, residual = np.zeros_like(b), b.copy()
    direction, squared = residual.copy(), residual @ residual
    for step in range(max_steps):
        if np.sqrt(squared) < tolerance * np.linalg.norm(b):
            return p, step
        product = apply_hessian(direction)
        alpha = squared / (direction @ product)
        p += alpha * direction
        residual -= alpha * product
        squared, previous = residual @ residual, squared
        direction = residual + (squared / previous) * direction
    return p, max_steps


def newton_cg(samples: int = 400, features: int = 50, steps: int = 8, seed: int = 0) -> list:
    """Newton's method with CG inner solves on a logistic regression; one row per step."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, features))
    y = (X @ rng.standard_normal(features) + 0.5 * rng.standard_normal(samples) > 0).astype(float)
    gradient, hessian_vector = cr.grad(logistic_loss), cr.hvp(logistic_loss)
    w, rows = np.zeros(features), []
    for step in range(steps):
        g = gradient(w, X, y)
        rows.append((step, float(logistic_loss(w, X, y)), float(np.linalg.norm(g))))
        if rows[-1][2] < 1e-13:
            break
        direction, products = conjugate_gradient(lambda v: hessian_vector(w, X, y, v), -g)  # noqa: B023 (called in this iteration)
        rows[-1] += (products,)
        w = w + direction
    return rows


def main() -> int:
    np.set_printoptions(precision=4, suppress=True)
    seed = seed_001_jacobian()
    print("Seed 001: z = tanh(tanh(x @ W1) @ W2), the Jacobian dz/dx")
    print(f"  forward mode ({seed['passes'][0]} passes in {seed['calls'][0]} call):\n{seed['fwd']}")
    print(
        f"  reverse mode ({seed['passes'][1]} passes in {seed['calls'][1]} call): "
        f"max |fwd - rev| = {np.max(np.abs(seed['fwd'] - seed['rev'])):.1e}"
    )
    if seed["torch"] is not None:
        print(
            f"  torch.autograd.functional.jacobian: max |chainrule - torch| = "
            f"{np.max(np.abs(seed['fwd'] - seed['torch'])):.1e}"
        )
    else:
        print("  (PyTorch is not installed: no comparison)")
    print(
        f"  dt/dx for t = sum(z), by backprop: {seed['gradient']} = column sums of the Jacobian: "
        f"{seed['fwd'].sum(axis=0)}"
    )

    x = np.array([-1.2, 1.0, 0.8, 1.5])
    hessian = cr.hessian(rosenbrock)(x)
    print(f"\nRosenbrock's Hessian at {x} (forward over reverse):\n{hessian}")
    print(f"  max |chainrule - by hand| = {np.max(np.abs(hessian - rosenbrock_hessian_by_hand(x))):.1e}")

    print("\nNewton-CG on logistic regression (50 weights; H v by cr.hvp, the Hessian never built)")
    print(f"  {'step':>4}  {'loss':>20}  {'|gradient|':>10}  {'H v products':>12}")
    for row in newton_cg():
        products = f"{row[3]:>12}" if len(row) > 3 else ""
        print(f"  {row[0]:>4}  {row[1]:>20.15f}  {row[2]:>10.2e}  {products}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
