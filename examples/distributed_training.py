"""Data-parallel training on a Dask cluster: seed 002's spiral classifier, each mini-batch's
gradient computed on the workers, one chunk of the batch per worker, and the Adam update here.

It trains four times with the same seed and batches: in this process, on the cluster, and on
the cluster with the chunks' gradients compressed (seed 003, 7.3: compress what goes over the
network): sent as float16, and sparsified to each chunk's top 10% of elements with error
feedback (the rest waits on its worker and joins the next step's gradient). The first two agree
to rounding; the table shows what the compressed ones cost in accuracy and save in bytes.

    python examples/distributed_training.py                       # a LocalCluster of 2 workers
    python examples/distributed_training.py --scheduler tcp://host:8786 --epochs 50

Needs Dask: pip install "chainrule[dask]".
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from dask.distributed import Client, LocalCluster
from spiral_classifier import spiral_data  # seed 002's spirals, as the other training examples use

import chainrule.distributed as crd
from chainrule import nn, optim
from chainrule.frontends.pytree import flatten
from chainrule.train import fit

BATCH_SIZE = 64
TOP_10 = crd.TopK(0.1)


def train(x, y, epochs, client=None, transport=None):
    """(fit result, seconds): the seed's 2-16-8-1 network, Adam, binary cross-entropy."""
    model = nn.Sequential([2, 16, 8, 1], activations=["relu", "relu", "sigmoid"])
    start = time.perf_counter()
    result = fit(
        model,
        model.init(42),
        x,
        y,
        loss="bce",
        optimizer=optim.adam(0.01),
        epochs=epochs,
        batch_size=BATCH_SIZE,
        fused=False,
        progress=False,
        client=client,
        transport=transport,
    )
    return model, result, time.perf_counter() - start


def bytes_per_step(model, params, x, y, client, transport) -> int:
    """What the workers send for one batch's gradient (pickled, summed over the chunks), measured
    on a distributed gradient of the same loss and parameters as a training step."""

    def loss(params, x, y):
        return nn.functional.binary_cross_entropy(model.apply(params, x), y)

    gradient = crd.value_and_grad(loss, data_argnums=(1, 2), client=client, transport=transport)
    gradient(params, x[:BATCH_SIZE], y[:BATCH_SIZE])
    gradient.release()
    return sum(gradient.bytes_per_chunk)


def largest_difference(a, b) -> float:
    return max(float(np.max(np.abs(p - q))) for p, q in zip(flatten(a)[0], flatten(b)[0]))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", help="address of a running Dask scheduler (default: start a LocalCluster)")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers (default 2)")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)
    x, y = spiral_data()
    if args.scheduler:
        client, cluster = Client(args.scheduler), None
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=None)
        client = Client(cluster)
    try:
        workers = len(client.scheduler_info()["workers"])
        print(f"{workers} Dask workers at {client.scheduler.address}; {len(x)} examples, batch {BATCH_SIZE}")
        transports = {"cluster": None, "cluster, float16 transport": "float16", "cluster, top-10% transport": TOP_10}
        runs = {"this process": (*train(x, y, args.epochs), None)}
        for name, transport in transports.items():
            model, result, seconds = train(x, y, args.epochs, client, transport)
            runs[name] = (model, result, seconds, bytes_per_step(model, result.params, x, y, client, transport))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return report(runs, x, y)


def report(runs, x, y) -> dict:
    """Print the runs' table; return {run: {"loss", "accuracy", "difference", "bytes"}}."""
    reference = runs["this process"][1]
    header = f"{'run':<28}{'final loss':>12}{'accuracy':>10}{'max |param - one process|':>28}"
    print(f"\n{header}{'bytes/step':>12}{'seconds':>9}")
    summary = {}
    for name, (model, result, seconds, sent) in runs.items():
        prediction = model.apply(result.params, x)
        accuracy = float(np.mean((prediction > 0.5) == (y > 0.5)) * 100)
        difference = largest_difference(result.params, reference.params)
        summary[name] = {
            "loss": result.history["loss"][-1],
            "accuracy": accuracy,
            "difference": difference,
            "bytes": sent,
        }
        row = f"{name:<28}{result.history['loss'][-1]:>12.5f}{accuracy:>9.1f}%{difference:>28.2e}"
        print(f"{row}{'' if sent is None else sent:>12}{seconds:>9.2f}")
    print("\nThe cluster's steps add the workers' gradients in another order: equal to rounding.")
    print("float16 transport sends a quarter of the bytes; its gradients carry ~1e-3 relative error.")
    print("top-10% sends each chunk's largest tenth (value and int32 index); the rest is sent later.")
    return summary


if __name__ == "__main__":
    main()
