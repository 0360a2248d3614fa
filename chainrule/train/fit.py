"""The training loop: ``fit`` (seed 002, 12.9's flowchart: shuffle, mini-batches, forward,
backward, update, log, validate, stop early).

    >>> import numpy as np
    >>> from chainrule import nn, optim
    >>> from chainrule.train import fit
    >>> x = np.random.default_rng(0).standard_normal((64, 3))
    >>> y = x @ np.array([[1.0], [-2.0], [0.5]])
    >>> model = nn.Dense(3, 1)
    >>> result = fit(model, model.init(0), x, y, loss="mse", optimizer=optim.adam(0.1),
    ...              epochs=100, batch_size=16, progress=False)
    >>> np.round(result.params["W"].ravel(), 3)
    array([ 1. , -2. ,  0.5])
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import chainrule.transforms.compiled as cr
from chainrule.errors import ArgumentError
from chainrule.nn import functional
from chainrule.nn.layers import Layer, l2_penalty
from chainrule.optim.optimizers import Optimizer
from chainrule.optim.train_step import train_step

LOSSES = {
    "mse": functional.mse,
    "bce": functional.binary_cross_entropy,
    "binary_cross_entropy": functional.binary_cross_entropy,
    "bce_logits": lambda logits, target: functional.binary_cross_entropy(logits, target, from_logits=True),
    "cross_entropy": functional.cross_entropy,
}


@dataclass
class EarlyStopping:
    """Stop when the monitored loss has not improved by more than ``min_delta`` for ``patience``
    epochs; with ``restore_best``, ``fit`` returns the parameters of the best epoch.
    ``monitor`` is "val_loss", "loss", or "auto" (val_loss when there is validation data)."""

    patience: int = 10
    min_delta: float = 0.0
    restore_best: bool = True
    monitor: str = "auto"


@dataclass
class FitResult:
    """What ``fit`` returns: the trained parameters and state, the optimizer state, the per-epoch
    history (``loss``, ``lr``, and ``val_loss`` with validation data), and where early stopping
    found the best epoch and stopped (None without early stopping or when it never triggered)."""

    params: Any
    state: Any
    opt_state: Any
    history: dict = field(default_factory=dict)
    best_epoch: int | None = None
    stopped_epoch: int | None = None

    def plot(self, path=None, *, title: str = "Training history"):
        """The loss per epoch (and the validation loss, and the learning rate on a second axis when it
        changes), as a matplotlib Figure; saved as ``path`` (a PNG, say) when given. Needs matplotlib
        (``pip install chainrule[plot]``)."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as error:
            raise ImportError("FitResult.plot needs matplotlib: pip install 'chainrule[plot]'") from error
        figure, axis = plt.subplots(figsize=(7, 4.5))
        epochs = np.arange(1, len(self.history.get("loss", [])) + 1)
        for key, color in (("loss", "#2563eb"), ("val_loss", "#f97316")):
            if self.history.get(key):
                axis.plot(epochs, self.history[key], label=key, color=color, linewidth=2)
        if all(value > 0 for key in ("loss", "val_loss") for value in self.history.get(key, [])):
            axis.set_yscale("log")
        if self.best_epoch is not None:
            axis.axvline(
                self.best_epoch + 1, color="#64748b", linestyle="--", label=f"best epoch {self.best_epoch + 1}"
            )
        axis.set(xlabel="epoch", ylabel="loss", title=title)
        axis.grid(True, alpha=0.3)
        rates = self.history.get("lr", [])
        if rates and max(rates) > min(rates):
            second = axis.twinx()
            second.plot(epochs, rates, color="#059669", linestyle=":", label="lr")
            second.set_ylabel("learning rate")
            second.legend(loc="upper center")
        axis.legend()
        figure.tight_layout()
        if path is not None:
            figure.savefig(path, dpi=100)
        return figure


class _FunctionModel(Layer):
    """A plain ``predict(params, x)`` function, seen as a layer without state or dropout."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def forward(self, params, x, state, training, randomness) -> tuple:
        return self.fn(params, x), state


def fit(
    model: Layer | Callable,
    params,
    x,
    y,
    *,
    loss: str | Callable,
    optimizer: Optimizer,
    epochs: int = 10,
    batch_size: int = 32,
    state=None,
    l2: float = 0.0,
    validation_data=None,
    early_stopping: EarlyStopping | None = None,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    shuffle: bool = True,
    seed: int = 0,
    progress: bool = True,
    fused: bool = True,
    backend: str = "numpy",
    client: Any = None,
    transport: str | None = None,
) -> FitResult:
    """Train ``params`` of ``model`` (a layer, or a function ``predict(params, x)``) on ``(x, y)``.

    Samples run along axis 0. Each epoch shuffles them with a Generator seeded
    by ``seed`` (which also draws the dropout masks), then runs one compiled
    ``optim.train_step`` per mini-batch (the last one may be smaller). ``loss``
    is ``loss(prediction, target)`` or one of "mse", "bce", "bce_logits",
    "cross_entropy"; ``l2`` adds ``nn.l2_penalty(params, l2)``. The progress bar
    is tqdm's when tqdm is installed, else one line of text on stderr. ``backend``
    ("numpy" or "llvm") compiles the step and the evaluation.

    A Dask ``client`` computes each step's gradient data-parallel on its workers, equal to this
    process's to rounding (``chainrule.distributed.data_parallel_step``; ``transport="float16"``).
    """
    layer = model if isinstance(model, Layer) else _FunctionModel(model)
    loss_of = _loss_function(loss)
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y) or len(x) == 0:
        raise ArgumentError(f"fit: {len(x)} inputs but {len(y)} targets")
    if batch_size < 1 or epochs < 0:
        raise ArgumentError(f"fit needs batch_size >= 1 and epochs >= 0, got {batch_size} and {epochs}")
    state = layer.init_state() if state is None else state
    if validation_data is not None:
        validation_data = tuple(np.asarray(part) for part in validation_data)
    objective, evaluation = _objectives(layer, loss_of, l2)
    step = _step(objective, optimizer, client, transport, clip_norm, clip_value, fused, backend)
    evaluate = cr.jit(evaluation, backend=backend)
    stopper = _stopper(early_stopping, validation_data)
    rng = np.random.default_rng(seed)
    loop = _EpochLoop(step, layer, optimizer, evaluate, stopper, validation_data, shuffle, batch_size, rng)
    params, opt_state, state, history, stopped_epoch = loop.run(params, state, x, y, epochs, progress)
    best = stopper.best if stopper is not None else None
    best_epoch = best[1] if best is not None else None
    if best is not None and early_stopping is not None and early_stopping.restore_best:
        params, state = best[2], best[3]
    return FitResult(params, state, opt_state, history, best_epoch, stopped_epoch)


@dataclasses.dataclass
class _EpochLoop:
    """``fit``'s epochs: one compiled step per mini-batch, the history, the progress bar, early stopping."""

    step: Callable
    layer: Layer
    optimizer: Optimizer
    evaluate: Callable
    stopper: _EarlyStopper | None
    validation_data: tuple | None
    shuffle: bool
    batch_size: int
    rng: np.random.Generator

    def run(self, params, state, x, y, epochs: int, progress: bool) -> tuple:
        """(params, optimizer state, model state, history, the epoch it stopped at or None)."""
        opt_state = self.optimizer.init(params)
        history: dict[str, list[float]] = {"loss": [], "lr": []}
        if self.validation_data is not None:
            history["val_loss"] = []
        stopped_epoch = None
        bar = _progress_bar(epochs, progress)
        try:
            for epoch in range(epochs):
                order = self.rng.permutation(len(x)) if self.shuffle else np.arange(len(x))
                mean_loss, params, opt_state, state = _train_epoch(
                    self.step, self.layer, params, opt_state, state, x, y, order, self.batch_size, self.rng
                )
                history["loss"].append(mean_loss)
                history["lr"].append(float(self.optimizer.learning_rate_at(opt_state["count"] - 1)))
                if self.validation_data is not None:
                    history["val_loss"].append(float(self.evaluate(params, state, *self.validation_data)))
                bar.update({key: values[-1] for key, values in history.items()})
                if self.stopper is not None and self.stopper.should_stop(history, epoch, params, state):
                    stopped_epoch = epoch
                    break
        finally:
            bar.close()
        return params, opt_state, state, history, stopped_epoch


def _step(objective, optimizer, client, transport, clip_norm, clip_value, fused, backend) -> Callable[..., Any]:
    """The compiled train step, or with a Dask ``client`` the data-parallel one."""
    if client is None:
        return train_step(
            objective, optimizer, has_aux=True, clip_norm=clip_norm, clip_value=clip_value, fused=fused, backend=backend
        )
    from chainrule.distributed import data_parallel_step  # imports Dask

    return data_parallel_step(
        objective, optimizer, client, clip_norm=clip_norm, clip_value=clip_value, transport=transport, backend=backend
    )


def _objectives(
    layer: Layer, loss_of: Callable[[Any, Any], Any], l2: float
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The training objective ``(params, state, masks, x, y) -> (loss, new state)`` and the evaluation
    ``(params, state, x, y) -> loss``, both with the L2 penalty when ``l2`` is set."""

    def objective(params: Any, model_state: Any, masks: Any, x_batch: Any, y_batch: Any) -> tuple[Any, Any]:
        prediction, new_state = layer.apply(params, x_batch, state=model_state, training=True, rng=masks)
        value = loss_of(prediction, y_batch)
        return (value + l2_penalty(params, l2) if l2 else value), new_state

    def evaluation(params: Any, model_state: Any, x_eval: Any, y_eval: Any) -> Any:
        value = loss_of(layer.apply(params, x_eval, state=model_state)[0], y_eval)
        return value + l2_penalty(params, l2) if l2 else value

    return objective, evaluation


def _train_epoch(
    step: Callable[..., Any],
    layer: Layer,
    params: Any,
    opt_state: Any,
    state: Any,
    x: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
) -> tuple[float, Any, Any, Any]:
    """One step per mini-batch of the samples in ``order``: (mean loss, params, optimizer state, state)."""
    total = 0.0
    for start in range(0, len(x), batch_size):
        batch = order[start : start + batch_size]
        x_batch = x[batch]
        masks = layer.dropout_masks(rng, x_batch.shape)
        value, params, opt_state, state = step(params, opt_state, state, masks, x_batch, y[batch])
        total += float(value) * len(batch)
    return total / len(x), params, opt_state, state


def _loss_function(loss) -> Callable:
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ArgumentError(
            f"unknown loss {loss!r}; pass a function loss(prediction, target) or one of {', '.join(LOSSES)}"
        )
    return LOSSES[loss]


def _stopper(early_stopping: EarlyStopping | None, validation_data: Any) -> _EarlyStopper | None:
    """Early stopping's bookkeeping for this fit, watching the loss ``early_stopping.monitor`` names."""
    if early_stopping is None:
        return None
    monitor = early_stopping.monitor
    if monitor == "auto":
        return _EarlyStopper(early_stopping, "val_loss" if validation_data is not None else "loss")
    if monitor not in ("loss", "val_loss"):
        raise ArgumentError(f"EarlyStopping monitors 'loss', 'val_loss' or 'auto', got {monitor!r}")
    if monitor == "val_loss" and validation_data is None:
        raise ArgumentError("EarlyStopping(monitor='val_loss') needs fit(..., validation_data=(x, y))")
    return _EarlyStopper(early_stopping, monitor)


class _EarlyStopper:
    """The best value of the monitored loss so far (with its epoch, parameters and state), and how
    many epochs have passed without an improvement."""

    def __init__(self, rule: EarlyStopping, monitor: str):
        self.rule, self.monitor = rule, monitor
        self.best: tuple[float, int, Any, Any] | None = None  # (value, epoch, params, state)
        self.waited = 0

    def should_stop(self, history: dict[str, list[float]], epoch: int, params: Any, state: Any) -> bool:
        """Record the epoch just run; True when the loss has not improved for ``patience`` epochs."""
        current = history[self.monitor][-1]
        if self.best is None or current < self.best[0] - self.rule.min_delta:
            self.best, self.waited = (current, epoch, params, state), 0
            return False
        self.waited += 1
        return self.waited >= self.rule.patience


def _progress_bar(epochs: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return TextBar(epochs)
    return _TqdmBar(tqdm(total=epochs, unit="epoch", leave=True))


class _NoBar:
    def update(self, logs: dict) -> None:
        pass

    def close(self) -> None:
        pass


class _TqdmBar:
    def __init__(self, bar):
        self.bar = bar

    def update(self, logs: dict) -> None:
        self.bar.set_postfix({key: f"{value:.4g}" for key, value in logs.items()}, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class TextBar:
    """``epoch  37/100 [#######.............] loss 0.2513 lr 0.001``, redrawn in place on stderr."""

    width = 20
    interval = 0.2  # seconds between redraws: a fast epoch loop must not flood a log file

    def __init__(self, epochs: int, stream=None):
        self.epochs, self.done, self.drawn = epochs, 0, -math.inf
        self.stream = stream or sys.stderr

    def update(self, logs: dict) -> None:
        self.done += 1
        now = time.perf_counter()
        if now - self.drawn < self.interval and self.done < self.epochs:
            return
        self.drawn = now
        filled = self.width * self.done // max(self.epochs, 1)
        values = "  ".join(f"{key} {value:.4g}" for key, value in logs.items())
        self.stream.write(
            f"\repoch {self.done:>{len(str(self.epochs))}}/{self.epochs} "
            f"[{'#' * filled}{'.' * (self.width - filled)}]  {values}"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.done:
            self.stream.write("\n")
            self.stream.flush()
