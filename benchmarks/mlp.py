"""One gradient step of two MLPs: chainrule's NumPy backend against the hand-written backward pass.

    python3 benchmarks/mlp.py            # about 30 s; prints one table

(a) seed 002 12.10.1's DeepNeuralNetwork [2, 16, 8, 1] on the 400-point spiral:
    column-major ``Z = np.dot(W, A) + b``, ReLU hidden, sigmoid out, mean binary
    cross-entropy. The seed's cost adds 1e-8 inside the logs and clips Z before the
    sigmoid, which makes its own ``dZ = AL - Y`` differ from the true gradient by
    ~1e-8; both are dropped here so the two sides compute the same function exactly.
(b) a [784, 256, 256, 10] row-major MLP (``x @ W + b``), ReLU, softmax cross-entropy
    with integer labels (``chainrule.nn.cross_entropy``), batch 128.

Both sides return the loss and every gradient. They run in alternating blocks of
consecutive calls, so machine noise hits both alike; times are medians. "ratio" is
chainrule / hand-written; "kernel only" is the generated function called directly,
so "ratio" minus that is the per-call overhead of ``Compiled.__call__``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np

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


def softmax_problem(layer_dims=(784, 256, 256, 10), batch: int = 128):
    rng = np.random.RandomState(0)
    parameters = {}
    for l in range(1, len(layer_dims)):
        parameters[f"W{l}"] = rng.randn(layer_dims[l - 1], layer_dims[l]) * np.sqrt(2.0 / layer_dims[l - 1])
        parameters[f"b{l}"] = rng.randn(layer_dims[l]) * 0.1
    x = rng.randn(batch, layer_dims[0])
    labels = rng.randint(0, layer_dims[-1], size=batch)
    return parameters, x, labels


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
        note += f"{' and '.join(missing)} not importable here: no peer rows."
    if found:
        note += f" {' and '.join(found)} importable, but peer rows are not implemented in this script."
    return note.strip()


# ---- measuring ---------------------------------------------------------------------------


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_medians(functions: dict, rounds: int, block: int = 10, settle: int = 2) -> dict:
    """Median seconds per call of each function, measured in alternating blocks of consecutive calls.

    Each round runs every function ``block`` times in a row (rotating who goes
    first), so machine noise falls on all of them alike. The first ``settle``
    calls of a block are not counted: the memory allocator's state depends on
    what ran last (whether freed pages went back to the OS), and a training
    loop calls the same step again and again, so that is the state to measure.
    """
    names = list(functions)
    samples = {name: [] for name in names}
    for rep in range(rounds):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            fn = functions[name]
            times = [_time(fn) for _ in range(block)]
            samples[name].extend(times[settle:])
    return {name: median(values) for name, values in samples.items()}


def page_faults_per_call(fn, calls: int = 20) -> float | None:
    """Minor page faults per call in steady state: fresh pages the allocator had to ask the OS for."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    for _ in range(3):
        fn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def compile_seconds(loss_fn, args, fresh_compilations: int = 3) -> float:
    """Median wall time of the first call (trace + differentiate + generate + one run) of a fresh function."""
    times = []
    for _ in range(fresh_compilations):
        compiled = cr.value_and_grad(loss_fn)
        times.append(_time(lambda: compiled(*args)))
    return median(times)


def max_gradient_difference(ours, theirs) -> float:
    (our_value, our_grads), (their_value, their_grads) = ours, theirs
    worst = abs(float(our_value) - float(their_value))
    for key, theirs_leaf in their_grads.items():
        mine = our_grads[key]
        assert mine.shape == theirs_leaf.shape and mine.dtype == theirs_leaf.dtype, key
        worst = max(worst, float(np.max(np.abs(mine - theirs_leaf))))
    return worst


def benchmark(label: str, loss_fn, by_hand, args, rounds: int) -> list[dict]:
    first_call = compile_seconds(loss_fn, args)
    step = cr.value_and_grad(loss_fn)
    difference = max_gradient_difference(step(*args), by_hand(*args))
    # The generated function alone, to split the time into kernel and call overhead.
    entry, leaves = step._specialize(args)
    traced_leaves = [leaf for leaf, s in zip(leaves, entry.spec.leaves) if s.traced]
    kernel = entry.kernel.fn
    functions = {
        "hand-written NumPy": lambda: by_hand(*args),
        "chainrule value_and_grad": lambda: step(*args),
        "  (generated kernel only)": lambda: kernel(*traced_leaves),
    }
    medians = interleaved_medians(functions, rounds)
    baseline = medians["hand-written NumPy"]
    rows = []
    for name, seconds in medians.items():
        rows.append({"problem": label, "implementation": name, "median": seconds, "ratio": seconds / baseline,
                     "faults": page_faults_per_call(functions[name]),
                     "compile": first_call if name.startswith("chainrule") else None,
                     "difference": difference if name.startswith("chainrule") else None})
    return rows


def _format_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:7.1f} us"
    return f"{seconds * 1e3:7.2f} ms"


def print_table(rows: list[dict]) -> None:
    header = (f"{'problem':<28} {'implementation':<26} {'median step':>11} {'ratio':>6} {'faults':>6} "
              f"{'first call':>11} {'max |dgrad|':>11}")
    print(header)
    print("-" * len(header))
    previous = None
    for row in rows:
        problem = row["problem"] if row["problem"] != previous else ""
        previous = row["problem"]
        faults = f"{row['faults']:.0f}" if row["faults"] is not None else "-"
        compile_text = _format_seconds(row["compile"]) if row["compile"] is not None else ""
        difference = f"{row['difference']:.1e}" if row["difference"] is not None else ""
        print(f"{problem:<28} {row['implementation']:<26} {_format_seconds(row['median']):>11} "
              f"{row['ratio']:6.2f} {faults:>6} {compile_text:>11} {difference:>11}")


def main() -> None:
    X, Y = spiral_data()
    rows = benchmark("(a) seed [2,16,8,1], m=400", seed_loss, seed_by_hand, (seed_parameters(), X, Y),
                     rounds=2000)
    rows += benchmark("(b) [784,256,256,10], m=128", softmax_loss, softmax_by_hand, softmax_problem(), rounds=150)
    print(f"NumPy {np.__version__}, {os.cpu_count()} CPUs; medians of interleaved blocks of calls")
    print()
    print_table(rows)
    print()
    print("ratio = chainrule / hand-written (target <= 1.25). faults = minor page faults per call (fresh memory")
    print("from the OS, ~1 us each here). first call = trace + compile + one run, median of 3 fresh functions.")
    print("max |dgrad| = largest difference from the hand-written pass in the loss or any gradient entry.")
    print(peer_note())


if __name__ == "__main__":
    main()
