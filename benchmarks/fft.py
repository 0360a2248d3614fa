"""np.fft losses compiled by chainrule against NumPy by hand, JAX and PyTorch: value and gradient.

    python3 benchmarks/fft.py            # about a minute; checks, then one markdown table
    python3 benchmarks/fft.py --quick    # the 1-D n=1024 cases only

Workloads (float64; the argument x is the signal or image, everything else a constant):
conv   0.5·sum((irfft(rfft(x)·T, n) - d)²): an FFT circular-convolution fit, T = rfft of a Gaussian
       blur kernel zero-padded to n (a complex constant computed once, as spectral code does);
       gradient by hand: the correlation with the kernel, irfft(rfft(r)·conj(T), n) of the residual r.
power  sum(w·|rfft(x)|²), a weighted spectral power; gradient by hand: n·irfft(c·w·X, n) with
       X = rfft(x) and c = 2 at the bins irfft counts once (0, and n/2 for even n), 1 elsewhere.
conv2d and power2d: the same on a 256x256 image with rfft2/irfft2(s=...) and, for the power,
       sum(W·|fftshift(fft2(x))|²) whose gradient by hand is 2·N·Re(ifft2(ifftshift(W)·fft2(x))).
The hand gradients are checked against fourth-order finite differences on small sizes (odd and even
n), and every column's value and gradient against them at the timed sizes, before any timing.

Columns: chainrule ``cr.jit`` (fwd) / ``cr.grad`` (grad) on the NumPy and the LLVM backend; NumPy by
hand (pocketfft); ``jax.jit(loss)`` / ``jax.jit(jax.grad(loss))`` when JAX is importable; PyTorch
eager (``torch.fft``, the gradient by ``torch.autograd.grad``) when it is importable. A column whose
library is missing, or a chainrule cell whose trace raises UnsupportedError, shows "-". Every side
runs on one thread (OpenBLAS, chainrule's kernels, XLA's Eigen pool, ``torch.set_num_threads(1)``)
and times are the process's CPU time, which other jobs on a shared machine disturb less than wall
time. Each cell is compiled and warmed up first; then the columns take turns in blocks of calls
(their order rotating), and a figure is the median over blocks of the per-call mean. Ratios are
against "by hand" in the same run: compare ratios, not times, across runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CHAINRULE_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # before NumPy loads OpenBLAS
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402  (after the thread settings)

try:
    import chainrule as cr
except ImportError:  # run from a checkout: python3 benchmarks/fft.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr

CASES = ("conv 1024", "conv 16384", "conv2d 256x256", "power 1024", "power 16384", "power2d 256x256")
QUICK_CASES = ("conv 1024", "power 1024")
BLOCKS = 7
BLOCK_SECONDS = 0.02  # the calls in a block: about this much CPU time of the by-hand side


def shape_of(case: str) -> tuple[int, ...]:
    size = case.split()[1]
    return tuple(int(n) for n in size.split("x"))


def problem(case: str) -> dict[str, np.ndarray]:
    """x and the constants of ``case`` ("conv 1024", "power2d 256x256", ...), seeded by its size."""
    kind, shape = case.split()[0], shape_of(case)
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape)
    if kind.startswith("power"):
        spectrum = shape[:-1] + (shape[-1] // 2 + 1,) if kind == "power" else shape
        return {"x": x, "w": rng.uniform(0.5, 1.5, spectrum)}
    offsets = [np.minimum(np.arange(n), n - np.arange(n)) for n in shape]  # circular distance to 0
    squared = sum(np.meshgrid(*[o**2 for o in offsets], indexing="ij"))
    kernel = np.exp(-squared / (2 * 3.0**2))
    kernel /= np.sum(kernel)
    rfft, irfft = (np.fft.rfft, np.fft.irfft) if kind == "conv" else (np.fft.rfft2, np.fft.irfft2)
    transfer = rfft(kernel)
    clean = np.cumsum(rng.standard_normal(shape), axis=-1) / 10
    data = irfft(rfft(clean) * transfer, shape[-1] if kind == "conv" else shape) + 0.01 * rng.standard_normal(shape)
    return {"x": x, "transfer": transfer, "data": data}


def loss_for(case: str, p: dict[str, np.ndarray], xp=np) -> Callable:
    """The scalar loss of x, written with ``xp`` (NumPy, which chainrule traces, jax.numpy or torch)."""
    kind, shape = case.split()[0], shape_of(case)
    if kind == "conv":
        transfer, data, n = xp.asarray(p["transfer"]), xp.asarray(p["data"]), shape[0]
        return lambda x: 0.5 * xp.sum((xp.fft.irfft(xp.fft.rfft(x) * transfer, n=n) - data) ** 2)
    if kind == "conv2d":
        transfer, data = xp.asarray(p["transfer"]), xp.asarray(p["data"])
        return lambda x: 0.5 * xp.sum((xp.fft.irfft2(xp.fft.rfft2(x) * transfer, s=shape) - data) ** 2)
    w = xp.asarray(p["w"])
    if kind == "power":
        return lambda x: xp.sum(w * xp.abs(xp.fft.rfft(x)) ** 2)
    return lambda x: xp.sum(w * xp.abs(xp.fft.fftshift(xp.fft.fft2(x))) ** 2)


def hand_gradient(case: str, p: dict[str, np.ndarray]) -> Callable:
    """d loss / dx written out with NumPy's FFTs (the derivations in the module docstring)."""
    kind, shape = case.split()[0], shape_of(case)
    if kind == "conv":
        transfer, data, n = p["transfer"], p["data"], shape[0]
        conjugate = np.conj(transfer)

        def conv_gradient(x):
            residual = np.fft.irfft(np.fft.rfft(x) * transfer, n=n) - data
            return np.fft.irfft(np.fft.rfft(residual) * conjugate, n=n)

        return conv_gradient
    if kind == "conv2d":
        transfer, data = p["transfer"], p["data"]
        conjugate = np.conj(transfer)

        def conv2d_gradient(x):
            residual = np.fft.irfft2(np.fft.rfft2(x) * transfer, s=shape) - data
            return np.fft.irfft2(np.fft.rfft2(residual) * conjugate, s=shape)

        return conv2d_gradient
    if kind == "power":
        n = shape[0]
        counted_once = np.ones(n // 2 + 1)
        counted_once[0] = 2.0
        if n % 2 == 0:
            counted_once[-1] = 2.0
        scaled_w = n * counted_once * p["w"]
        return lambda x: np.fft.irfft(scaled_w * np.fft.rfft(x), n=n)
    unshifted_w = 2 * np.prod(shape) * np.fft.ifftshift(p["w"])
    return lambda x: np.real(np.fft.ifft2(unshifted_w * np.fft.fft2(x)))


def torch_pair(case: str, p: dict[str, np.ndarray]) -> tuple[Callable, Callable] | None:
    """PyTorch eager (value under no_grad, gradient by autograd) of the same loss; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    loss = loss_for(case, p, torch)  # torch.asarray, torch.sum, torch.abs, torch.fft.* as NumPy's

    def value(x):
        with torch.no_grad():
            return float(loss(torch.from_numpy(x)))

    def gradient(x):
        leaf = torch.from_numpy(x).requires_grad_(True)
        return torch.autograd.grad(loss(leaf), leaf)[0].numpy()

    return value, gradient


def jax_pair(case: str, p: dict[str, np.ndarray]) -> tuple[Callable, Callable] | None:
    """``jax.jit`` of the loss and of its ``jax.grad``, blocking until ready; None without JAX."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    loss = loss_for(case, p, jnp)
    value, gradient = jax.jit(loss), jax.jit(jax.grad(loss))
    return (lambda x: value(x).block_until_ready()), (lambda x: gradient(x).block_until_ready())


def chainrule_pair(case: str, p: dict[str, np.ndarray], backend: str) -> tuple[Callable, Callable]:
    """``cr.jit`` and ``cr.grad`` of the loss on ``backend``."""
    loss = loss_for(case, p)
    return cr.jit(loss, backend=backend), cr.grad(loss, backend=backend)


def traceable(case: str, p: dict[str, np.ndarray]) -> bool:
    try:
        cr.trace(loss_for(case, p), p["x"])
    except cr.UnsupportedError as error:
        print(f"chainrule cannot trace {case}: {str(error).splitlines()[0]}", file=sys.stderr)
        return False
    return True


def sides(case: str, p: dict[str, np.ndarray]) -> dict[str, tuple[Callable, Callable] | None]:
    """column -> (value of x, gradient in x), or None for a column that cannot run here."""
    chainrule = traceable(case, p)
    return {
        "numpy backend": chainrule_pair(case, p, "numpy") if chainrule else None,
        "llvm": chainrule_pair(case, p, "llvm") if chainrule else None,
        "by hand": (loss_for(case, p), hand_gradient(case, p)),
        "jax jit": jax_pair(case, p),
        "torch eager": torch_pair(case, p),
    }


# ---- checks --------------------------------------------------------------------------------


def finite_difference_gradient(loss: Callable, x: np.ndarray, step: float = 1e-3) -> np.ndarray:
    """Fourth-order central differences (the loss is a quadratic form: no truncation error)."""
    gradient = np.zeros(x.shape)
    for index in np.ndindex(x.shape):
        values = []
        for offset in (step, -step, 2 * step, -2 * step):
            shifted = x.copy()
            shifted[index] += offset
            values.append(loss(shifted))
        gradient[index] = (8 * (values[0] - values[1]) - (values[2] - values[3])) / (12 * step)
    return gradient


def check_hand_gradients() -> None:
    """The derivations, at odd and even sizes (irfft's Nyquist bin exists only for even n)."""
    for case in ("conv 15", "conv 16", "power 15", "power 16", "conv2d 6x7", "conv2d 6x8", "power2d 5x6"):
        p = problem(case)
        numeric = finite_difference_gradient(loss_for(case, p), p["x"])
        np.testing.assert_allclose(hand_gradient(case, p)(p["x"]), numeric, rtol=1e-7, atol=1e-9, err_msg=case)


def check_columns(case: str, columns: dict[str, tuple[Callable, Callable] | None], x: np.ndarray) -> None:
    value, gradient = columns["by hand"]
    expected_value, expected_gradient = value(x), gradient(x)
    scale = np.max(np.abs(expected_gradient))
    for name, pair in columns.items():
        if pair is None:
            continue
        np.testing.assert_allclose(float(pair[0](x)), expected_value, rtol=1e-9, err_msg=f"{case} {name} fwd")
        got = np.asarray(pair[1](x))
        np.testing.assert_allclose(got, expected_gradient, rtol=0, atol=1e-9 * scale, err_msg=f"{case} {name} grad")


# ---- timing --------------------------------------------------------------------------------


def interleaved(calls: dict[str, Callable], x: np.ndarray, per_block: int) -> dict[str, float]:
    """µs of CPU per call of each function: median over blocks, the columns taking turns."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for block in range(BLOCKS):
        for name in names[block % len(names) :] + names[: block % len(names)]:
            call = calls[name]
            start = time.process_time()
            for _ in range(per_block):
                call(x)
            samples[name].append((time.process_time() - start) / per_block)
    return {name: median(times) * 1e6 for name, times in samples.items()}


def calls_per_block(call: Callable, x: np.ndarray) -> int:
    start = time.process_time()
    for _ in range(5):
        call(x)
    seconds = max((time.process_time() - start) / 5, 1e-7)
    return max(3, min(2000, int(BLOCK_SECONDS / seconds)))


def measure(cases: tuple[str, ...]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """The column names and ``"case mode" -> column -> µs``."""
    rows: dict[str, dict[str, float]] = {}
    names: list[str] = []
    for case in cases:
        p = problem(case)
        columns = sides(case, p)
        names = list(columns)
        check_columns(case, columns, p["x"])
        for mode_index, mode in enumerate(("fwd", "grad")):
            calls = {name: pair[mode_index] for name, pair in columns.items() if pair is not None}
            per_block = calls_per_block(calls["by hand"], p["x"])
            rows[f"{case} {mode}"] = interleaved(calls, p["x"], per_block)
    return names, rows


def markdown(names: list[str], rows: dict[str, dict[str, float]]) -> str:
    others = [name for name in names if name != "by hand"]
    header = "| case | mode | " + " | ".join(f"{name} µs" for name in names) + " | "
    header += " | ".join(f"{name} / hand" for name in others) + " |"
    lines = [header, "|---|---|" + "---:|" * (len(names) + len(others))]
    for key, cells in rows.items():
        *case, mode = key.split()
        hand = cells["by hand"]
        times = [f"{cells[name]:.1f}" if name in cells else "-" for name in names]
        ratios = [f"{cells[name] / hand:.2f}" if name in cells else "-" for name in others]
        lines.append(f"| {' '.join(case)} | {mode} | " + " | ".join(times + ratios) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the 1-D n=1024 cases")
    options = parser.parse_args(argv)
    check_hand_gradients()
    names, rows = measure(QUICK_CASES if options.quick else CASES)
    print(f"µs of CPU per call, median of {BLOCKS} interleaved blocks; one thread per side; load {_load()}")
    print(markdown(names, rows))


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:  # not on this platform
        return "unknown"


if __name__ == "__main__":
    main()
