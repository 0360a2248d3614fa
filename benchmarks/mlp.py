"""One gradient step of two MLPs: chainrule's NumPy backend against the hand-written backward pass.

    python3 benchmarks/mlp.py            # a minute or two on a quiet machine; prints one table

(a) seed 002 12.10.1's DeepNeuralNetwork [2, 16, 8, 1] on the 400-point spiral:
    column-major ``Z = np.dot(W, A) + b``, ReLU hidden, sigmoid out, mean binary
    cross-entropy. The seed's cost adds 1e-8 inside the logs and clips Z before the
    sigmoid, which makes its own ``dZ = AL - Y`` differ from the true gradient by
    ~1e-8; both are dropped here so the two sides compute the same function exactly.
(b) a [784, 256, 256, 10] row-major MLP (``x @ W + b``), ReLU, softmax cross-entropy
    with integer labels (``chainrule.nn.cross_entropy``), batch 128; (c) the same in float32.

Both sides return the loss and every gradient. chainrule runs twice: with its
optimizing passes (the default) and with ``optimize=False``, so the table shows what
the optimizer buys in nodes, memory and time. All run in alternating blocks of
consecutive calls, so machine noise hits them alike; times are medians. "ratio" is
time / hand-written time; "kernel only" is the optimized generated function called
directly, so its ratio subtracted from the optimized one is the per-call overhead of
``Compiled.__call__``. Memory is shown twice: the memory plan's estimate of the peak
of a call's temporaries, and the peak tracemalloc measures in one call. "(its GEMMs alone)"
in (b) and (c) is the step's eight matrix products and nothing else, through SciPy's BLAS (the
one the LLVM kernels call): the floor of any step on this BLAS. JAX brings its own GEMM.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import tracemalloc
from pathlib import Path
from statistics import median

import numpy as np
from scipy.linalg import blas

try:
    import chainrule as cr
except ImportError:  # run from a checkout: python3 benchmarks/mlp.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr
import chainrule.nn as crnn

# ---- (a) the seed's network --------------------------------------------------------------


def spiral_data(points_per_class: int = 200, classes: int = 2):
    """Seed 002 12.10.2's generate_spiral_data: X of shape (2, 400), Y of shape (1, 400)."""
    rng = np.random.RandomState(1)
    X = np.zeros((points_per_class * classes, 2))
    Y = np.zeros((points_per_class * classes, 1))
    for j in range(classes):
        ix = range(points_per_class * j, points_per_class * (j + 1))
        r = np.linspace(0.0, 1, points_per_class)
        t = np.linspace(j * 4, (j + 1) * 4, points_per_class) + rng.randn(points_per_class) * 0.2
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        Y[ix] = j
    return X.T, Y.T


def seed_parameters(layer_dims=(2, 16, 8, 1)):
    """He init for the ReLU layers, Xavier for the sigmoid one, as the seed's class does."""
    rng = np.random.RandomState(42)
    parameters = {}
    for l in range(1, len(layer_dims)):
        scale = np.sqrt((2.0 if l < len(layer_dims) - 1 else 1.0) / layer_dims[l - 1])
        parameters[f"W{l}"] = rng.randn(layer_dims[l], layer_dims[l - 1]) * scale
        parameters[f"b{l}"] = rng.randn(layer_dims[l], 1) * 0.1  # nonzero, so relu kinks are not hit
    return parameters


def seed_forward(p, X):
    """The seed's forward pass for three layers: every value its backward needs."""
    Z1 = np.dot(p["W1"], X) + p["b1"]
    A1 = np.maximum(0, Z1)
    Z2 = np.dot(p["W2"], A1) + p["b2"]
    A2 = np.maximum(0, Z2)
    Z3 = np.dot(p["W3"], A2) + p["b3"]
    A3 = 1.0 / (1.0 + np.exp(-Z3))
    return Z1, A1, Z2, A2, A3


def seed_cost(A3, Y):
    m = Y.shape[1]
    return -(1 / m) * np.sum(Y * np.log(A3) + (1 - Y) * np.log(1 - A3))


def seed_loss(p, X, Y):
    return seed_cost(seed_forward(p, X)[-1], Y)


def seed_by_hand(p, X, Y):
    """The seed's forward, compute_cost and backward, for three layers."""
    m = Y.shape[1]
    Z1, A1, Z2, A2, A3 = seed_forward(p, X)
    cost = seed_cost(A3, Y)
    dZ3 = A3 - Y
    dW3 = (1 / m) * np.dot(dZ3, A2.T)
    db3 = (1 / m) * np.sum(dZ3, axis=1, keepdims=True)
    dZ2 = np.dot(p["W3"].T, dZ3) * (Z2 > 0).astype(float)
    dW2 = (1 / m) * np.dot(dZ2, A1.T)
    db2 = (1 / m) * np.sum(dZ2, axis=1, keepdims=True)
    dZ1 = np.dot(p["W2"].T, dZ2) * (Z1 > 0).astype(float)
    dW1 = (1 / m) * np.dot(dZ1, X.T)
    db1 = (1 / m) * np.sum(dZ1, axis=1, keepdims=True)
    return cost, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2, "W3": dW3, "b3": db3}


# ---- (b) a softmax MLP -------------------------------------------------------------------


def softmax_problem(layer_dims=(784, 256, 256, 10), batch: int = 128, dtype=np.float64):
    rng = np.random.RandomState(0)
    parameters = {}
    for l in range(1, len(layer_dims)):
        parameters[f"W{l}"] = rng.randn(layer_dims[l - 1], layer_dims[l]) * np.sqrt(2.0 / layer_dims[l - 1])
        parameters[f"b{l}"] = rng.randn(layer_dims[l]) * 0.1
    x = rng.randn(batch, layer_dims[0])
    labels = rng.randint(0, layer_dims[-1], size=batch)
    parameters = {name: value.astype(dtype) for name, value in parameters.items()}
    return parameters, x.astype(dtype), labels


def softmax_loss(p, x, labels):
    h1 = np.maximum(0, x @ p["W1"] + p["b1"])
    h2 = np.maximum(0, h1 @ p["W2"] + p["b2"])
    logits = h2 @ p["W3"] + p["b3"]
    return crnn.cross_entropy(logits, labels)


def softmax_by_hand(p, x, labels):
    """The textbook backward: dZ = (softmax - onehot) / m, dW = A.T @ dZ, db = sum(dZ)."""
    m = x.shape[0]
    Z1 = x @ p["W1"] + p["b1"]
    A1 = np.maximum(0, Z1)
    Z2 = A1 @ p["W2"] + p["b2"]
    A2 = np.maximum(0, Z2)
    Z3 = A2 @ p["W3"] + p["b3"]
    shifted = Z3 - np.max(Z3, axis=1, keepdims=True)
    exps = np.exp(shifted)
    sums = np.sum(exps, axis=1, keepdims=True)
    rows = np.arange(m)
    loss = -np.mean(shifted[rows, labels] - np.log(sums[:, 0]))
    dZ3 = exps / sums
    dZ3[rows, labels] -= 1.0
    dZ3 /= m
    dW3 = A2.T @ dZ3
    db3 = np.sum(dZ3, axis=0)
    dZ2 = (dZ3 @ p["W3"].T) * (Z2 > 0)
    dW2 = A1.T @ dZ2
    db2 = np.sum(dZ2, axis=0)
    dZ1 = (dZ2 @ p["W2"].T) * (Z1 > 0)
    dW1 = x.T @ dZ1
    db1 = np.sum(dZ1, axis=0)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2, "W3": dW3, "b3": db3}


# ---- peers ---------------------------------------------------------------------------------


def peer_note() -> str:
    """JAX / PyTorch are never installed by this script; say which ones are importable."""
    import importlib.util

    found = [name for name in ("jax", "torch") if importlib.util.find_spec(name) is not None]
    missing = [name for name in ("jax", "torch") if name not in found]
    note = ""
    if missing:
        note += f"{' and '.join(missing)} not importable here: no peer rows for them."
    if "jax" in found:
        note += " JAX (jit of value_and_grad, float64, on the CPU) has a row in (b)."
    if "torch" in found:
        note += " PyTorch is importable, but its rows are not implemented in this script."
    return note.strip()


def jax_softmax_step(p, x, labels):
    """JAX's compiled step for (b): the same loss, written with jax.numpy; None without JAX."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def loss(p, x, labels):
        h1 = jnp.maximum(0, x @ p["W1"] + p["b1"])
        h2 = jnp.maximum(0, h1 @ p["W2"] + p["b2"])
        logits = h2 @ p["W3"] + p["b3"]
        log_probabilities = logits - jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
        return -jnp.mean(log_probabilities[jnp.arange(x.shape[0]), labels])

    step = jax.jit(jax.value_and_grad(loss))
    p, x, labels = jax.tree_util.tree_map(jnp.asarray, (p, x, labels))

    def run():
        value, grads = step(p, x, labels)
        value.block_until_ready()
        return np.asarray(value), {key: np.asarray(grad) for key, grad in grads.items()}

    return run


# ---- measuring ---------------------------------------------------------------------------


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _minor_faults() -> int | None:
    """Minor page faults of this process so far (fresh pages from the OS), or None where not counted."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def interleaved_medians(functions: dict, rounds: int, block: int = 10, settle: int = 2) -> tuple[dict, dict]:
    """Median seconds per call of each function, measured in alternating blocks of consecutive calls,
    and the minor page faults per call during the calls that were timed.

    Each round runs every function ``block`` times in a row (rotating who goes
    first), so machine noise falls on all of them alike. The first ``settle``
    calls of a block are not counted: the memory allocator's state depends on
    what ran last (whether freed pages went back to the OS), and a training
    loop calls the same step again and again, so that is the state to measure.
    Faults are counted over the same calls, so they explain the times beside them.
    """
    names = list(functions)
    samples = {name: [] for name in names}
    faults = dict.fromkeys(names, 0)
    for rep in range(rounds):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            fn = functions[name]
            for _ in range(settle):
                fn()
            before = _minor_faults()
            samples[name].extend(_time(fn) for _ in range(block - settle))
            faults[name] = None if before is None else faults[name] + _minor_faults() - before
    counted = rounds * (block - settle)
    return (
        {name: median(values) for name, values in samples.items()},
        {name: None if total is None else total / counted for name, total in faults.items()},
    )


def compile_seconds(loss_fn, args, optimize: bool, backend: str = "numpy", fresh_compilations: int = 3) -> float:
    """Median wall time of the first call (trace + differentiate + generate + one run) of a fresh function
    (for the llvm backend, with LLVM's object code read from its disk cache after the first)."""
    times = []
    for _ in range(fresh_compilations):
        # a new function object each time: kernels are shared per function
        fresh = functools.wraps(loss_fn)(lambda *a, **k: loss_fn(*a, **k))
        compiled = cr.value_and_grad(fresh, optimize=optimize, backend=backend)
        times.append(_time(lambda: compiled(*args)))
    return median(times)


def measured_peak_bytes(fn) -> int:
    """The most bytes one call has allocated at once, as tracemalloc sees it.

    NumPy reports its array buffers to tracemalloc, so this is the measured
    counterpart of the memory plan's estimate: temporaries and the returned
    arrays, not the inputs (allocated before tracing starts). The call before
    tracing starts keeps one-time allocations (specializations, caches) out.
    """
    fn()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def max_gradient_difference(ours, theirs) -> float:
    (our_value, our_grads), (their_value, their_grads) = ours, theirs
    worst = abs(float(our_value) - float(their_value))
    for key, theirs_leaf in their_grads.items():
        mine = our_grads[key]
        assert mine.shape == theirs_leaf.shape and mine.dtype == theirs_leaf.dtype, key
        worst = max(worst, float(np.max(np.abs(mine - theirs_leaf))))
    return worst


HAND_WRITTEN = "hand-written NumPy"
KERNEL_ONLY = "  (generated kernel only)"
CHAINRULE_VARIANTS = (
    ("chainrule, optimized", True, "numpy"),
    ("chainrule, optimize=False", False, "numpy"),
    ("chainrule, llvm backend", True, "llvm"),
)
JAX = "JAX jit"


GEMMS_ALONE = "  (its GEMMs alone)"


def gemms_alone(p, x, labels):
    """The matrix products an MLP step cannot do without, and nothing else: per layer forward
    ``A @ W``, backward ``A.T @ dZ`` and (but for the first layer) ``dZ @ W.T``, through SciPy's BLAS,
    the one chainrule's kernels call. The floor of a step that calls this BLAS: JAX brings its own."""
    gemm = blas.dgemm if x.dtype == np.float64 else blas.sgemm

    def product(a, b, transpose_a=False, transpose_b=False):  # C-ordered a @ b as Fortran b.T @ a.T
        return gemm(1.0, b.T, a.T, trans_a=transpose_b, trans_b=transpose_a).T

    weights = [p[f"W{l}"] for l in range(1, len(p) // 2 + 1)]
    activations = [x]
    for W in weights:
        activations.append(product(activations[-1], W))
    gradient = activations[-1]
    for layer in range(len(weights) - 1, -1, -1):
        product(activations[layer], gradient, transpose_a=True)
        if layer:
            gradient = product(gradient, weights[layer], transpose_b=True)


def benchmark(label: str, loss_fn, by_hand, args, rounds: int, peer=None, floor=None) -> list[dict]:
    """One row per implementation: the hand-written step, then chainrule with and without the optimizer,
    on the llvm backend, ``peer`` (JAX) and ``floor`` (the step's GEMMs alone) when given."""
    functions = {HAND_WRITTEN: lambda: by_hand(*args)}
    if floor is not None:
        functions[GEMMS_ALONE] = lambda: floor(*args)
    compiled_facts = {}  # implementation name -> what only a compiled step has: graph size, estimate, accuracy
    expected = by_hand(*args)
    for name, optimize, backend in CHAINRULE_VARIANTS:
        step = cr.value_and_grad(loss_fn, optimize=optimize, backend=backend)
        final_graph = step.graph(*args)  # the "scheduled" stage, the one the kernel is generated from
        compiled_facts[name] = {
            "nodes": len(final_graph),
            "estimated_peak": final_graph.memory_plan.peak_bytes,
            "compile": compile_seconds(loss_fn, args, optimize, backend),
            "difference": max_gradient_difference(step(*args), expected),
        }
        functions[name] = lambda step=step: step(*args)
        if optimize and backend == "numpy":
            # The generated function alone, to split the time into kernel and call overhead.
            entry, leaves = step._specialize(args)
            kernel_inputs = [leaves[i] for i in entry.traced_leaves]
            functions[KERNEL_ONLY] = lambda kernel=entry.kernel.fn, inputs=kernel_inputs: kernel(*inputs)
    if peer is not None:
        functions[JAX] = peer
        compiled_facts[JAX] = {"difference": max_gradient_difference(peer(), expected)}
    medians, faults = interleaved_medians(functions, rounds)
    baseline = medians[HAND_WRITTEN]
    rows = []
    for name, seconds in medians.items():
        rows.append(
            {
                "problem": label,
                "implementation": name,
                "median": seconds,
                "ratio": seconds / baseline,
                "faults": faults[name],
                "measured_peak": measured_peak_bytes(functions[name]),
                **compiled_facts.get(name, {}),
            }
        )
    return rows


def _format_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:7.1f} us"
    return f"{seconds * 1e3:7.2f} ms"


def _format_bytes(count: int) -> str:
    if count < 1024**2:
        return f"{count / 1024:6.1f} KiB"
    return f"{count / 1024**2:6.2f} MiB"


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'problem':<28} {'implementation':<26} {'median step':>11} {'ratio':>6} {'faults':>6} "
        f"{'nodes':>5} {'peak (plan)':>11} {'peak (meas.)':>12} {'first call':>11} {'max |dgrad|':>11}"
    )
    print(header)
    print("-" * len(header))
    previous = None
    for row in rows:
        problem = row["problem"] if row["problem"] != previous else ""
        previous = row["problem"]
        faults = f"{row['faults']:.0f}" if row["faults"] is not None else "-"
        nodes = str(row["nodes"]) if "nodes" in row else ""
        estimated = _format_bytes(row["estimated_peak"]) if "estimated_peak" in row else ""
        compile_text = _format_seconds(row["compile"]) if "compile" in row else ""
        difference = f"{row['difference']:.1e}" if "difference" in row else ""
        print(
            f"{problem:<28} {row['implementation']:<26} {_format_seconds(row['median']):>11} "
            f"{row['ratio']:6.2f} {faults:>6} {nodes:>5} {estimated:>11} "
            f"{_format_bytes(row['measured_peak']):>12} {compile_text:>11} {difference:>11}"
        )


def main() -> None:
    X, Y = spiral_data()
    rows = benchmark("(a) seed [2,16,8,1], m=400", seed_loss, seed_by_hand, (seed_parameters(), X, Y), rounds=2000)
    problem = softmax_problem()
    rows += benchmark(
        "(b) [784,256,256,10], m=128",
        softmax_loss,
        softmax_by_hand,
        problem,
        rounds=150,
        peer=jax_softmax_step(*problem),
        floor=gemms_alone,
    )
    problem32 = softmax_problem(dtype=np.float32)
    rows += benchmark(
        "(c) as (b), float32",
        softmax_loss,
        softmax_by_hand,
        problem32,
        rounds=150,
        peer=jax_softmax_step(*problem32),
        floor=gemms_alone,
    )
    print(f"NumPy {np.__version__}, {os.cpu_count()} CPUs; medians of interleaved blocks of calls")
    print()
    print_table(rows)
    print()
    print("ratio = time / hand-written time (targets: <= 1.25; issue 3: <= 1.0 for (b) with the optimizer).")
    print("faults = minor page faults per timed call: fresh pages from the OS, ~2 us each here, ~2 ms a step in (b).")
    print("Whether a step faults depends on when glibc's malloc returns freed memory to the OS, which depends")
    print("on what ran before: compare faults before reading a few percent of ratio as a code difference.")
    print("nodes = nodes of the final (scheduled) graph, inputs and constants included.")
    print("peak (plan) = the schedule's estimate of the most bytes a call holds at once (memory_plan.peak_bytes);")
    print("peak (meas.) = that peak as tracemalloc measured it in one call; both count temporaries and the")
    print("returned gradients, not the inputs. first call = trace + compile + one run, median of 3 fresh")
    print("functions. max |dgrad| = largest difference from the hand-written pass in the loss or any gradient.")
    for problem_label in ("(b)", "(c)"):
        by_name = {row["implementation"]: row["median"] for row in rows if row["problem"].startswith(problem_label)}
        llvm = by_name["chainrule, llvm backend"]
        versus = [f"{llvm / by_name[name]:.2f}x {name}'s" for name in (HAND_WRITTEN, JAX) if name in by_name]
        print(
            f"{problem_label} llvm backend step time = {' and '.join(versus)} (targets: <= 1.0x hand-written, < 1.0x JAX)."
        )
    print(peer_note())


if __name__ == "__main__":
    main()
