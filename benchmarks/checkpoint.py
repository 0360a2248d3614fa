"""Checkpoint placement on a 100-layer tanh MLP (width 512, batch 256, float32): memory and step time
per policy, against JAX ``jax.checkpoint`` and PyTorch ``checkpoint_sequential`` in the same run.

    python3 benchmarks/checkpoint.py              # ~10 minutes on a busy 2-core machine
    python3 benchmarks/checkpoint.py --layers 30  # quicker

Table 1 is one training step (the loss and every parameter's gradient). Its peak
is mostly the gradients themselves (100 x 1 MiB of float32 weights), which every
policy must return, so policies differ in "kept" (the bytes the backward pass
keeps from the forward pass) and in time more than in peak.

Table 2 differentiates with respect to the input only, so no parameter gradient
is held and the peak is the activations: this is where the issue's bound applies,
"sqrt" within 2.5·sqrt(L) activations (parameters are inputs, not counted) for
at most one extra forward pass.

Columns: "kept" is, for chainrule, the forward values the backward pass reads
(``.memory().kept_bytes``); for JAX the residual buffers ``jax.vjp`` holds; for
PyTorch the storage autograd saves during the forward pass (``saved_tensors_hooks``);
arguments (weights, x) are not counted for any of them.
"peak est" is chainrule's memory plan; "peak meas" is what tracemalloc measures
in one call (chainrule only: JAX and PyTorch allocate outside Python's
allocator, so their peaks are not measured here). "extra fwd" is recomputed FLOPs / forward FLOPs. Times
are medians of ``--repeat`` steps after a warm-up, every row taking its turn in
each round; the machine is shared, so they are noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from pathlib import Path
from statistics import median

# One BLAS/XLA thread each (before NumPy, JAX or PyTorch load): on a shared 2-core machine a second
# OpenBLAS thread spins against the other engineers' jobs (a 256x512x512 float32 matmul measured
# 2.1 ms on one thread, 7-46 ms on two), and every library then runs on the same footing.
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402

try:
    import chainrule as cr
except ImportError:  # run from a checkout: python3 benchmarks/checkpoint.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr

MiB = 1 << 20


def mlp_loss(params, x):
    h = x
    for W, b in params:
        h = np.tanh(h @ W + b)
    return np.sum(h**2)


def make_args(layers, width, batch):
    rng = np.random.default_rng(0)
    params = [
        (
            (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32),
            (rng.standard_normal(width) * 0.1).astype(np.float32),
        )
        for _ in range(layers)
    ]
    return params, rng.standard_normal((batch, width)).astype(np.float32)


def time_round_robin(rows, repeat) -> None:
    """Each row's step timed ``repeat`` times, the rows taking turns, so machine noise hits all alike."""
    steps = {name: row.pop("step") for name, row in rows.items() if row.get("step")}
    for step in steps.values():
        step()  # warm-up (and compilation)
    times = {name: [] for name in steps}
    for _ in range(repeat):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    for name in steps:
        rows[name]["time"] = median(times[name])


def traced_peak(step) -> int:
    tracemalloc.start()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def chainrule_row(policy, args, argnums):
    f = cr.grad(mlp_loss, argnums=argnums, checkpoint=policy)
    f(*args)  # compile
    report = f.memory(*args)
    return {
        "kept": report.kept_bytes,
        "est": report.peak_bytes,
        "meas": traced_peak(lambda: f(*args)),
        "extra": report.extra_forward_passes,
        "time": None,
        "step": lambda: f(*args),
    }


def jax_rows(args, segment):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {}
    params, x = args

    def layer(h, p):
        return jnp.tanh(h @ p[0] + p[1])

    def plain(params, x):
        h = x
        for p in params:
            h = layer(h, p)
        return jnp.sum(h**2)

    def per_layer(params, x):
        h = x
        for p in params:
            h = jax.checkpoint(layer)(h, p)
        return jnp.sum(h**2)

    def block(h, ps):
        for p in ps:
            h = layer(h, p)
        return h

    def segments(params, x):
        h = x
        for start in range(0, len(params), segment):
            h = jax.checkpoint(block)(h, params[start : start + segment])
        return jnp.sum(h**2)

    jparams = [(jnp.asarray(W), jnp.asarray(b)) for W, b in params]
    jx = jnp.asarray(x)
    rows = {}
    for name, fn in (
        ("jax, no remat", plain),
        ("jax.checkpoint per layer", per_layer),
        (f"jax.checkpoint, {segment}-layer segments", segments),
    ):
        step = jax.jit(jax.value_and_grad(fn))
        _, vjp_fn = jax.vjp(fn, jparams, jx)
        arguments = {leaf.unsafe_buffer_pointer() for leaf in jax.tree_util.tree_leaves((jparams, jx))}
        residuals = {
            leaf.unsafe_buffer_pointer(): leaf.nbytes
            for leaf in jax.tree_util.tree_leaves(vjp_fn)
            if hasattr(leaf, "unsafe_buffer_pointer")
        }
        kept = sum(size for pointer, size in residuals.items() if pointer not in arguments)
        rows[name] = {
            "kept": kept,
            "est": None,
            "meas": None,
            "extra": None,
            "time": None,
            "step": lambda step=step: jax.block_until_ready(step(jparams, jx)),
        }
    return rows


def torch_rows(args, segment):
    try:
        import torch
        from torch.utils.checkpoint import checkpoint_sequential
    except ImportError:
        return {}
    torch.set_num_threads(1)
    params, x = args
    layers = []
    for W, b in params:
        linear = torch.nn.Linear(W.shape[0], W.shape[1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear, torch.nn.Tanh()]
    model = torch.nn.Sequential(*layers)
    tx = torch.from_numpy(x)

    def plain():
        model.zero_grad(set_to_none=True)
        loss = (model(tx) ** 2).sum()
        loss.backward()

    def sequential():
        model.zero_grad(set_to_none=True)
        out = checkpoint_sequential(model, len(params) // segment, tx, use_reentrant=False)
        loss = (out**2).sum()
        loss.backward()

    rows = {}
    for name, step in (
        ("torch, no checkpoint", plain),
        (f"torch checkpoint_sequential, {len(params) // segment} segments", sequential),
    ):
        # storage already counted: the parameters and x are arguments, not kept extra (a Linear saves W.t())
        saved = {
            "bytes": 0,
            "seen": {p.untyped_storage().data_ptr() for p in model.parameters()} | {tx.untyped_storage().data_ptr()},
        }

        def pack(tensor):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in saved["seen"]:
                saved["seen"].add(storage.data_ptr())
                saved["bytes"] += storage.nbytes()
            return tensor

        model.zero_grad(set_to_none=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = (
                checkpoint_sequential(model, len(params) // segment, tx, use_reentrant=False)
                if step is sequential
                else model(tx)
            )
        del out
        rows[name] = {"kept": saved["bytes"], "est": None, "meas": None, "extra": None, "time": None, "step": step}
    return rows


def print_table(title, rows, activation, baseline_time):
    print(f"\n{title}")
    print(f"{'policy':<40} {'kept':>9} {'peak est':>9} {'peak meas':>9} {'extra fwd':>9} {'time s':>8} {'ratio':>6}")
    for name, row in rows.items():

        def mib(value):
            return f"{value / MiB:9.1f}" if value is not None else f"{'n/a':>9}"

        extra = f"{row['extra']:9.2f}" if row["extra"] is not None else f"{'n/a':>9}"
        seconds = f"{row['time']:8.2f}" if row["time"] is not None else f"{'-':>8}"
        ratio = f"{row['time'] / baseline_time:6.2f}" if row["time"] and baseline_time else f"{'-':>6}"
        print(f"{name:<40} {mib(row['kept'])} {mib(row['est'])} {mib(row['meas'])} {extra} {seconds} {ratio}")
    print(f"(MiB; one activation = {activation / MiB:.2f} MiB; ratio = time / chainrule 'all')")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args(argv)
    args = make_args(options.layers, options.width, options.batch)
    activation = args[1].nbytes
    segment = max(1, round(np.sqrt(options.layers)))
    gradient_bytes = sum(W.nbytes + b.nbytes for W, b in args[0])
    step_budget = gradient_bytes + 20 * activation
    print(
        f"{options.layers}-layer tanh MLP, width {options.width}, batch {options.batch}, float32; "
        f"medians of {options.repeat} steps"
    )

    step_rows = {}
    for policy in ("all", "sqrt", "optimal", step_budget):
        name = f"chainrule budget {step_budget / MiB:.1f} MiB" if isinstance(policy, int) else f"chainrule {policy!r}"
        step_rows[name] = chainrule_row(policy, args, 0)
    step_rows.update(jax_rows(args, segment))
    step_rows.update(torch_rows(args, segment))
    time_round_robin(step_rows, options.repeat)
    baseline = step_rows["chainrule 'all'"]["time"]
    print_table("1. training step: loss and every gradient", step_rows, activation, baseline)

    input_rows = {}
    for policy in ("all", "sqrt", "optimal", 20 * activation):
        name = (
            f"chainrule budget {20 * activation / MiB:.1f} MiB" if isinstance(policy, int) else f"chainrule {policy!r}"
        )
        input_rows[name] = chainrule_row(policy, args, 1)
        del input_rows[name]["step"]
    print_table("2. gradient with respect to x only: the peak is the activations", input_rows, activation, None)
    bound = 2.5 * np.sqrt(options.layers) * activation
    sqrt_row = input_rows["chainrule 'sqrt'"]
    print(
        f"sqrt: measured peak {sqrt_row['meas'] / activation:.1f} activations "
        f"(bound 2.5*sqrt(L) = {bound / activation:.1f}), extra forward passes {sqrt_row['extra']:.2f} (bound 1)"
    )


if __name__ == "__main__":
    main()
