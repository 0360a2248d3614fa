"""One training step of examples/digits_cnn.py's small CNN: chainrule (NumPy and LLVM backends)
against PyTorch eager, in the same run.

    python3 benchmarks/cnn.py                   # a few minutes; prints one table
    python3 benchmarks/cnn.py --batches 128 --clock wall
    python3 benchmarks/cnn.py --profile llvm --batches 512   # cProfile of chainrule's step
    python3 benchmarks/cnn.py --base ../main   # also another checkout's LLVM backend ("base")
    python3 benchmarks/cnn.py --threads default --clock wall   # every side on its default threads

The network (conv 3x3 8 -> ReLU -> max-pool 2 -> conv 3x3 16 -> ReLU -> max-pool 2 -> dense 10),
the softmax cross-entropy and the Adam update, on batches of 8x8 images, float32. chainrule's step
is ``optim.train_step``: forward, backward and update compiled into one function. PyTorch's is the
usual eager loop (zero_grad, forward, loss, backward, step) with the same initial weights, copied.

Each repeat builds a fresh step (a new compiled function object, a new torch module and
optimizer), warms it up, then times a block of consecutive steps; the sides alternate repeat by
repeat so machine noise hits them alike. Times are medians over the repeats of the blocks'
per-step means; "vs torch" is torch's time / this row's (above 1: chainrule is faster). Every
side runs on one thread (OpenBLAS, chainrule's LLVM kernels, ``torch.set_num_threads(1)``), so the
default clock is the process's CPU time, which other programs on a shared machine disturb far
less than the wall clock (``--clock wall`` for that). ``--threads default`` leaves every side its
default thread count instead (OpenBLAS's, chainrule's CPU count, torch's): measure it with
``--clock wall``, since CPU time adds up the threads' time. It runs each repeat of each side in a
fresh process (``--isolate``): in one process, the worker threads of the side before (torch's
OpenMP pool, OpenBLAS's), still spinning after its steps, took the cores from the next side's
threads, and the LLVM step timed there ran at half its speed. The parameters of every side after the same
steps from the same start are compared with chainrule's NumPy backend ("max |diff|", float32
rounding). With ``--base PATH``, a row "base" times the LLVM backend of the chainrule checkout at
PATH (e.g. the branch's starting point), each repeat in a fresh process importing it, interleaved
with the other sides' repeats.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CHAINRULE_NUM_THREADS")
# read from the command line before NumPy is imported: BLAS reads its thread count when it is loaded
ONE_THREAD = not any(a == "--threads" and sys.argv[i + 1 : i + 2] == ["default"] for i, a in enumerate(sys.argv))
if ONE_THREAD:
    for _variable in THREAD_VARIABLES:
        os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402  (after the thread settings, which BLAS reads when loaded)

try:
    from chainrule import nn, optim
except ImportError:  # run from a checkout: python3 benchmarks/cnn.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from chainrule import nn, optim
from chainrule.frontends.pytree import tree_map  # noqa: E402

LR = 1e-3


def build_model() -> nn.Sequential:
    return nn.Sequential(
        [
            nn.Conv2D(1, 8, 3, padding=1),
            nn.Activation("relu"),
            nn.MaxPool2D(2),
            nn.Conv2D(8, 16, 3, padding=1),
            nn.Activation("relu"),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dense(64, 10, init="xavier"),
        ]
    )


def batch(size: int):
    rng = np.random.default_rng(1)
    return rng.random((size, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, size)


def chainrule_side(backend: str, params, x, y):
    model = build_model()

    def objective(params, x, y):
        return nn.cross_entropy(model.apply(params, x), y)

    opt = optim.adam(LR)
    step = optim.train_step(objective, opt, backend=backend)
    state = {"params": params, "opt": opt.init(params)}

    def run(count: int):
        for _ in range(count):
            _, state["params"], state["opt"] = step(state["params"], state["opt"], x, y)

    return run, lambda: state["params"]


def torch_side(params, x, y):
    import torch

    if ONE_THREAD:
        torch.set_num_threads(1)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 10),
    )
    with torch.no_grad():
        for index, name in ((0, "conv2d1"), (3, "conv2d2")):
            module[index].weight.copy_(torch.from_numpy(params[name]["W"]))
            module[index].bias.copy_(torch.from_numpy(params[name]["b"]))
        module[7].weight.copy_(torch.from_numpy(params["dense1"]["W"].T.copy()))
        module[7].bias.copy_(torch.from_numpy(params["dense1"]["b"]))
    # eps as chainrule's Adam adds it (outside the square root's bias correction): the same update
    optimizer = torch.optim.Adam(module.parameters(), lr=LR, eps=1e-8)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)

    def run(count: int):
        for _ in range(count):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(module(inputs), labels)
            loss.backward()
            optimizer.step()

    def final():
        conv1, conv2, dense = module[0], module[3], module[7]
        return {
            "conv2d1": {"W": conv1.weight.detach().numpy(), "b": conv1.bias.detach().numpy()},
            "conv2d2": {"W": conv2.weight.detach().numpy(), "b": conv2.bias.detach().numpy()},
            "dense1": {"W": dense.weight.detach().numpy().T, "b": dense.bias.detach().numpy()},
        }

    return run, final


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def measure(
    batch_size: int,
    sides: list,
    repeats: int = 7,
    block: int = 20,
    clock: str = "cpu",
    base: str | None = None,
    isolate: bool = False,
) -> dict:
    """Per side, (median seconds per step, max |difference| from the NumPy side's parameters)."""
    times: dict = {side: [] for side in sides + (["base"] if base else [])}
    finals: dict = {}
    for _ in range(repeats):
        for side in sides:
            repeat = _worker_repeat if isolate else one_repeat
            seconds, finals[side] = repeat(side, batch_size, block, clock)
            times[side].append(seconds)
        if base:
            times["base"].append(_worker_repeat("llvm", batch_size, block, clock, base)[0])
    reference = finals.get("numpy")
    differences = {
        side: max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in _leaf_pairs(finals[side], reference))
        if reference is not None
        else float("nan")
        for side in sides
    }
    differences["base"] = float("nan")
    return {side: (median(times[side]), differences[side]) for side in times}


def one_repeat(side: str, batch_size: int, block: int, clock: str) -> tuple[float, dict]:
    """A fresh step of ``side``, warmed up, then ``block`` steps timed: (seconds per step, the
    parameters after 3 + block steps from the same start)."""
    params = tree_map(lambda leaf: leaf.astype(np.float32), build_model().init(0))
    x, y = batch(batch_size)
    run, final = torch_side(params, x, y) if side == "torch" else chainrule_side(side, params, x, y)
    run(3)  # compile, warm caches
    now = CLOCKS[clock]
    start = now()
    run(block)
    return (now() - start) / block, final()


def _worker_repeat(side: str, batch_size: int, block: int, clock: str, base: str | None = None) -> tuple[float, dict]:
    """``one_repeat`` in a fresh process (of the chainrule of checkout ``base``, if given)."""
    command = [sys.executable, __file__, "--worker", side, "--batches", str(batch_size), "--clock", clock]
    command += [] if ONE_THREAD else ["--threads", "default"]
    environment = dict(os.environ, PYTHONPATH=str(Path(base).resolve())) if base else None
    output = subprocess.run(command, env=environment, check=True, capture_output=True, text=True).stdout
    result = json.loads(output.splitlines()[-1])
    params = {
        layer: {name: np.asarray(value) for name, value in values.items()} for layer, values in result["params"].items()
    }
    return result["seconds"], params


def _leaf_pairs(tree, reference):
    for name, layer in reference.items():
        for key, value in layer.items():
            yield tree[name][key], value


def profile(backend: str, batch_size: int, steps: int = 50) -> None:
    """cProfile of ``steps`` chainrule steps (compiled and warm): where the time goes, op by op."""
    params = tree_map(lambda leaf: leaf.astype(np.float32), build_model().init(0))
    run, _ = chainrule_side(backend, params, *batch(batch_size))
    run(3)
    profiler = cProfile.Profile()
    profiler.runcall(run, steps)
    print(f"{backend} backend, batch {batch_size}: {steps} steps")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--profile", choices=["numpy", "llvm"], help="profile this backend instead")
    parser.add_argument("--threads", choices=["1", "default"], default="1", help="1 (every side) or each default")
    parser.add_argument("--base", help="a chainrule checkout whose LLVM backend is timed too (row 'base')")
    parser.add_argument("--isolate", action="store_true", help="each repeat of each side in a fresh process")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a side's one repeat, printed as JSON
    args = parser.parse_args(argv)
    if args.worker:
        seconds, params = one_repeat(args.worker, args.batches[0], 20, args.clock)
        print(json.dumps({"seconds": seconds, "params": tree_map(lambda leaf: np.asarray(leaf).tolist(), params)}))
        return
    if args.profile:
        for batch_size in args.batches:
            profile(args.profile, batch_size)
        return
    try:
        import torch  # noqa: F401

        sides = ["numpy", "llvm", "torch"]
    except ImportError:
        print("(PyTorch is not installed: chainrule's backends only)")
        sides = ["numpy", "llvm"]
    threads = {name: os.environ.get(name, "default") for name in ("OPENBLAS_NUM_THREADS", "CHAINRULE_NUM_THREADS")}
    torch_threads = "torch.set_num_threads(1)" if ONE_THREAD else "torch's default"
    print(f"{args.clock} time per step; threads: {threads}, {torch_threads}")
    if args.base:
        print(f"base: the LLVM backend of {Path(args.base).resolve()}")
    isolate = args.isolate or not ONE_THREAD
    if isolate:
        print("each repeat of each side in a fresh process")
    print(f"{'batch':>6}{'side':>8}{'ms/step':>10}{'vs torch':>10}{'max |diff|':>12}")
    for batch_size in args.batches:
        rows = measure(batch_size, sides, args.repeats, clock=args.clock, base=args.base, isolate=isolate)
        for side, (seconds, difference) in rows.items():
            ratio = f"{rows['torch'][0] / seconds:>9.2f}x" if "torch" in rows else f"{'-':>10}"
            print(f"{batch_size:>6}{side:>8}{seconds * 1e3:>10.3f}{ratio}{difference:>12.1e}")


if __name__ == "__main__":
    main()
