"""Data-parallel training on a Dask cluster: seed 002's spiral classifier, each mini-batch's
gradient computed on the workers, one chunk of the batch per worker, and the Adam update here.

It trains three times with the same seed and batches: in this process, on the cluster, and
on the cluster with the chunks' gradients sent as float16 (seed 003, 7.3: compress what goes
over the network). The first two agree to rounding; the table shows the third's price.

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

from chainrule import nn, optim
from chainrule.frontends.pytree import flatten
from chainrule.train import fit

BATCH_SIZE = 64


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
        runs = {
            "this process": train(x, y, args.epochs),
            "cluster": train(x, y, args.epochs, client),
            "cluster, float16 transport": train(x, y, args.epochs, client, "float16"),
        }
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    reference = runs["this process"][1]
    print(f"\n{'run':<28}{'final loss':>12}{'accuracy':>10}{'max |param - one process|':>28}{'seconds':>9}")
    summary = {}
    for name, (model, result, seconds) in runs.items():
        prediction = model.apply(result.params, x)
        accuracy = float(np.mean((prediction > 0.5) == (y > 0.5)) * 100)
        difference = largest_difference(result.params, reference.params)
        summary[name] = {"loss": result.history["loss"][-1], "accuracy": accuracy, "difference": difference}
        print(f"{name:<28}{result.history['loss'][-1]:>12.5f}{accuracy:>9.1f}%{difference:>28.2e}{seconds:>9.2f}")
    print("\nThe cluster's steps add the workers' gradients in another order: equal to rounding.")
    print("float16 transport sends a quarter of the bytes; its gradients carry ~1e-3 relative error.")
    return summary


if __name__ == "__main__":
    main()
