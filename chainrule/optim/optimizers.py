"""Optimizers as pairs of pure functions over pytrees: ``init(params) -> state`` and
``update(grads, state, params) -> (new_params, new_state)``.

Every update rule is written once, with NumPy, for one parameter array; it
runs eagerly on arrays and traced inside a compiled train step alike. The
state is a dict pytree: ``count`` (updates done so far, the seed's ``t - 1``)
and one tree per slot (``m``, ``v`` ...) shaped like the parameters, so it can
be passed to and returned from compiled functions.

    >>> import numpy as np
    >>> from chainrule import optim
    >>> opt = optim.adam(0.001)
    >>> params = {"w": np.array([1.0, 2.0])}
    >>> state = opt.init(params)
    >>> params, state = opt.update({"w": np.array([0.1, -0.3])}, state, params)
    >>> params["w"]                       # Adam's first step moves each weight by about lr
    array([0.999, 2.001])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chainrule.errors import ArgumentError
from chainrule.frontends.pytree import flatten, unflatten

Schedule = Callable[[Any], Any]
LearningRate = float | Schedule


@dataclass(frozen=True)
class Optimizer:
    """A named update rule with its hyperparameters.

    ``rule(grad, param, slots, lr, t) -> (new_param, new_slots)`` updates one
    parameter array; ``slots`` are its per-parameter state arrays in the order
    of ``slot_names`` and ``t`` is the 1-based step number. ``learning_rate``
    is a number or a schedule ``step -> lr`` evaluated at ``count``.
    """

    name: str
    learning_rate: LearningRate
    slot_names: tuple
    rule: Callable = field(repr=False)
    hyperparameters: dict = field(default_factory=dict)

    def init(self, params) -> dict:
        """The state before the first update: count 0 and zero slots shaped like ``params``."""
        leaves, _, treedef = flatten(params)
        state = {"count": np.int64(0)}
        for slot in self.slot_names:
            state[slot] = unflatten(treedef, [np.zeros_like(leaf) for leaf in leaves])
        return state

    def learning_rate_at(self, count):
        """The learning rate of the update that follows ``count`` updates."""
        return self.learning_rate(count) if callable(self.learning_rate) else self.learning_rate

    def update(self, grads, state: dict, params) -> tuple:
        """One step: ``(new_params, new_state)``; nothing is modified in place."""
        param_leaves, _, treedef = flatten(params)
        grad_leaves, _, grad_treedef = flatten(grads)
        if grad_treedef != treedef:
            raise ArgumentError(
                f"{self.name}.update: gradients have structure {grad_treedef} but the parameters have {treedef}"
            )
        if not isinstance(state, dict) or set(state) != {"count", *self.slot_names}:
            raise ArgumentError(
                f"{self.name}.update: the state must be what {self.name}.init returned "
                f"(keys count, {', '.join(self.slot_names)}), got "
                f"{sorted(state) if isinstance(state, dict) else type(state).__name__}"
            )
        slot_leaves = []
        for slot in self.slot_names:
            leaves, _, slot_treedef = flatten(state[slot])
            if slot_treedef != treedef:
                raise ArgumentError(
                    f"{self.name}.update: state[{slot!r}] has structure {slot_treedef} but "
                    f"the parameters have {treedef}"
                )
            slot_leaves.append(leaves)
        lr = self.learning_rate_at(state["count"])
        t = state["count"] + 1
        new_params: list[np.ndarray] = []
        new_slots: list[list[np.ndarray]] = [[] for _ in self.slot_names]  # per slot, its new leaves
        for index, (grad, param) in enumerate(zip(grad_leaves, param_leaves)):
            new_param, slots = self.rule(grad, param, tuple(s[index] for s in slot_leaves), lr, t)
            new_params.append(_as_dtype(new_param, param))
            for collected, slot_value, old in zip(new_slots, slots, (s[index] for s in slot_leaves)):
                collected.append(_as_dtype(slot_value, old))
        new_state = {"count": t}
        for slot, leaves in zip(self.slot_names, new_slots):
            new_state[slot] = unflatten(treedef, leaves)
        return unflatten(treedef, new_params), new_state


def _as_dtype(value, like):
    """``value`` in ``like``'s dtype: NumPy scalars such as 1 - beta**t would promote float32 to float64."""
    dtype = getattr(like, "dtype", None)
    if dtype is None or getattr(value, "dtype", dtype) == dtype:
        return value
    return value.astype(dtype)


def sgd(learning_rate: LearningRate = 0.01) -> Optimizer:
    """Plain gradient descent: p -= lr g."""

    def rule(g, p, slots, lr, t):
        return p - lr * g, ()

    return Optimizer("sgd", learning_rate, (), rule)


def momentum(learning_rate: LearningRate = 0.01, beta: float = 0.9) -> Optimizer:
    """Seed 002's momentum: v = beta v + (1 - beta) g; p -= lr v.

    The velocity is an average of gradients, so this equals PyTorch's SGD
    momentum (v = beta v + g) with the learning rate scaled by 1 - beta.
    """

    def rule(g, p, slots, lr, t):
        (v,) = slots
        v = beta * v + (1 - beta) * g
        return p - lr * v, (v,)

    return Optimizer("momentum", learning_rate, ("v",), rule, {"beta": beta})


def nesterov(learning_rate: LearningRate = 0.01, beta: float = 0.9) -> Optimizer:
    """Nesterov momentum with the seed's averaged velocity: p -= lr (beta v + (1 - beta) g)
    after v = beta v + (1 - beta) g, i.e. the step is taken from the look-ahead velocity
    (the Sutskever et al. form that PyTorch and Keras use)."""

    def rule(g, p, slots, lr, t):
        (v,) = slots
        v = beta * v + (1 - beta) * g
        return p - lr * (beta * v + (1 - beta) * g), (v,)

    return Optimizer("nesterov", learning_rate, ("v",), rule, {"beta": beta})


def rmsprop(learning_rate: LearningRate = 0.001, decay: float = 0.9, eps: float = 1e-8) -> Optimizer:
    """s = decay s + (1 - decay) g^2; p -= lr g / (sqrt(s) + eps)."""

    def rule(g, p, slots, lr, t):
        (s,) = slots
        s = decay * s + (1 - decay) * (g * g)
        return p - lr * g / (np.sqrt(s) + eps), (s,)

    return Optimizer("rmsprop", learning_rate, ("s",), rule, {"decay": decay, "eps": eps})


def adagrad(learning_rate: LearningRate = 0.01, eps: float = 1e-8) -> Optimizer:
    """G += g^2; p -= lr g / (sqrt(G) + eps) (the accumulator starts at 0, as in PyTorch)."""

    def rule(g, p, slots, lr, t):
        (accumulated,) = slots
        accumulated = accumulated + g * g
        return p - lr * g / (np.sqrt(accumulated) + eps), (accumulated,)

    return Optimizer("adagrad", learning_rate, ("G",), rule, {"eps": eps})


def adam(learning_rate: LearningRate = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adam with bias correction (Kingma & Ba; seed 002, 12.6.3):
    m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr m^ / (sqrt(v^) + eps)."""
    return _adam("adam", learning_rate, beta1, beta2, eps, 0.0)


def adamw(
    learning_rate: LearningRate = 0.001,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
) -> Optimizer:
    """Adam with decoupled weight decay (Loshchilov & Hutter): p -= lr (m^ / (sqrt(v^) + eps) + wd p),
    the decay applied to the weights directly rather than added to the gradient."""
    return _adam("adamw", learning_rate, beta1, beta2, eps, weight_decay)


def _adam(name, learning_rate, beta1, beta2, eps, weight_decay) -> Optimizer:
    def rule(g, p, slots, lr, t):
        m, v = slots
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * (g * g)
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        step = m_hat / (np.sqrt(v_hat) + eps)
        if weight_decay:
            step = step + weight_decay * p
        return p - lr * step, (m, v)

    hyperparameters = {"beta1": beta1, "beta2": beta2, "eps": eps}
    if name == "adamw":
        hyperparameters["weight_decay"] = weight_decay
    return Optimizer(name, learning_rate, ("m", "v"), rule, hyperparameters)
