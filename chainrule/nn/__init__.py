"""Neural-network building blocks for traced and eager use.

Activations and losses (``chainrule.nn.sigmoid(x)``, ``cross_entropy``, ...),
layers with explicit parameters and state (``Sequential``, ``Dense``,
``BatchNorm``, ``Dropout``, ``Activation``, ``Conv2D``, ...), the functions
``conv2d`` and ``max_pool2d`` (as ``torch.nn.functional``), initializers (``nn.init``) and
``l2_penalty``. Training lives in ``chainrule.optim`` and ``chainrule.train``.
"""

from chainrule.nn import init
from chainrule.nn.attention import MultiHeadAttention
from chainrule.nn.conv import AvgPool2D, Conv2D, Flatten, MaxPool2D, conv2d, max_pool2d
from chainrule.nn.embedding import Embedding
from chainrule.nn.functional import (
    binary_cross_entropy,
    cross_entropy,
    elu,
    erf,
    gelu,
    leaky_relu,
    log_softmax,
    logsumexp,
    mse,
    relu,
    selu,
    sigmoid,
    silu,
    softmax,
    softplus,
    swish,
)
from chainrule.nn.layers import (
    Activation,
    BatchNorm,
    Dense,
    Dropout,
    Layer,
    PReLU,
    Sequential,
    draw_mask,
    l2_penalty,
)
from chainrule.nn.normalization import LayerNorm
from chainrule.nn.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, Recurrent, RNNCell

# the activations and losses (tests/test_nn.py covers each)
FUNCTIONS = (
    "binary_cross_entropy",
    "cross_entropy",
    "elu",
    "erf",
    "gelu",
    "leaky_relu",
    "log_softmax",
    "logsumexp",
    "mse",
    "relu",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "swish",
)

__all__ = [
    "FUNCTIONS",
    "GRU",
    "LSTM",
    "RNN",
    "Activation",
    "AvgPool2D",
    "BatchNorm",
    "Conv2D",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "GRUCell",
    "LSTMCell",
    "Layer",
    "LayerNorm",
    "MaxPool2D",
    "MultiHeadAttention",
    "PReLU",
    "RNNCell",
    "Recurrent",
    "Sequential",
    "binary_cross_entropy",
    "conv2d",
    "cross_entropy",
    "draw_mask",
    "elu",
    "erf",
    "gelu",
    "init",
    "l2_penalty",
    "leaky_relu",
    "log_softmax",
    "logsumexp",
    "max_pool2d",
    "mse",
    "relu",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "swish",
]
