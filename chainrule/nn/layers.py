"""Layers as pure functions of explicit parameters, state and randomness.

Every layer has the same small interface (Haiku's and Flax's, minus the magic):

    params = layer.init(rng)                    # a dict pytree of NumPy arrays
    state = layer.init_state()                  # running statistics ({} for most layers)
    y = layer.apply(params, x)                  # inference
    y, state = layer.apply(params, x, state=state, training=True, rng=masks)

``apply`` returns the new state beside the output exactly when a state is
passed in; nothing is ever mutated, so ``apply`` can be traced and
differentiated like any NumPy function. Inputs are row-major batches
``(batch, features)``: a Dense kernel is ``(in, out)`` and ``y = x @ W + b``
(seed 002 writes the transpose, ``Z = W A + b`` with examples as columns).

Dropout needs randomness. Eagerly ``rng`` may be a ``np.random.Generator``;
inside a traced function it must be the masks themselves, drawn outside with
``model.dropout_masks(generator, x.shape)`` and passed in as an argument, so
each step gets fresh masks and the gradient is exact for the mask used (a
Generator inside a trace would bake one mask into the compiled code forever,
so it raises instead).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from chainrule.errors import ArgumentError, ShapeError, TraceError
from chainrule.frontends.pytree import flatten
from chainrule.frontends.source import location_of, user_frame
from chainrule.frontends.tracer import Tracer
from chainrule.nn import functional
from chainrule.nn import init as initializers

# What ``init`` draws parameters from: a Generator, or a seed for one (None: fresh entropy, as
# np.random.default_rng(None)).
RngLike = np.random.Generator | int | None


class Layer:
    """The interface every layer implements; subclasses write ``forward`` (and ``init`` if they have
    parameters, ``init_state`` if they keep statistics, ``output_shape`` if they change the shape)."""

    kind = "layer"  # the prefix of the layer's key in a Sequential's params: dense1, batchnorm1 ...

    def init(self, rng: RngLike = None) -> dict:
        """The parameters, drawn from ``rng`` (a ``np.random.Generator`` or an int seed: the same seed
        gives the same parameters; None draws fresh entropy). Layers without parameters return {}
        and ignore it."""
        return {}

    def init_state(self) -> dict:
        """The non-trainable state before any training step."""
        return {}

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def dropout_masks(self, rng, input_shape: tuple) -> list:
        """The masks ``apply(..., training=True, rng=masks)`` consumes for inputs of ``input_shape``."""
        return []

    def forward(self, params, x, state, training: bool, randomness: _Randomness) -> tuple:
        """``(y, new_state)``; ``state`` may be None (then new_state is None too)."""
        raise NotImplementedError

    def apply(self, params, x, *, state=None, training: bool = False, rng=None):
        """The layer's output; ``(output, new_state)`` when ``state`` is given."""
        randomness = _Randomness(rng, (params, x))
        y, new_state = self.forward(params, x, state, training, randomness)
        randomness.check_used_up()
        return y if state is None else (y, new_state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Dense(Layer):
    """``x @ W + b`` with W of shape (in_features, out_features)."""

    kind = "dense"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        init: str | Callable = "he",
        use_bias: bool = True,
        dtype=np.float64,
    ):
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.initializer = initializer_named(init)
        self.use_bias = use_bias
        self.dtype = np.dtype(dtype)

    def init(self, rng: RngLike = None) -> dict:
        params = {"W": self.initializer(np.random.default_rng(rng), (self.in_features, self.out_features), self.dtype)}
        if self.use_bias:
            params["b"] = np.zeros(self.out_features, dtype=self.dtype)
        return params

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:-1]) + (self.out_features,)

    def forward(self, params, x, state, training, randomness) -> tuple:
        if np.shape(x)[-1:] != (self.in_features,):
            raise ShapeError(
                f"{self!r} takes inputs of shape (batch, {self.in_features}), got {tuple(np.shape(x))}", user_line()
            )
        check_keys(self, params, ("W", "b") if self.use_bias else ("W",))
        y = x @ params["W"]
        return (y + params["b"] if self.use_bias else y), state

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features})"


class Activation(Layer):
    """An elementwise function: a name (relu, sigmoid, tanh, gelu, silu, elu, leaky_relu, softplus,
    softmax, linear) or any callable."""

    kind = "activation"
    _BY_NAME: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "tanh": np.tanh,
        "linear": lambda x: x,
        "identity": lambda x: x,
    }

    def __init__(self, fn: str | Callable[[Any], Any]):
        self.fn: Callable[[Any], Any]
        if callable(fn):
            self.fn, self.name = fn, getattr(fn, "__name__", "activation")
            return
        found = self._BY_NAME.get(fn) or getattr(functional, str(fn), None)
        if found is None or not callable(found):
            known = sorted(
                set(self._BY_NAME)
                | {"relu", "sigmoid", "gelu", "silu", "elu", "selu", "leaky_relu", "softplus", "softmax", "log_softmax"}
            )
            raise ArgumentError(f"unknown activation {fn!r}; known: {', '.join(known)}")
        self.fn, self.name = found, fn

    def forward(self, params, x, state, training, randomness) -> tuple:
        return self.fn(x), state

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


class PReLU(Layer):
    """x for x > 0, else alpha x, with the slope alpha learned (He et al. 2015): one slope shared by
    every feature (``features=1``, PyTorch's default), or one per feature along ``axis`` (the last
    axis by default; ``axis=1`` for NCHW channels). Slopes start at ``init`` (0.25)."""

    kind = "prelu"

    def __init__(self, features: int = 1, *, axis: int = -1, init: float = 0.25, dtype=np.float64):
        self.features, self.axis, self.initial_slope = int(features), int(axis), float(init)
        self.dtype = np.dtype(dtype)

    def init(self, rng=None) -> dict:
        return {"alpha": np.full(self.features, self.initial_slope, self.dtype)}

    def forward(self, params, x, state, training, randomness) -> tuple:
        check_keys(self, params, ("alpha",))
        alpha = params["alpha"]
        if self.features != 1:
            shape = tuple(np.shape(x))
            if not -len(shape) <= self.axis < len(shape) or shape[self.axis] != self.features:
                raise ShapeError(
                    f"{self!r} has one slope per feature along axis {self.axis}, got inputs of shape {shape}",
                    user_line(),
                )
            alpha = np.reshape(alpha, (-1,) + (1,) * (len(shape) - 1 - self.axis % len(shape)))
        # the gradient at 0 is alpha's branch, as in PyTorch
        return np.where(x > 0, x, alpha * x), state

    def __repr__(self) -> str:
        return f"PReLU({self.features})"


class BatchNorm(Layer):
    """Batch normalization over every axis but the last (seed 002, 12.6.4 and 12.10.2).

    Training: y = gamma (x - mean) / sqrt(var + eps) + beta with the batch's
    mean and (biased) variance, and the new running statistics
    ``momentum * running + (1 - momentum) * batch`` returned as state.
    Inference: the running statistics instead of the batch's.
    """

    kind = "batchnorm"

    def __init__(self, features: int, *, momentum: float = 0.9, eps: float = 1e-5, dtype=np.float64):
        self.features, self.momentum, self.eps = int(features), momentum, eps
        self.dtype = np.dtype(dtype)

    def init(self, rng=None) -> dict:
        return {"gamma": np.ones(self.features, self.dtype), "beta": np.zeros(self.features, self.dtype)}

    def init_state(self) -> dict:
        return {"mean": np.zeros(self.features, self.dtype), "var": np.ones(self.features, self.dtype)}

    def forward(self, params, x, state, training, randomness) -> tuple:
        if np.shape(x)[-1:] != (self.features,):
            raise ShapeError(
                f"{self!r} normalizes {self.features} features, got inputs of shape {tuple(np.shape(x))}", user_line()
            )
        check_keys(self, params, ("gamma", "beta"))
        if training:
            axes = tuple(range(len(np.shape(x)) - 1))
            mean = np.mean(x, axis=axes)
            centered = x - mean
            var = np.mean(centered * centered, axis=axes)
            if state is not None:
                state = {
                    "mean": self.momentum * state["mean"] + (1 - self.momentum) * mean,
                    "var": self.momentum * state["var"] + (1 - self.momentum) * var,
                }
        else:
            if state is None:
                raise ArgumentError(
                    f"{self!r} in inference mode normalizes with its running statistics: "
                    "pass state=... (from init_state() or training)",
                    user_line(),
                )
            mean, var = state["mean"], state["var"]
            centered = x - mean
        return params["gamma"] * (centered / np.sqrt(var + self.eps)) + params["beta"], state

    def __repr__(self) -> str:
        return f"BatchNorm({self.features})"


class Dropout(Layer):
    """Inverted dropout: in training, each element is kept with probability 1 - rate and scaled by
    1 / (1 - rate), so inference is the identity (seed 002, 12.10.1: ``A * D / keep_prob``)."""

    kind = "dropout"

    def __init__(self, rate: float):
        if not 0.0 <= rate < 1.0:
            raise ArgumentError(f"Dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)

    def dropout_masks(self, rng, input_shape: tuple) -> list:
        return [draw_mask(np.random.default_rng(rng), input_shape, self.rate)] if self.rate else []

    def forward(self, params, x, state, training, randomness) -> tuple:
        if not training or self.rate == 0.0:
            return x, state
        return x * randomness.mask(self, np.shape(x)), state

    def __repr__(self) -> str:
        return f"Dropout({self.rate})"


def draw_mask(rng: np.random.Generator, shape: tuple, rate: float, dtype=np.float64) -> np.ndarray:
    """1 / (1 - rate) where an element is kept (probability 1 - rate), else 0."""
    return (rng.random(shape) >= rate).astype(dtype) / (1.0 - rate)


class Sequential(Layer):
    """Layers applied in order: ``Sequential([Dense(2, 16), Activation("relu"), ...])``, or a
    multilayer perceptron from its widths, seed 002's ``DeepNeuralNetwork``:

        >>> from chainrule import nn
        >>> model = nn.Sequential([2, 16, 8, 1], activations=["relu", "relu", "sigmoid"])
        >>> params = model.init(42)
        >>> {name: {k: v.shape for k, v in p.items()} for name, p in params.items()}
        {'dense1': {'W': (2, 16), 'b': (16,)}, 'dense2': {'W': (16, 8), 'b': (8,)}, 'dense3': {'W': (8, 1), 'b': (1,)}}

    From widths, ReLU layers get He initialization and the others Xavier, as
    the seed does; ``activations`` defaults to ReLU hidden layers and a sigmoid
    output. Parameters and state are dicts keyed by kind and number
    (``dense1``, ``batchnorm1``), holding only layers that have any.
    """

    kind = "sequential"

    def __init__(self, layers: Sequence[Layer | int], activations: Sequence | None = None):
        if layers and all(isinstance(width, (int, np.integer)) for width in layers):
            layers = _perceptron(list(layers), activations)
        elif activations is not None:
            raise ArgumentError("activations= goes with a list of layer widths, not of layers")
        self.layers = [layer for layer in layers if isinstance(layer, Layer)]
        if len(self.layers) != len(layers) or not layers:
            raise ArgumentError(f"Sequential takes layers or layer widths (ints), got {list(layers)!r}")
        counts: dict[str, int] = {}
        self.names: list[str] = []
        for layer in self.layers:
            counts[layer.kind] = counts.get(layer.kind, 0) + 1
            self.names.append(f"{layer.kind}{counts[layer.kind]}")

    def init(self, rng: RngLike = None) -> dict:
        generator = np.random.default_rng(rng)
        params = {}
        for name, layer in zip(self.names, self.layers):
            layer_params = layer.init(generator)
            if layer_params:
                params[name] = layer_params
        return params

    def init_state(self) -> dict:
        return {name: s for name, layer in zip(self.names, self.layers) if (s := layer.init_state())}

    def output_shape(self, input_shape: tuple) -> tuple:
        for layer in self.layers:
            input_shape = layer.output_shape(input_shape)
        return input_shape

    def dropout_masks(self, rng, input_shape: tuple) -> list:
        generator = np.random.default_rng(rng)
        masks: list[np.ndarray] = []
        shape = tuple(input_shape)
        for layer in self.layers:
            masks.extend(layer.dropout_masks(generator, shape))
            shape = layer.output_shape(shape)
        return masks

    def forward(self, params, x, state, training, randomness) -> tuple:
        new_state: dict[str, Any] | None = None if state is None else {}
        for name, layer in zip(self.names, self.layers):
            layer_state = None if state is None else state.get(name, {})
            x, layer_state = layer.forward(params.get(name, {}), x, layer_state, training, randomness)
            if layer_state and new_state is not None:  # without a state in, layers return none
                new_state[name] = layer_state
        return x, new_state

    def __repr__(self) -> str:
        inner = ",\n".join(f"    {layer!r}" for layer in self.layers)
        return f"Sequential([\n{inner},\n])"


def _perceptron(widths: list, activations) -> list:
    if len(widths) < 2:
        raise ArgumentError(f"Sequential from widths needs at least [inputs, outputs], got {widths}")
    count = len(widths) - 1
    if activations is None:
        activations = ["relu"] * (count - 1) + ["sigmoid"]
    if len(activations) != count:
        raise ArgumentError(f"{count} layers ({widths}) but {len(activations)} activations {list(activations)}")
    layers: list = []
    for fan_in, fan_out, activation in zip(widths, widths[1:], activations):
        layers.append(Dense(fan_in, fan_out, init="he" if activation == "relu" else "xavier"))
        if activation not in (None, "linear", "identity"):
            layers.append(Activation(activation))
    return layers


def initializer_named(init) -> Callable:
    if callable(init):
        return init
    if init not in initializers.BY_NAME:
        raise ArgumentError(f"unknown initializer {init!r}; known: {', '.join(sorted(initializers.BY_NAME))}")
    return initializers.BY_NAME[init]


class _Randomness:
    """Where Dropout layers get their masks: drawn from a Generator, or taken in order from a list."""

    def __init__(self, rng, inputs):
        self.generator = self.masks = None
        self.inputs = inputs  # (params, x): traced when any of their leaves is
        if isinstance(rng, np.random.Generator):
            self.generator = rng
        elif rng is not None:
            self.masks = list(rng) if isinstance(rng, (list, tuple)) else [rng]
            self.used = 0

    def mask(self, layer: Dropout, shape: tuple):
        if self.masks is not None:
            if self.used == len(self.masks):
                raise ArgumentError(
                    f"{layer!r} needs a mask but the {len(self.masks)} given are used up; "
                    "draw them with model.dropout_masks(rng, x.shape)",
                    user_line(),
                )
            mask = self.masks[self.used]
            self.used += 1
            if tuple(np.shape(mask)) != tuple(shape):
                raise ShapeError(
                    f"{layer!r} got a mask of shape {tuple(np.shape(mask))} for inputs of shape "
                    f"{tuple(shape)}; draw masks with model.dropout_masks(rng, x.shape)",
                    user_line(),
                )
            return mask
        if self.generator is None:
            raise ArgumentError(
                f"{layer!r} in training mode needs rng=: a np.random.Generator, or the masks "
                "from model.dropout_masks(generator, x.shape)",
                user_line(),
            )
        if any(isinstance(leaf, Tracer) for leaf in flatten(self.inputs)[0]):
            raise TraceError(
                f"{layer!r} was given a np.random.Generator inside a traced function: its mask "
                "would be drawn once and compiled in as a constant. Draw the masks outside with "
                "model.dropout_masks(generator, x.shape) and pass them in as an argument",
                user_line(),
            )
        return draw_mask(self.generator, shape, layer.rate)

    def check_used_up(self) -> None:
        if self.masks is not None and self.used != len(self.masks):
            raise ArgumentError(f"{len(self.masks)} dropout masks given but the model used {self.used}", user_line())


def check_keys(layer: Layer, params, expected: tuple) -> None:
    if not isinstance(params, dict) or set(params) != set(expected):
        found = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ArgumentError(
            f"{layer!r} expects parameters {{{', '.join(expected)}}} (from its init), got {found}", user_line()
        )


def user_line():
    """The user's line that applied the model, for error messages."""
    return location_of(user_frame(2))


def l2_penalty(params, strength: float):
    """strength / 2 * the sum of squared weights of every matrix (ndim >= 2) in ``params``;
    biases and batch-norm scales are not penalized (seed 002, 12.10.1 sums ||W||^2 only).
    With seed 002's lambda and m examples, strength = lambda / m."""
    weights = [leaf for leaf in flatten(params)[0] if len(np.shape(leaf)) >= 2]
    return 0.5 * strength * sum(np.sum(w * w) for w in weights)
