"""Where did the NaN come from? ``check_nans=True`` on three classic ways to make one.

The first two models train fine on most data and turn their gradient into NaN
on one unlucky batch. Without checking, the NaN shows up in the parameters a
step later; with ``check_nans=True`` the call stops at the op that made it and
says which line, which derivative rule, which element and what the operands
were. The third computes a NaN that its mask then hides: harmless here, and
reported anyway (as JAX does), because the same pattern turns gradients into
NaN as soon as the mask is applied by a multiplication. Then the usual fix for
each, and the same call running clean.

    python examples/nan_provenance.py
"""

from __future__ import annotations

import numpy as np

import chainrule as cr


def distance_loss(points):
    # the Euclidean norm's derivative x / |x| is 0/0 at x = 0: a point at the origin
    return np.sum(np.sqrt(np.sum(points**2, axis=1)))


def distance_loss_fixed(points):
    return np.sum(np.sqrt(np.sum(points**2, axis=1) + 1e-12))


def naive_softmax_score(logits):
    # exp overflows for logits above ~709 (and then inf / inf is NaN)
    e = np.exp(logits)
    return np.sum((e / np.sum(e, axis=1, keepdims=True))[:, 0])


def stable_softmax_score(logits):
    e = np.exp(logits - np.max(logits, axis=1, keepdims=True))
    return np.sum((e / np.sum(e, axis=1, keepdims=True))[:, 0])


def masked_log(x):
    # np.where computes both branches: log(-1) is NaN even where the mask drops it
    return np.sum(np.where(x > 0, np.log(x), 0.0))


def masked_log_fixed(x):
    return np.sum(np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), 0.0))


CASES = [
    ("a point at the origin", distance_loss, distance_loss_fixed, np.array([[3.0, 4.0], [0.0, 0.0]])),
    ("a large logit", naive_softmax_score, stable_softmax_score, np.array([[1.0, 2.0], [800.0, 1.0]])),
    ("a masked log", masked_log, masked_log_fixed, np.array([2.0, -1.0, 0.5])),
]


def main() -> list[str]:
    messages = []
    for title, model, fixed, batch in CASES:
        print(f"== {title}: {model.__name__}")
        with np.errstate(all="ignore"):  # NumPy's warnings say little; what check_nans says is the point
            unchecked = cr.grad(model)(batch)
        print(f"   unchecked gradient: {unchecked.ravel()}")
        try:
            cr.grad(model, check_nans=True)(batch)
        except cr.NonFiniteError as error:
            messages.append(str(error))
            print("   check_nans=True:", str(error).replace("\n", "\n   "))
        print(f"   fixed ({fixed.__name__}): {cr.grad(fixed, check_nans=True)(batch).ravel()}\n")
    return messages


if __name__ == "__main__":
    main()
