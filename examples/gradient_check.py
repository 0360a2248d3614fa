"""Seed 002's gradient checking (12.9), applied to chainrule's gradients and to hand-written ones.

For each model, the relative difference ||g - n|| / (||g|| + ||n|| + 1e-8)
between chainrule's gradient g and a numerical gradient n, two ways:
``cr.check_grad`` (a fourth-order central difference, error ~1e-12) and the
seed's own two-point formula with eps = 1e-7 (error ~1e-9, rounding-bound).
Then the same check on the seed's hand-written batch-norm backward (12.10.2),
and on a copy of it with one term left out, to show the check catching a bug.

    python examples/gradient_check.py
"""

from __future__ import annotations

import argparse

import numpy as np
from spiral_classifier import spiral_data

import chainrule as cr
from chainrule import nn
from chainrule.cli import demo
from chainrule.frontends.pytree import flatten, unflatten


def verdict(difference: float) -> str:
    """The seed's thresholds."""
    if difference < 1e-7:
        return "PASSED"
    return "SUSPICIOUS" if difference < 1e-5 else "FAILED"


def two_point_check(fn, params, *data, epsilon=1e-7) -> float:
    """The seed's gradient_check: every parameter nudged by +-epsilon, (J+ - J-) / (2 epsilon)."""
    leaves, _, treedef = flatten(params)
    theta = np.concatenate([np.ravel(leaf) for leaf in leaves])
    sizes = np.cumsum([0] + [np.size(leaf) for leaf in leaves])

    def cost(vector):
        rebuilt = [vector[a:b].reshape(np.shape(leaf)) for a, b, leaf in zip(sizes, sizes[1:], leaves)]
        return float(fn(unflatten(treedef, rebuilt), *data))

    numeric = np.zeros_like(theta)
    for i in range(len(theta)):
        plus, minus = theta.copy(), theta.copy()
        plus[i] += epsilon
        minus[i] -= epsilon
        numeric[i] = (cost(plus) - cost(minus)) / (2 * epsilon)
    analytic = np.concatenate([np.ravel(g) for g in flatten(cr.grad(fn)(params, *data))[0]])
    return float(np.linalg.norm(analytic - numeric) / (np.linalg.norm(analytic) + np.linalg.norm(numeric) + 1e-8))


def cases():
    X, Y = spiral_data()
    x, y = X[30::75], Y[30::75]  # away from the origin, where zero-bias ReLUs sit on their kink
    seed_net = nn.Sequential([2, 16, 8, 1], activations=["relu", "relu", "sigmoid"])
    seed_params = seed_net.init(42)

    def seed_cost(p, x, y):
        return nn.binary_cross_entropy(seed_net.apply(p, x), y)

    def seed_cost_l2(p, x, y):
        return seed_cost(p, x, y) + nn.l2_penalty(p, 0.7 / len(x))  # the seed's lambda / m, lambda = 0.7

    rng = np.random.default_rng(0)
    tanh_net = nn.Sequential([4, 8, 8, 3], activations=["tanh", "tanh", "linear"])
    x4, labels = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)

    def softmax_cost(p, x, labels):
        return nn.cross_entropy(tanh_net.apply(p, x), labels)

    bn_net = nn.Sequential([nn.Dense(4, 8), nn.BatchNorm(8), nn.Activation("relu"), nn.Dropout(0.25), nn.Dense(8, 1)])
    masks = bn_net.dropout_masks(1, (6, 4))
    bn_state = bn_net.init_state()
    targets = rng.standard_normal((6, 1))
    bn_params = bn_net.init(3)
    bn_params["dense1"]["b"] = rng.uniform(0.1, 0.5, 8)  # away from ReLU kinks after normalization

    def bn_cost(p, x, t):
        prediction, _ = bn_net.apply(p, x, state=bn_state, training=True, rng=masks)
        return nn.mse(prediction, t)

    return [
        ("seed 12.7 Example 1 (4-3-1)", demo.loss, demo.PARAMS, (demo.X, demo.Y)),
        ("seed net [2,16,8,1], BCE", seed_cost, seed_params, (x, y)),
        ("  + L2 (lambda 0.7)", seed_cost_l2, seed_params, (x, y)),
        ("tanh [4,8,8,3], softmax CE", softmax_cost, tanh_net.init(1), (x4, labels)),
        ("Dense-BN-ReLU-Dropout-Dense", bn_cost, bn_params, (x4, targets)),
    ]


def seed_batchnorm_backward(Z, gamma, dout, eps=1e-5, with_bug=False):
    """Seed 002 12.10.2's BatchNorm.forward + backward (features in rows), returning dZ."""
    m = dout.shape[1]
    mu = np.mean(Z, axis=1, keepdims=True)
    var = np.var(Z, axis=1, keepdims=True)
    Z_centered = Z - mu
    std_inv = 1.0 / np.sqrt(var + eps)
    dZ_norm = dout * gamma.reshape(-1, 1)
    dvar = np.sum(dZ_norm * Z_centered * (-0.5) * (var + eps) ** (-1.5), axis=1, keepdims=True)
    dmu = np.sum(dZ_norm * (-std_inv), axis=1, keepdims=True) + dvar * np.mean(-2 * Z_centered, axis=1, keepdims=True)
    if with_bug:  # the variance's path to Z forgotten: a classic hand-derivation slip
        return dZ_norm * std_inv + dmu / m
    return dZ_norm * std_inv + dvar * 2 * Z_centered / m + dmu / m


def main(argv=None) -> list:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    rows = []
    print(f"{'model':<30}{'params':>7}{'check_grad':>12}{'two-point':>12}   verdict")
    for name, fn, params, data in cases():
        count = sum(np.size(leaf) for leaf in flatten(params)[0])
        fourth_order = cr.check_grad(fn, params, *data)
        two_point = two_point_check(fn, params, *data)
        rows.append((name, fourth_order, two_point))
        print(f"{name:<30}{count:>7}{fourth_order:>12.2e}{two_point:>12.2e}   {verdict(fourth_order)}")

    rng = np.random.default_rng(7)
    Z = np.array([[2.0, 4.0, 6.0, 8.0], [1.0, 3.0, 5.0, 7.0], [0.5, 1.5, 2.5, 3.5]]) + rng.normal(0, 0.1, (3, 4))
    gamma, beta, dout = rng.uniform(0.5, 2.0, 3), rng.standard_normal(3), rng.standard_normal((3, 4))
    layer = nn.BatchNorm(3)

    def upstream_weighted(Z):  # sum(dout * BN(Z)): its gradient is the backward of dout
        return np.sum(dout.T * layer.apply({"gamma": gamma, "beta": beta}, Z.T, training=True))

    reference = cr.grad(upstream_weighted)(Z)
    print(
        f"\nthe seed's hand-written batch-norm backward (12.10.2) against chainrule's gradient "
        f"(itself {cr.check_grad(upstream_weighted, Z):.1e} from finite differences):"
    )
    for label, with_bug in (("as written in the seed", False), ("without the dvar term", True)):
        hand = seed_batchnorm_backward(Z, gamma, dout, with_bug=with_bug)
        difference = float(np.linalg.norm(hand - reference) / (np.linalg.norm(hand) + np.linalg.norm(reference) + 1e-8))
        rows.append((label, difference, None))
        print(f"  {label:<28}{difference:>12.2e}   {verdict(difference)}")
    return rows


if __name__ == "__main__":
    main()
