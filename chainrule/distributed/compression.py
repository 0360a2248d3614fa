"""Top-k gradient transport with error feedback (seed 003, 7.3: "sparsification: send only large
gradients" with "error compensation"; Lin et al. 2018, Stich et al. 2018).

With ``transport=TopK(fraction)`` each chunk's weighted gradient, plus the residual that chunk
left on its worker last time, leaves the worker as ``(indices, values)`` of its
ceil(fraction * size) largest-magnitude elements per leaf (``optim.transforms.top_k_split``, the
selection ``optim.topk_compression`` makes); the rest stays on the worker as the chunk's new
residual and joins the next call's gradient, so no gradient element is dropped for good, only
delayed. The client adds the chunks' sparse contributions into dense arrays.

The residuals live in the worker process, keyed by (worker, run, chunk): a run is one
``chainrule.distributed.value_and_grad`` function (one ``fit``), chunk i of every call goes to
the same worker (``dask.annotate(workers=...)``), and each entry remembers the call that made it.
A task that Dask runs twice in one call (rescheduled after a fault) starts again from the
residual the call started with, so reruns do not count a gradient twice. A worker that dies
takes its residuals with it: its chunks go on from the residual the new worker holds for them
(zero unless it ran them before), which loses the delayed elements (at most one gradient's worth
per chunk) and nothing else.
"""

from __future__ import annotations

import collections
import dataclasses
import pickle
import threading
from typing import Any

import numpy as np

from chainrule.errors import ArgumentError
from chainrule.frontends.pytree import TreeDef
from chainrule.optim.transforms import top_k_split

KEPT_RUNS = 8  # runs whose residuals a worker keeps; the oldest is dropped when a ninth starts


@dataclasses.dataclass(frozen=True)
class TopK:
    """``transport=TopK(fraction)``: each chunk sends the ``fraction`` of every gradient leaf's
    elements with the largest magnitude (at least one), as int32/int64 indices and values, and
    keeps the rest as its error-feedback residual. ``TopK(1.0)`` sends everything (the dense
    result, in another order of additions); ``transport="topk"`` is ``TopK(0.01)``.

        >>> TopK(0.05)
        TopK(fraction=0.05)
    """

    fraction: float = 0.01

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ArgumentError(f"TopK sends a fraction 0 < fraction <= 1 of each gradient, got {self.fraction!r}")


def serialized_size(payload: Any) -> int:
    """The bytes ``payload`` takes pickled (protocol 5, arrays as out-of-band buffers, as Dask
    sends them): the pickle stream plus the buffers, without copying the buffers."""
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(payload, protocol=5, buffer_callback=buffers.append)
    return len(stream) + sum(buffer.raw().nbytes for buffer in buffers)


@dataclasses.dataclass
class _ChunkResidual:
    """One chunk's residual on one worker: the call that made it, what it started from, what it left."""

    call: int
    started_from: list[np.ndarray] | None
    left: list[np.ndarray]


class _ResidualStore:
    """The residuals of this worker process: {(worker, run): {chunk: _ChunkResidual}}, the
    ``KEPT_RUNS`` most recently used runs. A lock, since a worker runs tasks on several threads."""

    def __init__(self) -> None:
        self._runs: collections.OrderedDict[tuple[str, str], dict[int, _ChunkResidual]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def start(self, worker: str, run: str, chunk: int, call: int) -> list[np.ndarray] | None:
        """The residual call ``call`` of ``chunk`` adds to its gradient (None: zero)."""
        with self._lock:
            entry = self._runs.get((worker, run), {}).get(chunk)
        if entry is None:
            return None
        # the same call again (a rerun after a fault): start where that call started
        return entry.started_from if entry.call == call else entry.left

    def keep(self, worker: str, run: str, chunk: int, entry: _ChunkResidual) -> None:
        with self._lock:
            chunks = self._runs.setdefault((worker, run), {})
            self._runs.move_to_end((worker, run))
            chunks[chunk] = entry
            while len(self._runs) > KEPT_RUNS:
                self._runs.popitem(last=False)

    def release(self, run: str) -> int:
        """Forget ``run``'s residuals; returns how many chunks had one."""
        with self._lock:
            keys = [key for key in self._runs if key[1] == run]
            return sum(len(self._runs.pop(key)) for key in keys)


RESIDUALS = _ResidualStore()


def worker_address() -> str:
    """The Dask worker running this task ("" outside a worker: a local scheduler's thread)."""
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:
        return ""


def release_residuals(run: str) -> int:
    """On a worker (``client.run(release_residuals, run)``): drop ``run``'s residuals."""
    return RESIDUALS.release(run)


def top_k_terms(
    value: Any, weighted: list[np.ndarray], treedef: TreeDef, transport: TopK, residual_key: tuple[str, int, int]
) -> tuple[Any, ...]:
    """On a worker: one chunk's (value, [(indices, values, shape) per leaf], structure, [bytes]) for
    its weighted gradient leaves plus its residual; the new residual stays in ``RESIDUALS``."""
    run, chunk, call = residual_key
    worker = worker_address()
    started_from = RESIDUALS.start(worker, run, chunk, call)
    corrected = weighted if started_from is None else [g + r for g, r in zip(weighted, started_from, strict=True)]
    sparse, left = [], []
    for leaf in corrected:
        sent, kept = top_k_split(leaf, transport.fraction)
        index_type = np.int32 if np.size(leaf) < 2**31 else np.int64
        indices = np.flatnonzero(kept).astype(index_type)
        sparse.append((indices, np.ravel(leaf)[indices], np.shape(leaf)))
        left.append(leaf - sent)
    RESIDUALS.keep(worker, run, chunk, _ChunkResidual(call, started_from, left))
    return value, sparse, treedef, [serialized_size((value, sparse, treedef))]


def add_sparse_terms(terms: list[tuple[Any, ...]]) -> tuple[Any, list[np.ndarray], TreeDef, list[int]]:
    """On the client: the chunks' sparse terms added into (value, dense gradient leaves, structure,
    bytes per chunk), the leaves in the value's precision."""
    value = sum(term[0] for term in terms)
    dense = []
    for leaf_terms in zip(*[term[1] for term in terms], strict=True):
        shape = leaf_terms[0][2]
        total = np.zeros(int(np.prod(shape)), np.result_type(leaf_terms[0][1], value))
        for indices, values, _ in leaf_terms:
            total[indices] += values  # indices are distinct within one chunk's leaf
        dense.append(total.reshape(shape))
    return value, dense, terms[0][2], [size for term in terms for size in term[3]]


__all__ = ["TopK", "add_sparse_terms", "release_residuals", "serialized_size", "top_k_terms"]
