"""An Elman RNN trained with full and with truncated backpropagation through time (seed 003, 7.1).

    python examples/rnn_bptt.py [--epochs 150] [--steps 120] [--window 10] [--no-plot]

The task: a batch of noisy sine waves of random frequency and phase; at every step the network
reads the noisy sample and predicts the clean wave one step ahead (mean squared error). The RNN is

    h_t = tanh(h_(t-1) W + x_t U + b),    prediction_t = h_t V + c

written as a ``cr.scan`` over time, so the step is traced once however long the sequence is.

- **Full BPTT**: ``cr.grad`` of the loss over the whole sequence: the backward loop runs over every
  step and keeps the carry of every step (``steps`` x batch x hidden numbers).
- **Truncated BPTT** (window k): the sequence is cut into chunks of k steps, an outer ``cr.scan``
  over chunks around an inner one over steps, and the hidden state enters each chunk through
  ``cr.stop_gradient``: "use stop-gradient operations in the computational graph", as the seed
  says. The forward pass is the same; the gradient flows back at most k steps, and the backward
  pass keeps one carry per chunk plus the k of the chunk it is reversing.

Both are trained with Adam from the same start; the table shows both losses per epoch and the
bytes each gradient's backward pass keeps (``.memory()``). The last table is why truncation
costs little here, and what it gives up: the norm of d(loss at the last step)/d(h_t) per time
step t. Each step back multiplies it by W diag(1 - h^2), and tanh' <= 1, so it shrinks
geometrically (vanishing gradients): credit from more than a few dozen steps back is already
negligible, and a window of k steps drops only what had nearly vanished anyway.
Saves rnn_bptt.png when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

try:
    import chainrule as cr
except ImportError:  # run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr

HIDDEN, BATCH = 16, 16


def noisy_sines(steps: int, seed: int = 0, noise: float = 0.3):
    """Inputs (steps, batch, 1): noisy samples; targets (steps, batch, 1): the clean wave one step on."""
    rng = np.random.default_rng(seed)
    frequency = rng.uniform(0.1, 0.3, size=(1, BATCH, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(1, BATCH, 1))
    t = np.arange(steps + 1, dtype=float)[:, None, None]
    clean = np.sin(frequency * t + phase)
    noisy = clean + noise * rng.normal(size=clean.shape)
    return noisy[:-1], clean[1:]


def init_params(seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "W": rng.normal(size=(HIDDEN, HIDDEN)) * 0.9 / np.sqrt(HIDDEN),
        "U": rng.normal(size=(1, HIDDEN)),
        "b": np.zeros(HIDDEN),
        "V": rng.normal(size=(HIDDEN, 1)) / np.sqrt(HIDDEN),
        "c": np.zeros(1),
    }


def rnn_step(params, h, x):
    """One Elman step: the new hidden state and its prediction."""
    h = np.tanh(h @ params["W"] + x @ params["U"] + params["b"])
    return h, h @ params["V"] + params["c"]


def full_bptt_loss(params, xs, ys):
    """Mean squared error over the whole sequence, one scan over every step."""
    h0 = np.zeros((xs.shape[1], HIDDEN))
    _, predictions = cr.scan(lambda h, x: rnn_step(params, h, x), h0, xs)
    return np.mean((predictions - ys) ** 2)


def truncated_bptt_loss(params, xs, ys, window: int):
    """The same loss, with the hidden state entering each chunk of ``window`` steps through
    stop_gradient: the same value, a gradient that flows back at most ``window`` steps."""
    chunks = xs.reshape((xs.shape[0] // window, window) + xs.shape[1:])

    def chunk(h, chunk_xs):
        h = cr.stop_gradient(h)  # the truncation: no gradient into the previous chunk
        return cr.scan(lambda h, x: rnn_step(params, h, x), h, chunk_xs)

    h0 = np.zeros((xs.shape[1], HIDDEN))
    _, predictions = cr.scan(chunk, h0, chunks)
    return np.mean((predictions.reshape(ys.shape) - ys) ** 2)


def python_loss(params, xs, ys):
    """The loss as a plain Python loop over time (the reference for the gradient check)."""
    h = np.zeros((xs.shape[1], HIDDEN))
    total = 0.0
    for x, y in zip(xs, ys):
        h, prediction = rnn_step(params, h, x)
        total += np.sum((prediction - y) ** 2)
    return total / ys.size


def hidden_gradient_norms(params, xs, ys) -> np.ndarray:
    """||d(loss at the last step) / d(h_t)|| for every t: a zero offset added to each step's hidden
    state, differentiated (its gradient is the hidden state's)."""

    def last_step_loss(offsets):
        def step(h, inputs):
            x, offset = inputs
            h, prediction = rnn_step(params, h + offset, x)
            return h, prediction

        _, predictions = cr.scan(step, np.zeros((xs.shape[1], HIDDEN)), (xs, offsets))
        return np.mean((predictions[-1] - ys[-1]) ** 2)

    gradient = cr.grad(last_step_loss)(np.zeros((xs.shape[0], xs.shape[1], HIDDEN)))
    return np.linalg.norm(gradient.reshape(xs.shape[0], -1), axis=1)


def gradient_check(params, xs, ys, h: float = 1e-6) -> float:
    """Relative difference between the full-BPTT gradient of W[0, 1] and central differences of the
    Python loop."""
    analytic = cr.grad(full_bptt_loss)(params, xs, ys)["W"][0, 1]
    moved = [
        {**params, "W": params["W"] + sign * h * np.eye(HIDDEN)[0][:, None] * np.eye(HIDDEN)[1]} for sign in (1, -1)
    ]
    numeric = (python_loss(moved[0], xs, ys) - python_loss(moved[1], xs, ys)) / (2 * h)
    return abs(analytic - numeric) / (abs(analytic) + abs(numeric))


def train(loss, params, xs, ys, epochs: int, learning_rate: float = 0.01):
    """Adam on ``loss``; the loss before each epoch's update, and the gradient's memory report."""
    gradient = cr.value_and_grad(loss)
    optimizer = cr.optim.adam(learning_rate)
    state = optimizer.init(params)
    losses = []
    for _ in range(epochs):
        value, grads = gradient(params, xs, ys)
        losses.append(float(value))
        params, state = optimizer.update(grads, state, params)
    return params, np.array(losses), gradient.memory(params, xs, ys)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--steps", type=int, default=120, help="sequence length (a multiple of --window)")
    parser.add_argument("--window", type=int, default=10, help="truncated BPTT window k")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", default=".", help="directory for rnn_bptt.png")
    args = parser.parse_args(argv)
    if args.steps % args.window:
        parser.error("--steps must be a multiple of --window")

    xs, ys = noisy_sines(args.steps)
    params = init_params()
    check = gradient_check(params, xs, ys)
    print(f"Elman RNN, {HIDDEN} tanh units, {BATCH} noisy sines of {args.steps} steps, predicting one step ahead")
    print(f"full-BPTT gradient vs central differences of the Python loop: {check:.1e} (criterion: < 1e-7)\n")

    start = time.perf_counter()
    _, full_losses, full_memory = train(full_bptt_loss, params, xs, ys, args.epochs)
    full_seconds = time.perf_counter() - start
    start = time.perf_counter()
    truncated = lambda p, x, y: truncated_bptt_loss(p, x, y, args.window)
    _, truncated_losses, truncated_memory = train(truncated, params, xs, ys, args.epochs)
    truncated_seconds = time.perf_counter() - start

    print(f"{'epoch':>6} {'full BPTT':>12} {f'truncated k={args.window}':>16}")
    for epoch in sorted({0, *range(0, args.epochs, max(args.epochs // 10, 1)), args.epochs - 1}):
        print(f"{epoch + 1:>6} {full_losses[epoch]:>12.5f} {truncated_losses[epoch]:>16.5f}")
    print(
        f"{'kept':>6} {full_memory.kept_bytes:>10} B {truncated_memory.kept_bytes:>14} B  (bytes the backward pass keeps)"
    )
    print(f"{'time':>6} {full_seconds:>10.2f} s {truncated_seconds:>14.2f} s  ({args.epochs} epochs, compile included)")

    norms = hidden_gradient_norms(params, xs, ys)
    print(f"\n||d loss(last step) / d h_t|| at initialization, t steps before the end (window k = {args.window}):")
    for back in [0, 1, 2, 5, 10, 20, 40, 80]:
        if back < args.steps:
            print(f"  t = T-{back:<3} {norms[args.steps - 1 - back]:.3e}")
    if not args.no_plot:
        plot(full_losses, truncated_losses, norms, args.window, Path(args.out) / "rnn_bptt.png")
    return {
        "check": check,
        "full": full_losses,
        "truncated": truncated_losses,
        "norms": norms,
        "kept": (full_memory.kept_bytes, truncated_memory.kept_bytes),
    }


def plot(full_losses, truncated_losses, norms, window, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.semilogy(full_losses, label="full BPTT")
    left.semilogy(truncated_losses, label=f"truncated BPTT, k = {window}")
    left.set(xlabel="epoch", ylabel="mean squared error", title="training loss")
    left.legend()
    steps_back = np.arange(len(norms))
    right.semilogy(steps_back, norms[::-1])
    right.axvline(window, color="gray", linestyle="--", label=f"window k = {window}")
    right.set(xlabel="steps before the last", ylabel="||dL/dh_t||", title="gradient reaching each step")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
