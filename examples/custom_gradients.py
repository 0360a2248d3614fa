"""Gradients you choose: cr.custom_vjp and cr.custom_jvp, three ways they are used.

(a) A stable gradient. The weighted log-sum-exp log(sum(w * exp(x))) is the log-likelihood of a
    mixture. Written as it reads, exp overflows at x = 1000 and the gradient is nan; chainrule's
    stability rewrites know log(sum(exp(x))) but not this weighted form. A custom_vjp computes the
    value shifted by max(x) and gives the gradient as the weighted softmax; both are checked
    against 50-digit arithmetic (mpmath).
(b) Gradient clipping inside the model: an identity whose backward pass clips the cotangent,
    placed between the layers of a deep tanh chain whose gradient otherwise explodes.
(c) A straight-through estimator: round() has a zero derivative almost everywhere, so a model
    with quantized weights does not learn; a custom_jvp that passes the tangent through round()
    lets it learn, while its forward pass stays quantized.

The rules are traced into the graph (the IR at the end shows the custom node with its bodies), so
they also run compiled by the LLVM backend.

    python examples/custom_gradients.py [--backend llvm]
"""

from __future__ import annotations

import argparse
import functools

import mpmath
import numpy as np

import chainrule as cr

# ---- (a) a stable gradient ------------------------------------------------------------------------


def weighted_logsumexp_naive(x, w):
    return np.log(np.sum(w * np.exp(x)))


@cr.custom_vjp
def weighted_logsumexp(x, w):
    top = np.max(x)
    return top + np.log(np.sum(w * np.exp(x - top)))


def weighted_logsumexp_fwd(x, w):
    top = np.max(x)
    scaled = w * np.exp(x - top)  # at most w: no overflow
    total = np.sum(scaled)
    return top + np.log(total), (scaled / total, np.exp(x - top) / total)


def weighted_logsumexp_bwd(residuals, g):
    softmax, per_weight = residuals
    return g * softmax, g * per_weight  # d/dx and d/dw of log(sum(w exp(x)))


weighted_logsumexp.defvjp(weighted_logsumexp_fwd, weighted_logsumexp_bwd)


def reference_gradient(x, w) -> np.ndarray:
    """d/dx log(sum(w exp(x))) with 50 significant digits."""
    mpmath.mp.dps = 50
    terms = [mpmath.mpf(float(wi)) * mpmath.exp(mpmath.mpf(float(xi))) for xi, wi in zip(x, w)]
    total = mpmath.fsum(terms)
    return np.array([float(term / total) for term in terms])


def stable_gradient_table(backend: str) -> list[tuple[float, float, float]]:
    """Per scale of x: the naive gradient's worst error, the custom one's, against mpmath."""
    w = np.array([0.5, 2.0, 1.0, 0.25])
    base = np.array([1.0, 0.998, 0.99, 0.97])
    naive = cr.grad(weighted_logsumexp_naive, backend=backend)
    custom = cr.grad(weighted_logsumexp, backend=backend)
    rows = []
    print("(a) d/dx log(sum(w * exp(x))), worst relative error against 50-digit mpmath")
    print(f"    {'x scale':>8}  {'naive trace':>14}  {'custom_vjp':>12}")
    for scale in (1.0, 300.0, 710.0, 1000.0):  # exp overflows float64 past 709.78
        x = scale * base
        reference = reference_gradient(x, w)
        with np.errstate(over="ignore", invalid="ignore"):
            naive_error = float(np.max(np.abs(naive(x, w) - reference) / reference))
        custom_error = float(np.max(np.abs(custom(x, w) - reference) / reference))
        rows.append((scale, naive_error, custom_error))
        print(f"    {scale:>8.0f}  {naive_error:>14.2e}  {custom_error:>12.2e}")
    return rows


# ---- (b) gradient clipping inside the model ---------------------------------------------------------


@functools.partial(cr.custom_vjp, nondiff_argnums=(0,))
def clip_gradient(bound, x):
    return x  # the identity forward ...


def clip_gradient_fwd(bound, x):
    return x, None


def clip_gradient_bwd(bound, residuals, g):
    return (np.clip(g, -bound, bound),)  # ... and a clipped cotangent backward


clip_gradient.defvjp(clip_gradient_fwd, clip_gradient_bwd)


def deep_chain(weights, x, clip=None):
    """A 12-layer tanh chain with large weights: its gradient grows layer after layer."""
    h = x
    for layer in range(weights.shape[0]):
        h = np.tanh(weights[layer] @ h)
        if clip is not None:
            h = clip_gradient(clip, h)
    return np.sum(h)


def clipping_table(backend: str) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 2.5, size=(12, 8, 8))
    x = rng.normal(size=8) * 0.01
    plain = cr.grad(deep_chain, argnums=1, backend=backend)(weights, x)
    clipped = cr.grad(lambda w, x: deep_chain(w, x, clip=0.05), argnums=1, backend=backend)(weights, x)
    print("\n(b) gradient of a 12-layer tanh chain w.r.t. its input, with a clipping identity per layer")
    print(f"    max |gradient| without clipping: {np.max(np.abs(plain)):10.3e}")
    print(f"    max |gradient| clipped to 0.05 : {np.max(np.abs(clipped)):10.3e}")
    return float(np.max(np.abs(plain))), float(np.max(np.abs(clipped)))


# ---- (c) a straight-through estimator ---------------------------------------------------------------


@cr.custom_jvp
def quantize(w):
    return np.round(w * 4) / 4  # weights on a grid of 0.25


@quantize.defjvp
def quantize_jvp(primals, tangents):
    (w,), (t,) = primals, tangents
    return quantize(w), t  # straight through: d quantize / dw taken to be 1


def plain_quantize(w):
    return np.round(w * 4) / 4


def quantized_loss(quantizer):
    def loss(w, x, y):
        return np.mean((x @ quantizer(w) - y) ** 2)

    return loss


def straight_through_table(backend: str, steps: int = 30) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 3))
    y = x @ np.array([0.75, -1.5, 0.5])  # reachable on the grid
    histories = []
    for quantizer in (plain_quantize, quantize):
        grad = cr.value_and_grad(quantized_loss(quantizer), backend=backend)
        w = np.array([0.1, 0.1, 0.1])
        losses = []
        for _ in range(steps):
            value, gradient = grad(w, x, y)
            losses.append(float(value))
            w = w - 0.1 * gradient
        histories.append(losses)
    print("\n(c) training weights quantized to a grid of 0.25 (loss after each 5 steps of SGD)")
    print(f"    {'step':>4}  {'round (no STE)':>15}  {'straight-through':>17}")
    for step in range(0, steps, 5):
        print(f"    {step:>4}  {histories[0][step]:>15.5f}  {histories[1][step]:>17.5f}")
    return histories[0], histories[1]


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", choices=["numpy", "llvm"])
    args = parser.parse_args(argv)
    results: dict[str, object] = {
        "stable": stable_gradient_table(args.backend),
        "clipping": clipping_table(args.backend),
        "straight_through": straight_through_table(args.backend),
    }
    print("\nThe loss of (c) as traced: the custom node, its function and its rule nested under it")
    traced = cr.grad(quantized_loss(quantize)).ir(np.zeros(3), np.zeros((2, 3)), np.zeros(2), stage="traced")
    print(traced)
    return results


if __name__ == "__main__":
    main()
