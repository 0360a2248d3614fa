"""Activations and losses NumPy lacks. Each works on traced values and, eagerly, on arrays.

Primitives (sigmoid, relu, softplus, erf) are ops of the table: traced they
become one node, eagerly they run the op's own NumPy lowering. The rest are
composites written in NumPy, numerically stable the way PyTorch's are.
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.errors import ShapeError
from chainrule.frontends.tracer import Tracer, operation, stop_gradient
from chainrule.ir.ops import OPS

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_LOG_FLOOR = math.exp(-100.0)


def _primitive(op_name: str, doc: str):
    def function(x):
        if isinstance(x, Tracer):
            return operation(op_name, x)
        return OPS[op_name].eager(np.asarray(x))

    function.__name__ = op_name
    function.__doc__ = doc
    return function


sigmoid = _primitive("sigmoid", "1 / (1 + exp(-x)), stable for large |x|; sigmoid' = y (1 - y).")
relu = _primitive("relu", "max(x, 0); relu'(0) = 0.")
softplus = _primitive("softplus", "log(1 + exp(x)) without overflow; softplus' = sigmoid.")
erf = _primitive("erf", "The error function.")


def leaky_relu(x, negative_slope: float = 0.01):
    """x for x > 0, else negative_slope * x (the gradient at 0 is negative_slope, as in PyTorch)."""
    return np.where(x > 0, x, negative_slope * x)


def elu(x, alpha: float = 1.0):
    """x for x > 0, else alpha * (exp(x) - 1)."""
    # expm1 of min(x, 0): the unused branch never overflows, so its gradient is never inf * 0
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def selu(x):
    """Scaled ELU with the self-normalizing constants of Klambauer et al. (2017)."""
    return _SELU_SCALE * elu(x, _SELU_ALPHA)


def gelu(x, approximate: str = "none"):
    """x * Phi(x): the erf form, or ``approximate="tanh"`` for the tanh form."""
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))
    if approximate != "none":
        raise ValueError(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def silu(x):
    """x * sigmoid(x), also known as swish."""
    return x * sigmoid(x)


swish = silu


def logsumexp(x, axis=None, keepdims: bool = False):
    """log(sum(exp(x))) computed as m + log(sum(exp(x - m))) with m = max(x): never overflows."""
    shift = stop_gradient(np.max(x, axis=axis, keepdims=True))
    result = np.log(np.sum(np.exp(x - shift), axis=axis, keepdims=True)) + shift
    return result if keepdims else np.squeeze(result, axis=axis)


def softmax(x, axis: int = -1):
    """exp(x) / sum(exp(x)) along ``axis``, shifted by the max so it never overflows."""
    exps = np.exp(x - stop_gradient(np.max(x, axis=axis, keepdims=True)))
    return exps / np.sum(exps, axis=axis, keepdims=True)


def log_softmax(x, axis: int = -1):
    """x - logsumexp(x): the log of softmax without its underflow."""
    # (x - m) - log(sum(exp(x - m))) is exact at large |x|; x - (m + log(...)) rounds m away
    shifted = x - stop_gradient(np.max(x, axis=axis, keepdims=True))
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def mse(prediction, target):
    """Mean squared error, mean((prediction - target)**2)."""
    difference = prediction - target
    return np.mean(difference * difference)


def binary_cross_entropy(prediction, target, *, from_logits: bool = False):
    """Mean of -(t log p + (1 - t) log(1 - p)).

    With ``from_logits=True``, ``prediction`` is the logit z and the loss is
    computed as mean(softplus(z) - t z), which is exact for any z. With
    probabilities, each log is clamped at -100, as PyTorch does, so p = 0 or 1
    gives a large finite loss rather than inf.
    """
    if from_logits:
        return np.mean(softplus(prediction) - target * prediction)
    # log(max(p, e**-100)) rather than max(log p, -100): at p = 0 the clamp then stops the
    # gradient before log's rule divides by zero, so a perfect prediction has a finite gradient.
    log_p = np.log(np.maximum(prediction, _LOG_FLOOR))
    log_not_p = np.log(np.maximum(1.0 - prediction, _LOG_FLOOR))
    return -np.mean(target * log_p + (1.0 - target) * log_not_p)


def cross_entropy(logits, target, axis: int = -1):
    """Softmax cross-entropy, averaged over samples.

    ``target`` is either integer class indices (the shape of ``logits``
    without ``axis``) or probabilities / one-hot rows (the shape of ``logits``).
    """
    log_probs = log_softmax(logits, axis=axis)
    target_shape = np.shape(target)
    if target_shape == np.shape(logits):
        return -np.sum(target * log_probs) / (np.size(log_probs) // np.shape(log_probs)[axis])
    if np.dtype(target.dtype if hasattr(target, "dtype") else np.asarray(target).dtype).kind not in "iu":
        raise ShapeError(
            f"cross_entropy target of shape {list(target_shape)} must be integer class indices "
            f"(logits have shape {list(np.shape(logits))})"
        )
    classes_last = np.moveaxis(log_probs, axis, -1) if axis not in (-1, np.ndim(logits) - 1) else log_probs
    rows = np.reshape(classes_last, (-1, np.shape(classes_last)[-1]))
    labels = np.reshape(target, (-1,))
    if np.shape(rows)[0] != np.shape(labels)[0]:
        raise ShapeError(
            f"cross_entropy: {np.shape(labels)[0]} labels for {np.shape(rows)[0]} rows of logits "
            f"(logits {list(np.shape(logits))}, target {list(target_shape)})"
        )
    picked = rows[np.arange(np.shape(rows)[0]), labels]
    return -np.mean(picked)
