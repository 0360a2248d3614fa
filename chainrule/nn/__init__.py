"""Activations and losses for traced and eager use: ``chainrule.nn.sigmoid(x)``."""

from chainrule.nn.functional import (binary_cross_entropy, cross_entropy, elu, erf, gelu, leaky_relu,
                                     log_softmax, logsumexp, mse, relu, selu, sigmoid, silu, softmax,
                                     softplus, swish)

__all__ = ["binary_cross_entropy", "cross_entropy", "elu", "erf", "gelu", "leaky_relu", "log_softmax",
           "logsumexp", "mse", "relu", "selu", "sigmoid", "silu", "softmax", "softplus", "swish"]
