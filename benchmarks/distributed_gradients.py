"""chainrule on Dask against chainrule in one process, in the same run.

(Not benchmarks/distributed.py: run as a script, that name would shadow the ``distributed``
package that ``dask.distributed`` imports, in this process and in the workers it spawns.)

    python3 benchmarks/distributed_gradients.py               # a few minutes; prints five tables
    python3 benchmarks/distributed_gradients.py --quick       # smaller sizes, fewer repeats, epochs
    python3 benchmarks/distributed_gradients.py --part compression   # table (5) only

(1) Overhead: the distributed gradient on a 1-worker LocalCluster against the in-process one
    for (a) an MLP 784-256-10 (tanh, mean squared error) over 10^5 rows, value_and_grad, and (b)
    seed 001's nested function at depth 30 over 10^7 points, its elementwise derivative through
    ``chainrule.distributed.map`` (llvm backend on both sides).
(2) Scaling from 1 to 2 workers (this machine has 2 cores; one worker thread each).
(3) The parts of the cost model in docs/distributed.md: the scheduler's overhead per task (an
    empty task's round trip), the seconds to send the parameters to every worker, and the bytes
    each chunk returns (the gradient, pickled) with each transport.
(4) The cost model's predictions next to the 1- and 2-worker measurements.
(5) Gradient compression in data-parallel training (seed 003, 7.3) on 2 workers: the spiral
    classifier of examples/distributed_training.py trained with each transport (none, float16,
    top-k with error feedback at 50%, 10%, 1%): final loss, accuracy, and the bytes one step's
    chunks send (measured pickles).

The data of (1) and (2) is made on the workers (``dask.array.random`` with a seed, persisted
before any timing), and the in-process baseline computes on the same values fetched once, so the
times hold the per-call cost only, not an upload of the data. Times are medians of repeats;
every repeat makes a new compiled function (compiled kernels are cached per function object, so
a reused one would measure a cache hit), after one warm-up call that compiles on each worker.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import chainrule as cr
import chainrule.distributed as crd
from chainrule.cli.nested_function import nested_numpy


def mlp_loss(params, x, y):
    return np.mean((np.tanh(x @ params["W1"] + params["b1"]) @ params["W2"] - y) ** 2)


def mlp_params(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.standard_normal((784, 256)) * 0.03,
        "b1": np.zeros(256),
        "W2": rng.standard_normal((256, 10)) * 0.06,
    }


def on_workers(shape: tuple[int, ...], chunks: int, seed: int):
    """Standard-normal data made and kept on the workers (persisted), in ``chunks`` row chunks."""
    import dask.array as da

    rows_per_chunk = (shape[0] + chunks - 1) // chunks
    return da.random.default_rng(seed).standard_normal(shape, chunks=(rows_per_chunk, *shape[1:])).persist()


def nested_sum(depth: int):
    f = nested_numpy(depth)

    def total(x):
        return np.sum(f(x))

    return total


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_pair(make_local, make_distributed, repeats: int) -> tuple[float, float]:
    """(in-process seconds, distributed seconds), medians, a fresh compiled function per repeat
    warmed up by one call; repeats alternate between the two so machine noise hits both."""
    local_times, distributed_times = [], []
    for _ in range(repeats):
        for make, times in ((make_local, local_times), (make_distributed, distributed_times)):
            run = make()
            run()  # compiles (here, or once on each worker)
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return statistics.median(local_times), statistics.median(distributed_times)


def overhead_rows(client, rows: int, points: int, chunks: int, repeats: int) -> list[tuple]:
    import dask.array as da

    params = mlp_params()
    dx, dy = on_workers((rows, 784), chunks, seed=1), on_workers((rows, 10), chunks, seed=2)
    x, y = dx.compute(), dy.compute()  # the same values for the in-process baseline
    mlp = timed_pair(
        lambda: (lambda vg: lambda: vg(params, x, y))(cr.value_and_grad(lambda *a: mlp_loss(*a))),
        lambda: (lambda vg: lambda: vg(params, dx, dy))(
            crd.value_and_grad(lambda *a: mlp_loss(*a), data_argnums=(1, 2), client=client)
        ),
        repeats,
    )
    dgrid = da.linspace(-3.0, 3.0, points, chunks=points // chunks).persist()
    grid = dgrid.compute()
    nested = timed_pair(
        lambda: (lambda g: lambda: g(grid))(cr.grad(nested_sum(30), backend="llvm")),
        lambda: (lambda g: lambda: crd.map(g, dgrid).compute())(cr.grad(nested_sum(30), backend="llvm")),
        repeats,
    )
    return [
        (f"MLP 784-256-10, {rows:,} rows", *mlp),
        (f"nested d=30, {points:,} points", *nested),
    ]


def cost_parts(client, repeats: int) -> dict:
    """The cost model's measured parts on this cluster."""
    round_trip = median_seconds(lambda: client.submit(lambda: None, pure=False).result(), 5 * repeats)
    params, rng = mlp_params(), np.random.default_rng(0)
    x, y = rng.standard_normal((1_000, 784)), rng.standard_normal((1_000, 10))
    broadcast = median_seconds(lambda: client.scatter([params], broadcast=True, hash=False), repeats)
    parts = {
        "task round trip (s)": round_trip,
        "parameter broadcast (s)": broadcast,
        "parameter bytes": sum(value.nbytes for value in params.values()),
    }
    for name, transport in (("float64", None), ("float16", "float16"), ("top-1%", crd.TopK(0.01))):
        gradient = crd.value_and_grad(mlp_loss, data_argnums=(1, 2), client=client, transport=transport)
        gradient(params, x, y)
        gradient.release()
        parts[f"gradient bytes per chunk, {name}"] = gradient.bytes_per_chunk[0]
    return parts


def predicted_step(
    workers: int,
    rows: int,
    seconds_per_row: float,
    parameter_bytes: float,
    task_seconds: float,
    bandwidth: float = 1.25e9,
    split_every: int = 8,
) -> float:
    """docs/distributed.md's cost model of one distributed gradient: the parameters sent to every
    worker from the client's link, the chunks computed in parallel, the gradients added up a tree
    of fan-in ``split_every`` (each level moves that many gradients into one worker), and the
    scheduler handling each task one after the other."""
    broadcast = workers * parameter_bytes / bandwidth
    compute = seconds_per_row * rows / workers
    levels = max(1, int(np.ceil(np.log(workers) / np.log(split_every)))) if workers > 1 else 0
    reduce = levels * (min(split_every, workers) * parameter_bytes / bandwidth + task_seconds)
    tasks = workers + sum(int(np.ceil(workers / split_every**level)) for level in range(1, levels + 1))
    return broadcast + compute + reduce + tasks * task_seconds + task_seconds  # + the client's round trip


def model_rows(parts: dict, measured: dict, rows: int, local_seconds: float) -> list[tuple]:
    """(workers, model, predicted seconds, measured or None): the cost model checked against the
    1- and 2-worker runs on this machine (bandwidth: local, ~memory speed), and its predictions
    for 8, 64 and 512 workers on a 10 Gb/s network for this MLP and a 100M-parameter model."""
    per_row = local_seconds / rows
    table = []
    for workers in (1, 2):
        predicted = predicted_step(workers, rows, per_row, parts["parameter bytes"], parts["task round trip (s)"], 5e9)
        table.append((workers, "MLP, this machine", predicted, measured[workers]))
    big_bytes, big_per_row = 100e6 * 4, per_row * 100e6 / (parts["parameter bytes"] / 8)  # float32, ~6 flops/param/row
    for workers in (8, 64, 512):
        table.append(
            (workers, "MLP, 10 Gb/s", predicted_step(workers, rows, per_row, parts["parameter bytes"], 1e-3), None)
        )
        table.append(
            (workers, "100M params, 10 Gb/s", predicted_step(workers, rows, big_per_row, big_bytes, 1e-3), None)
        )
    return table


COMPRESSIONS = (
    ("none", None),
    ("float16", "float16"),
    ("top-50%", crd.TopK(0.5)),
    ("top-10%", crd.TopK(0.1)),
    ("top-1%", crd.TopK(0.01)),
)


def compression_rows(client, epochs: int) -> list[tuple]:
    """(transport, final loss, accuracy %, bytes per step or None, seconds) for the spiral
    classifier trained in this process and on ``client`` with each transport."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    from distributed_training import bytes_per_step, train
    from spiral_classifier import spiral_data

    x, y = spiral_data()
    table = []
    for name, transport in (("in process", None), *COMPRESSIONS):
        here = name == "in process"
        model, result, seconds = train(x, y, epochs, None if here else client, transport)
        accuracy = float(np.mean((model.apply(result.params, x) > 0.5) == (y > 0.5)) * 100)
        sent = None if here else bytes_per_step(model, result.params, x, y, client, transport)
        table.append((name, result.history["loss"][-1], accuracy, sent, seconds))
    return table


def print_compression(table: list[tuple], epochs: int) -> None:
    print(f"\n(5) gradient compression, spiral classifier 2-16-8-1, {epochs} epochs of batch 64, 2 workers")
    print(f"{'transport':<14}{'final loss':>12}{'accuracy':>10}{'bytes/step':>12}{'seconds':>9}")
    for name, loss, accuracy, sent, seconds in table:
        print(f"{name:<14}{loss:>12.5f}{accuracy:>9.1f}%{'' if sent is None else sent:>12}{seconds:>9.2f}")


def main(argv=None) -> None:
    from dask.distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=("all", "overhead", "compression"), default="all")
    args = parser.parse_args(argv)
    rows, points, repeats = (20_000, 1_000_000, 3) if args.quick else (100_000, 10_000_000, 5)
    epochs = 5 if args.quick else 30
    results, compression = {}, []
    for workers in (1, 2):
        if args.part == "compression" and workers == 1:
            continue
        with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster:
            with Client(cluster) as client:
                if args.part != "compression":
                    results[workers] = overhead_rows(client, rows, points, chunks=8, repeats=repeats)
                if workers == 1:
                    parts = cost_parts(client, repeats)
                if workers == 2 and args.part != "overhead":
                    compression = compression_rows(client, epochs)
    if args.part != "compression":
        print_overhead(results, parts, rows)
    if compression:
        print_compression(compression, epochs)


def print_overhead(results: dict, parts: dict, rows: int) -> None:
    print("\n(1) overhead: distributed on 1 worker vs in process (medians, seconds)")
    print(f"{'workload':<34}{'in process':>12}{'1 worker':>10}{'ratio':>8}")
    for name, local, remote in results[1]:
        print(f"{name:<34}{local:>12.3f}{remote:>10.3f}{remote / local:>8.2f}")
    print("\n(2) scaling: 1 -> 2 workers (2 cores)")
    print(f"{'workload':<34}{'1 worker':>10}{'2 workers':>11}{'speed-up':>10}")
    for (name, _, one), (_, _, two) in zip(results[1], results[2]):
        print(f"{name:<34}{one:>10.3f}{two:>11.3f}{one / two:>10.2f}")
    print("\n(3) cost-model parts (1-worker cluster, MLP 784-256-10)")
    for key, value in parts.items():
        print(f"{key:<38}{value:>14.4g}")
    measured = {workers: results[workers][0][2] for workers in (1, 2)}
    print(f"\n(4) cost model (docs/distributed.md), one gradient over {rows:,} rows; 1 ms per task off this machine")
    print(f"{'workers':>8}  {'model':<24}{'predicted s':>12}{'measured s':>12}")
    for workers, name, predicted, seen in model_rows(parts, measured, rows, results[1][0][1]):
        print(f"{workers:>8}  {name:<24}{predicted:>12.4f}{'' if seen is None else f'{seen:.4f}':>12}")


if __name__ == "__main__":
    main()
