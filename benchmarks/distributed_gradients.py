"""chainrule on Dask against chainrule in one process, in the same run.

(Not benchmarks/distributed.py: run as a script, that name would shadow the ``distributed``
package that ``dask.distributed`` imports, in this process and in the workers it spawns.)

    python3 benchmarks/distributed_gradients.py               # a few minutes; prints three tables
    python3 benchmarks/distributed_gradients.py --quick       # smaller sizes, fewer repeats

(1) Overhead: the distributed gradient on a 1-worker LocalCluster against the in-process one
    for (a) an MLP 784-256-10 (tanh, mean squared error) over 10^5 rows, value_and_grad, and (b)
    seed 001's nested function at depth 30 over 10^7 points, its elementwise derivative through
    ``chainrule.distributed.map`` (llvm backend on both sides).
(2) Scaling from 1 to 2 workers (this machine has 2 cores; one worker thread each).
(3) The parts of the cost model in docs/distributed.md: the scheduler's overhead per task (an
    empty task's round trip), the seconds to send the parameters to every worker, and the bytes
    each chunk returns (the gradient) with and without float16 transport.

Times are medians of repeats; every repeat makes a new compiled function (compiled kernels
are cached per function object, so a reused one would measure a cache hit), after one warm-up
call that compiles on each worker.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import chainrule as cr
import chainrule.distributed as crd
from chainrule.cli.nested_function import nested_numpy


def mlp_loss(params, x, y):
    return np.mean((np.tanh(x @ params["W1"] + params["b1"]) @ params["W2"] - y) ** 2)


def mlp_problem(rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = {
        "W1": rng.standard_normal((784, 256)) * 0.03,
        "b1": np.zeros(256),
        "W2": rng.standard_normal((256, 10)) * 0.06,
    }
    return params, rng.standard_normal((rows, 784)), rng.standard_normal((rows, 10))


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

    params, x, y = mlp_problem(rows)
    dx, dy = da.from_array(x, chunks=rows // chunks).persist(), da.from_array(y, chunks=rows // chunks).persist()
    mlp = timed_pair(
        lambda: (lambda vg: lambda: vg(params, x, y))(cr.value_and_grad(lambda *a: mlp_loss(*a))),
        lambda: (lambda vg: lambda: vg(params, dx, dy))(
            crd.value_and_grad(lambda *a: mlp_loss(*a), data_argnums=(1, 2), client=client)
        ),
        repeats,
    )
    grid = np.linspace(-3.0, 3.0, points)
    dgrid = da.from_array(grid, chunks=points // chunks).persist()
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
    params, x, y = mlp_problem(1_000)
    broadcast = median_seconds(lambda: client.scatter([params], broadcast=True, hash=False), repeats)
    exact = crd.value_and_grad(mlp_loss, data_argnums=(1, 2), client=client)
    half = crd.value_and_grad(mlp_loss, data_argnums=(1, 2), client=client, transport="float16")
    exact(params, x, y), half(params, x, y)
    parameter_bytes = sum(value.nbytes for value in params.values())
    return {
        "task round trip (s)": round_trip,
        "parameter broadcast (s)": broadcast,
        "parameter bytes": parameter_bytes,
        "gradient bytes per chunk, float64": exact.bytes_per_chunk[0],
        "gradient bytes per chunk, float16": half.bytes_per_chunk[0],
    }


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


def main(argv=None) -> None:
    from dask.distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows, points, repeats = (20_000, 1_000_000, 3) if args.quick else (100_000, 10_000_000, 5)
    results = {}
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster:
            with Client(cluster) as client:
                results[workers] = overhead_rows(client, rows, points, chunks=8, repeats=repeats)
                if workers == 1:
                    parts = cost_parts(client, repeats)
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
