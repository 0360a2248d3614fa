"""Eigenvalues and singular values without the vectors where nothing reads the vectors.

``np.linalg.eigvalsh`` and ``np.linalg.svd(compute_uv=False)`` are traced as the full
factorization (``eigh``, ``svd``) and a slice of its values: the vectors are what the gradient
needs (``Ā = V diag(w̄) Vᵀ``, ``Ā = U diag(s̄) Vh``) and what forward mode needs
(``dw = diag(Vᵀ dA V)``), so differentiation must see them. Once differentiation is done, a
factorization whose every reader takes a slice of the values alone becomes ``eigvalsh`` or
``svdvals``: LAPACK's ``?syevd``/``?gesdd`` with jobz='N', the calls NumPy's own functions make,
two to three times cheaper than computing the vectors too. That is the case for a function
compiled without gradient (``jit``), for a gradient with respect to other inputs, and for a
user's ``eigh`` whose vectors go unused; a reverse- or forward-mode derivative through the
values keeps the full factorization (it reads the vectors), computed once.

The pass runs after checkpointing (a recomputed copy of a factorization is judged on its own
readers), before fusion. Bodies of loops and branches keep their factorizations.
"""

from __future__ import annotations

from chainrule.compiler.rewrite import copy_replacing
from chainrule.ir import Graph

# factorization -> its values-only op
VALUES_ONLY = {"eigh": "eigvalsh", "svd": "svdvals"}


def _values_count(graph: Graph, node_id: int) -> int:
    """How many values lead the packed result (``n`` eigenvalues, ``min(m, n)`` singular values)."""
    return min(graph.type(graph[node_id].args[0]).shape[-2:])


def _reads_values_only(graph: Graph, user: int, count: int) -> bool:
    """Is ``user`` a ``getitem`` taking a plain slice within the first ``count`` of the last axis?"""
    node = graph[user]
    if node.op != "getitem" or len(node.args) != 1:
        return False
    index = node.params["index"]
    if len(index) != graph.type(node.args[0]).ndim:
        return False
    *lead, last = index
    if any(item != ("slice", None, None, None) for item in lead) or last[0] != "slice":
        return False
    _, start, stop, step = last
    return (start is None or start >= 0) and stop is not None and 0 <= stop <= count and step in (None, 1)


def _values_only_nodes(graph: Graph) -> set[int]:
    live = graph.live_nodes()
    alive = set(live)
    users, outputs = graph.users_index(), set(graph.outputs)
    found = set()
    for node_id in live:
        if graph[node_id].op not in VALUES_ONLY or node_id in outputs:
            continue
        count = _values_count(graph, node_id)
        readers = [u for u in users[node_id] if u in alive]
        if readers and all(_reads_values_only(graph, u, count) for u in readers):
            found.add(node_id)
    return found


def values_only(graph: Graph) -> Graph:
    """``graph`` with each ``eigh``/``svd`` whose vectors nothing reads computed as its values alone
    (``graph`` itself when there is none)."""
    targets = _values_only_nodes(graph)
    if not targets:
        return graph
    return copy_replacing(graph, lambda i: (VALUES_ONLY[graph[i].op], graph[i].params) if i in targets else None)
