"""Scheduling and the memory plan: the order nodes run in, and how much memory that takes.

Traced order runs the whole forward pass, then the whole backward pass, and
keeps values alive longer than needed. ``schedule`` also tries a greedy list
schedule that, among the nodes ready to run, prefers the one that frees the
most bytes for the fewest it allocates (ties go to the earlier node), and
keeps whichever order has the lower estimated peak.

The memory plan simulates running the order on a backend that materializes
every node's value, frees each value of at least ``EARLY_FREE_MIN_BYTES`` after
its last use (the generated code ``del``s it; smaller values live to the end of
the call), runs a fused node's steps in the buffers ``plan_buffers`` assigns (a buffer
``donated_buffers`` finds is a dying operand's array, written over: no new bytes),
and counts the buffer NumPy's ufunc iterator allocates to broadcast. View ops
(reshape, transpose, broadcast_to, basic indexing) share their operand's storage. Inputs belong to the caller and constants to the
compiled function, so neither counts: the plan measures the temporaries a
call allocates, which is what ``tracemalloc`` sees.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from chainrule.ir import OPS, Graph
from chainrule.ir.fused import donated_buffers, plan_buffers
from chainrule.ir.node import MemoryPlan
from chainrule.ir.types import EARLY_FREE_MIN_BYTES

# Ops whose results share their operand's storage; an index op (getitem) only for basic indices (is_view).
SHAPE_VIEWS = frozenset(name for name, op in OPS.items() if op.view and op.kind != "index")
_NOT_ALLOCATED = {"input", "const"}


def is_view(node) -> bool:
    if node.op == "getitem":
        return all(item[0] != "array" for item in node.params["index"])
    return node.op in SHAPE_VIEWS


def storage_roots(graph: Graph) -> list[int]:
    root = list(range(len(graph)))
    for node_id, node in enumerate(graph.nodes):
        if (node.op in SHAPE_VIEWS or node.op == "getitem") and is_view(node):
            root[node_id] = root[node.args[0]]
    return root


def plan_memory(graph: Graph, order: Sequence[int] | None = None) -> MemoryPlan:
    """Simulate ``order`` (default: id order) and return the estimated peak of live temporaries."""
    order = list(range(len(graph))) if order is None else list(order)
    nodes = graph.nodes
    root = storage_roots(graph)
    # Values that are never del'd: the outputs, and every value under the size the code frees early.
    kept = bytearray(len(nodes))
    any_big = False
    for node_id in order:
        if nodes[node_id].type.nbytes < EARLY_FREE_MIN_BYTES:
            kept[root[node_id]] = 1
        else:
            any_big = True
    for out in graph.outputs:
        kept[root[out]] = 1
    # The last reader of each value that is del'd (lists indexed by node id: this runs on every
    # graph, and on every placement the checkpoint pass tries). Without a big value, none is.
    dying_at: dict[int, list[int]] = {}
    counts: list[int] = []  # how often each value is read (donated_buffers asks)
    if any_big and not all(kept[root[node_id]] for node_id in order):
        position = [-1] * len(nodes)
        for index, node_id in enumerate(order):
            position[node_id] = index
        last_use = [-1] * len(nodes)
        counts = [0] * len(nodes)
        for out in graph.outputs:
            counts[out] += 1
        for node_id in order:
            for a in nodes[node_id].args:
                counts[a] += 1
                r = root[a]
                if not kept[r] and (last_use[r] < 0 or position[last_use[r]] < position[node_id]):
                    last_use[r] = node_id
        for r, user in enumerate(last_use):
            if user >= 0:
                dying_at.setdefault(user, []).append(r)
    outputs = set(graph.outputs)
    live = peak = 0
    peak_at = order[0] if order else -1
    for node_id in order:
        node = nodes[node_id]
        if root[node_id] != node_id or node.op in _NOT_ALLOCATED:
            continue
        value_type = node.type
        allocated = value_type.nbytes
        kept_donor = -1  # the operand whose array becomes this node's value
        if node.op == "fused":
            allocated, scratch, kept_donor = _fused_bytes(graph, node, counts, outputs)
        else:  # a one-element result broadcasts nothing: no buffer (and scalar graphs skip the search)
            scratch = broadcast_buffer_bytes(graph, node) if value_type.size > 1 else 0
        if live + allocated + scratch > peak:
            peak, peak_at = live + allocated + scratch, node_id
        live += allocated
        if dying_at and node_id in dying_at:
            for r in dying_at[node_id]:
                if nodes[r].op not in _NOT_ALLOCATED and r != kept_donor:
                    live -= nodes[r].type.nbytes
    return MemoryPlan(peak, peak_at)


def _fused_bytes(graph: Graph, node, counts: list[int], outputs: set[int]) -> tuple[int, int, int]:
    """A fused node's result bytes, the bytes its steps hold besides (buffers, broadcasting), and the
    operand whose array its result is (-1: none): donated buffers are operands' arrays, held already."""
    plan = plan_buffers(node.params["body"])
    donated = donated_buffers(graph, node, counts, outputs) if counts else {}
    allocated, kept_donor = node.type.nbytes, -1
    if plan.buffer[-1] in donated:
        allocated, kept_donor = 0, node.args[donated[plan.buffer[-1]]]
    step_scratch = _step_broadcast_bytes(graph, node) if node.type.size > 1 else [0] * len(plan.buffer)
    return allocated, max(plan.peak_bytes_besides(donated, step_scratch) - allocated, 0), kept_donor


def _step_broadcast_bytes(graph: Graph, node) -> list[int]:
    """The buffer NumPy's ufunc iterator allocates while each step of fused ``node`` runs."""
    steps = node.params["body"].steps
    nodes = graph.nodes
    sizes = []
    for op, operands, _, out in steps:
        broadcasts = False
        if OPS[op].is_elementwise:
            for k in operands:
                operand = nodes[node.args[-k - 1]].type if k < 0 else steps[k][3]
                if operand.size > 1 and operand.shape != out.shape:
                    broadcasts = True
                    break
        sizes.append(min(out.size, _UFUNC_BUFFER_ELEMENTS) * out.nbytes // max(out.size, 1) if broadcasts else 0)
    return sizes


# NumPy's ufunc iterator buffers an operand it broadcasts (b in ``a + b`` with a of shape [256, 32]
# and b of shape [32]) in a buffer of up to this many elements, for the duration of the call.
_UFUNC_BUFFER_ELEMENTS = 8192


def broadcast_buffer_bytes(graph: Graph, node) -> int:
    """The iteration buffer NumPy allocates while computing ``node`` (or a fused node's steps) when
    an elementwise operation broadcasts an operand that is not a single number."""
    if node.op == "fused":
        body = node.params["body"]
        cases = [
            (step_type, [graph.type(node.args[-k - 1]) if k < 0 else body.steps[k][3] for k in operands])
            for op, operands, _, step_type in body.steps
            if OPS[op].is_elementwise
        ]
    elif OPS[node.op].is_elementwise:
        cases = [(node.type, [graph.type(a) for a in node.args])]
    else:
        return 0
    return max(
        [
            min(out.size, _UFUNC_BUFFER_ELEMENTS) * out.nbytes // max(out.size, 1)
            for out, operands in cases
            if any(t.size > 1 and t.shape != out.shape for t in operands)
        ],
        default=0,
    )


def greedy_order(graph: Graph) -> list[int]:
    """A topological order that runs, among ready nodes, the one freeing the most memory first."""
    live = graph.live_nodes()
    root = storage_roots(graph)
    is_live = bytearray(len(graph))
    for node_id in live:
        is_live[node_id] = 1
    users: list[list[int]] = [[] for _ in range(len(graph))]
    waiting = [0] * len(graph)
    for node_id in live:
        operands = set(graph[node_id].args)
        waiting[node_id] = len(operands)
        for a in operands:
            users[a].append(node_id)
    remaining = [0] * len(graph)  # unscheduled users of each storage root
    for node_id in live:
        for a in {root[x] for x in graph[node_id].args}:
            remaining[a] += 1
    kept = {root[o] for o in graph.outputs}

    def benefit(node_id: int) -> int:
        node = graph[node_id]
        freed = sum(
            graph[r].type.nbytes
            for r in {root[a] for a in node.args}
            if remaining[r] == 1 and r not in kept and graph[r].op not in _NOT_ALLOCATED
        )
        allocated = 0 if (node.op in _NOT_ALLOCATED or is_view(node)) else node.type.nbytes
        return freed - allocated

    readers: list[list[int]] = [[] for _ in range(len(graph))]  # the nodes reading each storage root
    for node_id in live:
        for r in {root[a] for a in graph[node_id].args}:
            readers[r].append(node_id)
    ready = [(-benefit(i), i) for i in live if waiting[i] == 0]
    heapq.heapify(ready)
    done = bytearray(len(graph))
    order = []
    while ready:
        queued_priority, node_id = heapq.heappop(ready)
        if done[node_id]:
            continue  # a duplicate entry, queued again when its priority rose
        current = -benefit(node_id)
        if current > queued_priority:  # worse than when it was queued: let others go first
            heapq.heappush(ready, (current, node_id))
            continue
        done[node_id] = 1
        order.append(node_id)
        for r in {root[a] for a in graph[node_id].args}:
            remaining[r] -= 1
            if remaining[r] == 1:  # its last reader would now free it: queue that reader again
                for reader in readers[r]:
                    if not done[reader] and waiting[reader] == 0:
                        heapq.heappush(ready, (-benefit(reader), reader))
        for user in users[node_id]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, (-benefit(user), user))
    return order


def schedule(graph: Graph, reorder: bool = True) -> Graph:
    """``graph`` renumbered in the chosen execution order, with its ``memory_plan`` attached."""
    traced_order = graph.live_nodes()
    order, plan = traced_order, plan_memory(graph, traced_order)
    # Values under 64 KiB come from the allocator's free lists whatever the order (the NumPy
    # backend does not even del them), so only graphs with a big value are worth reordering.
    if reorder and max([graph.nodes[i].type.nbytes for i in traced_order], default=0) >= EARLY_FREE_MIN_BYTES:
        candidate = greedy_order(graph)
        candidate_plan = plan_memory(graph, candidate)
        if candidate_plan.peak_bytes < plan.peak_bytes:
            order, plan = candidate, candidate_plan
    if order is traced_order and len(order) == len(graph):  # all live, in id order: already scheduled
        graph.memory_plan = plan
        return graph
    result = Graph(graph.name)
    mapping = {i: result.add_input(graph.type(i), graph[i].name, graph[i].loc) for i in graph.inputs}
    result.transplant(graph, (i for i in order if graph[i].op != "input"), mapping, verbatim=True)
    result.set_outputs([mapping[o] for o in graph.outputs], graph.output_names)
    # the simulation of the chosen order holds for its renumbered copy
    result.memory_plan = MemoryPlan(plan.peak_bytes, mapping[plan.peak_at])
    return result


def peak_bytes(scheduled: Graph) -> int:
    """The estimated peak of one call of a scheduled graph: its memory plan's (planned now if it has none)."""
    plan: MemoryPlan | None = scheduled.memory_plan
    return (plan if plan is not None else plan_memory(scheduled)).peak_bytes
