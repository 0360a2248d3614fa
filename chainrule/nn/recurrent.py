"""Recurrent cells (``RNNCell``, ``LSTMCell``, ``GRUCell``) and the layers that run them over a
sequence (``RNN``, ``LSTM``, ``GRU``), built on ``scan``.

A cell is one time step: ``carry, h = cell.step(params, carry, gate_inputs)``. The layer first
computes every step's input projection ``x_t W_x + b`` as one matmul over the whole sequence (BLAS
does the work that does not depend on the recurrence), then ``scan`` runs the cell along the time
axis. ``scan`` traces the step once, so a sequence of 1,000 steps compiles as fast as one of ten,
and reverse mode differentiates the loop as a loop (backpropagation through time).

Inputs are batch-first, ``(batch, time, features)``; the output is every step's hidden state
``(batch, time, hidden)``, or the last one ``(batch, hidden)`` with ``return_sequences=False``.
Weights are row-major (``x @ W``) with PyTorch's gate order, so PyTorch's weights copy over as
transposes: LSTM gates are (input, forget, cell, output), GRU gates (reset, update, new).

    >>> import numpy as np
    >>> from chainrule import nn
    >>> lstm = nn.LSTM(3, 5)
    >>> lstm.apply(lstm.init(0), np.zeros((2, 7, 3))).shape
    (2, 7, 5)
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.errors import ArgumentError, ShapeError
from chainrule.nn import functional
from chainrule.nn.layers import Layer, RngLike, check_keys, user_line
from chainrule.transforms.control_flow import scan


class RNNCell:
    """Elman's cell, h_t = tanh(x_t W_x + h_{t-1} W_h + b) (PyTorch's ``nn.RNNCell``, with its two
    biases summed into one), and the base of the other cells: ``gates`` blocks of ``hidden`` columns.

    ``cell.apply(params, carry, x_t)`` is one step on raw inputs; ``step`` takes the input already
    projected (``x_t W_x + b``), which the layers compute for all steps at once.
    """

    gates = 1
    name = "RNNCell"

    def __init__(self, input_size: int, hidden_size: int, *, dtype=np.float64):
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.dtype = np.dtype(dtype)

    def param_names(self) -> tuple:
        return ("W_x", "W_h", "b")

    def init(self, rng: RngLike = None) -> dict:
        """U(-1/sqrt(hidden), 1/sqrt(hidden)) for every weight and bias, PyTorch's initialization."""
        generator = np.random.default_rng(rng)
        limit = 1.0 / math.sqrt(self.hidden_size)
        width = self.gates * self.hidden_size
        shapes = {"W_x": (self.input_size, width), "W_h": (self.hidden_size, width), "b": (width,), "b_h": (width,)}
        return {name: generator.uniform(-limit, limit, shapes[name]).astype(self.dtype) for name in self.param_names()}

    def initial_carry(self, batch: int):
        return np.zeros((batch, self.hidden_size), self.dtype)

    def apply(self, params, carry, x) -> tuple:
        """``(new carry, h)`` after one step on inputs ``x`` of shape (batch, input_size)."""
        return self.step(params, carry, x @ params["W_x"] + params["b"])

    def step(self, params, carry, projected_input) -> tuple:
        """h = tanh(x W_x + b + h W_h): the input part comes in projected."""
        h = np.tanh(projected_input + carry @ params["W_h"])
        return h, h

    def __repr__(self) -> str:
        return f"{self.name}({self.input_size}, {self.hidden_size})"


class LSTMCell(RNNCell):
    """Hochreiter & Schmidhuber's cell: i, f, o = sigmoid(...), g = tanh(...) from
    x_t W_x + h_{t-1} W_h + b split in four; c_t = f c_{t-1} + i g; h_t = o tanh(c_t).
    The carry is (h, c)."""

    gates = 4
    name = "LSTMCell"

    def initial_carry(self, batch: int):
        return (super().initial_carry(batch), super().initial_carry(batch))

    def step(self, params, carry, projected_input) -> tuple:
        h, c = carry
        z = projected_input + h @ params["W_h"]
        size = self.hidden_size
        input_gate = functional.sigmoid(z[:, :size])
        forget_gate = functional.sigmoid(z[:, size : 2 * size])
        candidate = np.tanh(z[:, 2 * size : 3 * size])
        output_gate = functional.sigmoid(z[:, 3 * size :])
        c = forget_gate * c + input_gate * candidate
        h = output_gate * np.tanh(c)
        return (h, c), h


class GRUCell(RNNCell):
    """Cho et al.'s cell as PyTorch writes it: r, z = sigmoid(x W_x + b + h W_h + b_h) (first two
    blocks), n = tanh(x W_xn + b_n + r (h W_hn + b_hn)), h_t = (1 - z) n + z h_{t-1}. The
    hidden-side bias ``b_h`` is separate because the reset gate multiplies it."""

    gates = 3
    name = "GRUCell"

    def param_names(self) -> tuple:
        return ("W_x", "W_h", "b", "b_h")

    def step(self, params, carry, projected_input) -> tuple:
        size = self.hidden_size
        hidden_part = carry @ params["W_h"] + params["b_h"]
        reset = functional.sigmoid(projected_input[:, :size] + hidden_part[:, :size])
        update = functional.sigmoid(projected_input[:, size : 2 * size] + hidden_part[:, size : 2 * size])
        new = np.tanh(projected_input[:, 2 * size :] + reset * hidden_part[:, 2 * size :])
        h = (1.0 - update) * new + update * carry
        return h, h


class Recurrent(Layer):
    """A cell run over the time axis of (batch, time, features) inputs with ``scan``."""

    kind = "recurrent"

    def __init__(self, cell: RNNCell, *, return_sequences: bool = True):
        if not isinstance(cell, RNNCell):
            raise ArgumentError(f"Recurrent takes an RNNCell, LSTMCell or GRUCell, got {cell!r}")
        self.cell, self.return_sequences = cell, return_sequences

    def init(self, rng: RngLike = None) -> dict:
        return self.cell.init(rng)

    def output_shape(self, input_shape: tuple) -> tuple:
        batch, time = input_shape[:2]
        return (batch, time, self.cell.hidden_size) if self.return_sequences else (batch, self.cell.hidden_size)

    def forward(self, params, x, state, training, randomness) -> tuple:
        shape = tuple(np.shape(x))
        if len(shape) != 3 or shape[2] != self.cell.input_size:
            raise ShapeError(
                f"{self!r} takes (batch, time, {self.cell.input_size}) sequences, got inputs of shape {shape}",
                user_line(),
            )
        check_keys(self, params, self.cell.param_names())
        # every step's input projection at once: (batch, time, in) @ (in, gates * hidden)
        projected = np.moveaxis(x @ params["W_x"] + params["b"], 1, 0)
        _, hidden_states = scan(
            lambda carry, step_input: self.cell.step(params, carry, step_input),
            self.cell.initial_carry(shape[0]),
            projected,
        )
        y = np.moveaxis(hidden_states, 0, 1) if self.return_sequences else hidden_states[-1]
        return y, state

    def __repr__(self) -> str:
        name = self.cell.name.removesuffix("Cell")
        return f"{name}({self.cell.input_size}, {self.cell.hidden_size})"


class RNN(Recurrent):
    """An Elman RNN layer: ``RNNCell`` over the sequence."""

    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, *, return_sequences: bool = True, dtype=np.float64):
        super().__init__(RNNCell(input_size, hidden_size, dtype=dtype), return_sequences=return_sequences)


class LSTM(Recurrent):
    """An LSTM layer: ``LSTMCell`` over the sequence."""

    kind = "lstm"

    def __init__(self, input_size: int, hidden_size: int, *, return_sequences: bool = True, dtype=np.float64):
        super().__init__(LSTMCell(input_size, hidden_size, dtype=dtype), return_sequences=return_sequences)


class GRU(Recurrent):
    """A GRU layer: ``GRUCell`` over the sequence."""

    kind = "gru"

    def __init__(self, input_size: int, hidden_size: int, *, return_sequences: bool = True, dtype=np.float64):
        super().__init__(GRUCell(input_size, hidden_size, dtype=dtype), return_sequences=return_sequences)
