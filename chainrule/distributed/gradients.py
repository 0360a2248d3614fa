"""A loss's value and gradient over data chunked along the batch axis, computed on Dask workers.

Each chunk of rows runs the compiled ``value_and_grad`` on a worker (compiled once per worker
process); the parameters go to every worker once per call (``client.scatter(broadcast=True)``);
``dask.bag``'s tree reduction adds the chunks' values and gradients, each weighted by its share
of the rows for ``reduction="mean"`` (so a loss that is a mean over its rows gives exactly the
mean over all rows) or by one for ``"sum"``. The client receives one value and one gradient.
With ``transport=TopK(fraction)`` the chunks' sparse gradients skip the tree and the client
adds them (``chainrule.distributed.compression``).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import chainrule.transforms.compiled as cr
from chainrule.distributed.compression import TopK, add_sparse_terms, release_residuals, serialized_size, top_k_terms
from chainrule.distributed.dask_import import current_client, dask_modules
from chainrule.errors import ArgumentError, ChainruleError, ShapeError
from chainrule.frontends.pytree import TreeDef, flatten, unflatten
from chainrule.transforms.compiled import argnum_tuple, trace

REDUCTIONS = ("mean", "sum")
# Dask's errors when scattered data was lost with the workers holding it: the call is run again
_LOST_DATA = frozenset({"FutureCancelledError", "CancelledError", "KilledWorker", "FutureLostError"})
TRANSPORTS = (None, "float16", "float32", "topk")


def value_and_grad(
    loss: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    data_argnums: int | Sequence[int],
    reduction: str = "mean",
    backend: str = "numpy",
    client: Any = None,
    split_every: int = 8,
    transport: str | TopK | None = None,
) -> DistributedValueAndGrad:
    """``loss``'s value and gradient with the arguments at ``data_argnums`` split into row chunks
    that run on Dask workers; returns what ``chainrule.value_and_grad(loss, argnums)`` returns on
    the concatenated data (to rounding).

    Data arguments are dask arrays chunked along axis 0 (NumPy arrays are split into one chunk
    per worker, sent with the tasks), or pytrees of them sharing their rows. The other arguments (parameters: arrays
    or pytrees) are sent to each worker once per call. ``reduction="mean"`` is for a loss that
    averages over its rows, ``"sum"`` for one that adds them. ``transport="float16"`` (or
    ``"float32"``) sends each chunk's gradient in that precision: fewer bytes, less accuracy.
    ``transport=TopK(fraction)`` (``"topk"``: ``TopK(0.01)``) sends each chunk's largest
    elements with error feedback (``chainrule.distributed.compression``): the gradient of one
    call is then approximate, and a sequence of calls delivers every element, late.
    ``client`` defaults to the current Dask client.
    """
    if reduction not in REDUCTIONS:
        raise ArgumentError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if transport not in TRANSPORTS and not isinstance(transport, TopK):
        raise ArgumentError(f"transport must be one of {TRANSPORTS} or a TopK(fraction), got {transport!r}")
    transport = TopK() if transport == "topk" else transport
    data_positions = argnum_tuple(data_argnums)
    overlap = set(argnum_tuple(argnums)) & set(data_positions)
    if overlap:
        raise ArgumentError(
            f"argument(s) {sorted(overlap)} are both differentiated and data; a gradient over data rows"
        )
    compiled = cr.value_and_grad(loss, argnums, backend=backend)
    return DistributedValueAndGrad(compiled, data_positions, reduction, client, split_every, transport)


def grad(loss: Callable[..., Any], argnums: int | Sequence[int] = 0, **options: Any) -> Callable[..., Any]:
    """Like ``value_and_grad``, returning the gradient only."""
    both = value_and_grad(loss, argnums, **options)
    return lambda *args: both(*args)[1]


class DistributedValueAndGrad:
    """The function ``value_and_grad`` returns; ``.bytes_per_chunk`` holds the size of each chunk's
    result as sent by the last call, pickled (what the tree reduction, or with ``TopK`` the
    client, receives per chunk)."""

    def __init__(
        self,
        compiled: cr.Compiled,
        data_positions: tuple[int, ...],
        reduction: str,
        client: Any,
        split_every: int,
        transport: str | TopK | None,
    ):
        self.compiled = compiled
        self.data_positions = data_positions
        self.reduction = reduction
        self.client = client
        self.split_every = split_every
        self.transport = transport
        self.bytes_per_chunk: list[int] | None = None
        self._traced_signatures: set[tuple[Any, ...]] = set()
        self._shipped: tuple[Any, Any] | None = None  # (client, future of the compiled function there)
        self.run = uuid.uuid4().hex  # names this function's top-k residuals on the workers
        self.calls = 0

    def __call__(self, *args: Any) -> tuple[Any, Any]:
        client = current_client(self.client)
        positions = sorted(_position(p, len(args)) for p in self.data_positions)
        rows, blocks, data_treedefs = _row_blocks([args[p] for p in positions], _worker_count(client))
        self._trace_here(args, positions, rows[0])
        shared_args = tuple(arg for i, arg in enumerate(args) if i not in positions)
        self.calls += 1  # a rerun below is the same call: the workers' residuals must not advance twice
        try:
            return self._run(client, shared_args, positions, rows, blocks, data_treedefs)
        except Exception as error:  # a worker died holding the only copy of the scattered inputs
            if isinstance(error, ChainruleError) or type(error).__name__ not in _LOST_DATA:
                raise
            self._shipped = None  # send the function and the parameters again, to the workers alive
            return self._run(client, shared_args, positions, rows, blocks, data_treedefs)

    def _run(
        self,
        client: Any,
        shared_args: tuple[Any, ...],
        positions: list[int],
        rows: list[int],
        blocks: list[list[Any]],
        data_treedefs: list[TreeDef],
    ) -> tuple[Any, Any]:
        [shared] = client.scatter([shared_args], broadcast=True, hash=False)
        total = sum(rows)
        weights = [n / total if self.reduction == "mean" else 1.0 for n in rows]
        dask, _, bag, _ = dask_modules()
        task = dask.delayed(chunk_terms, pure=False)  # pure=True would pickle every argument to hash it
        compiled = self._compiled_on(client)

        def chunk_task(chunk: int) -> Any:
            key = (self.run, chunk, self.calls)
            return task(compiled, shared, positions, data_treedefs, weights[chunk], self.transport, key, *blocks[chunk])

        if isinstance(self.transport, TopK):
            value, gradient_leaves, treedef, sizes = self._sparse_sum(client, chunk_task, len(blocks))
        else:
            summed = bag.from_delayed([chunk_task(chunk) for chunk in range(len(blocks))])
            summed = summed.fold(add_terms, split_every=self.split_every)
            value, gradient_leaves, treedef, sizes = client.compute(summed).result()
        self.bytes_per_chunk = sizes
        # one chunk never met add_terms: its transported leaves come back in the value's precision here
        leaves = [np.asarray(leaf, dtype=np.result_type(leaf, value)) for leaf in gradient_leaves]
        return value, unflatten(treedef, leaves)

    def _sparse_sum(self, client: Any, chunk_task: Callable[[int], Any], chunks: int) -> tuple[Any, ...]:
        """The chunks' top-k terms, chunk i on the i-th worker (mod their number) so that its
        residual is where it runs next time, added on the client."""
        dask = dask_modules()[0]
        workers = sorted(client.scheduler_info().get("workers", {}))
        partials = []
        for chunk in range(chunks):
            pinned = {"workers": [workers[chunk % len(workers)]], "allow_other_workers": True} if workers else {}
            with dask.annotate(**pinned):
                partials.append(chunk_task(chunk))
        return add_sparse_terms([terms for [terms] in client.compute(partials, sync=True)])

    def release(self) -> None:
        """Drop this function's top-k residuals on the workers of its client (they also go when
        a worker has seen ``compression.KEPT_RUNS`` newer runs, or when it stops)."""
        if isinstance(self.transport, TopK):
            current_client(self.client).run(release_residuals, self.run)

    def _compiled_on(self, client: Any) -> Any:
        """A future of the compiled function held by every worker: sent once per client, not per task."""
        if self._shipped is None or self._shipped[0] is not client:
            [future] = client.scatter([self.compiled], broadcast=True, hash=False)
            self._shipped = (client, future)
        return self._shipped[1]

    def _trace_here(self, args: tuple[Any, ...], positions: list[int], rows: int) -> None:
        """Trace the loss once per signature in this process, on arguments shaped like the first
        chunk: a mistake in it (a shape error) is raised here, quoting the user's line, before any
        task is sent."""
        example = list(args)
        for p in positions:
            leaves, _, treedef = flatten(args[p])
            example[p] = unflatten(
                treedef, [np.zeros((rows,) + np.shape(leaf)[1:], np.result_type(leaf)) for leaf in leaves]
            )
        leaves, _, treedef = flatten(example)
        signature = (treedef, tuple((np.shape(leaf), np.result_type(leaf)) for leaf in leaves))
        if signature not in self._traced_signatures:
            trace(self.compiled.fn, *example)
            self._traced_signatures.add(signature)


def _position(position: int, count: int) -> int:
    if not -count <= position < count:
        raise ArgumentError(f"data_argnums has {position} but the function was called with {count} arguments")
    return position % count


def _worker_count(client: Any) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


def _row_blocks(data: list[Any], workers: int) -> tuple[list[int], list[list[Any]], list[TreeDef]]:
    """(rows per chunk, per chunk the blocks of every data leaf, the data arguments' structures):
    every leaf split along axis 0 at the same rows, whole along the other axes. Dask arrays give
    their chunks' delayed blocks (the rows of the first one); NumPy arrays, one slice per worker."""
    _, array, _, _ = dask_modules()
    flat = [flatten(arg) for arg in data]
    leaves = [leaf for leaves, _, _ in flat for leaf in leaves]
    if not leaves:
        raise ArgumentError("data_argnums names no arrays")
    lengths = {np.shape(leaf)[0] if np.ndim(leaf) else -1 for leaf in leaves}
    if len(lengths) != 1 or -1 in lengths:
        shapes = ", ".join(str(np.shape(leaf)) for leaf in leaves)
        raise ShapeError(f"the data arguments must share their rows (axis 0), got shapes {shapes}")
    treedefs = [treedef for _, _, treedef in flat]
    chunked = [leaf for leaf in leaves if isinstance(leaf, array.Array)]
    if not chunked:  # NumPy data: sliced here, each slice travels with its task
        (length,) = lengths
        bounds = np.linspace(0, length, min(workers, length) + 1).round().astype(int)
        rows = [int(b - a) for a, b in itertools.pairwise(bounds)]
        per_chunk = [[np.asarray(leaf)[a:b] for leaf in leaves] for a, b in itertools.pairwise(bounds)]
        return rows, per_chunk, treedefs
    row_chunks = chunked[0].chunks[0]
    blocks_per_leaf = []
    for leaf in leaves:
        whole = leaf if isinstance(leaf, array.Array) else array.from_array(np.asarray(leaf), chunks=-1)
        whole = whole.rechunk((row_chunks,) + tuple(-1 for _ in range(whole.ndim - 1)))
        blocks_per_leaf.append(list(whole.to_delayed().ravel()))
    per_chunk = [[blocks[i] for blocks in blocks_per_leaf] for i in range(len(row_chunks))]
    return list(row_chunks), per_chunk, treedefs


def chunk_terms(
    compiled: cr.Compiled,
    shared_args: tuple[Any, ...],
    data_positions: list[int],
    data_treedefs: list[TreeDef],
    weight: float,
    transport: str | TopK | None,
    residual_key: tuple[str, int, int],
    *blocks: Any,
) -> list[tuple[Any, ...]]:
    """On a worker: one chunk's weighted (value, gradient leaves, structure, [bytes sent]), as a
    one-element list (a partition of the bag that the tree reduction folds). With ``TopK`` the
    leaves are (indices, values, shape) and ``residual_key`` = (run, chunk, call) finds the
    chunk's residual on this worker."""
    data_args, start = [], 0
    for treedef in data_treedefs:
        data_args.append(unflatten(treedef, list(blocks[start : start + treedef.num_leaves])))
        start += treedef.num_leaves
    args: list[Any] = list(shared_args)
    for position, data_arg in zip(data_positions, data_args):
        args.insert(position, data_arg)
    value, gradients = compiled(*args)
    leaves, _, treedef = flatten(gradients)
    value, sent = np.multiply(value, weight), [np.multiply(leaf, weight) for leaf in leaves]
    if isinstance(transport, TopK):
        return [top_k_terms(value, sent, treedef, transport, residual_key)]
    if transport is not None:
        sent = [leaf.astype(transport) for leaf in sent]
    return [(value, sent, treedef, [serialized_size((value, sent, treedef))])]


def add_terms(left: tuple[Any, ...], right: tuple[Any, ...]) -> tuple[Any, ...]:
    """Two chunks' terms added (the tree reduction's step); transported leaves are summed in the
    precision of the value (float64 for a float64 loss)."""
    dtype = np.result_type(left[0])
    leaves = [np.add(a, b, dtype=np.result_type(a, b, dtype)) for a, b in zip(left[1], right[1], strict=True)]
    return left[0] + right[0], leaves, left[2], left[3] + right[3]


__all__ = ["DistributedValueAndGrad", "add_terms", "chunk_terms", "grad", "value_and_grad"]
