"""The IR graph: a DAG of hash-consed nodes, each one operation producing one value.

Nodes are appended and never removed, and an operand always exists before its
user, so node ids are a topological order: every walk over a graph is a loop
over ``range(len(graph))`` (no recursion, whatever the depth). Passes build new
graphs. ``to_networkx()`` gives the graph as a ``networkx.DiGraph`` with every node's facts,
and ``from_networkx`` takes one back (``ir/networkx_view.py``).

Building is the hot path of compilation (a 100,000-step chain's gradient adds over
a million nodes), so ``add`` does no more than it must: type rules are remembered,
and the users index is built only when asked for, in bulk.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from chainrule.errors import ChainruleError, Loc
from chainrule.ir import networkx_view
from chainrule.ir.canonical import CANONICAL
from chainrule.ir.node import ConstArray, MemoryPlan, Node, freeze_attrs
from chainrule.ir.ops import INFERRED, OPS, Op
from chainrule.ir.printer import format_dot, format_graph
from chainrule.ir.rewrite import RuleFunction
from chainrule.ir.types import TensorType

if TYPE_CHECKING:
    import networkx as nx

_PYTHON_NUMBERS = (int, float, bool)
# How deep rewrites may nest (a rule's replacement is offered to the rules again): a guard against
# two rules that undo each other, which would be a bug, not a reason to recurse without end.
_MAX_REWRITE_DEPTH = 32


class Graph:
    """An IR function: ordered inputs, nodes, ordered outputs.

    >>> g = Graph("square")
    >>> x = g.add_input(TensorType((3,), "float64"), "x")
    >>> y = g.add("mul", (x, x))
    >>> g.set_outputs([y])
    >>> g.verify()
    """

    def __init__(self, name: str = "f"):
        self.name = name
        self.nodes: list[Node] = []
        self._users: list[list[int]] = []
        self._live: tuple | None = None  # (nodes and outputs when computed, live_nodes)
        self._shared_below = 0  # nodes below this id are records shared with another graph (continuing)
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self.output_names: list[str] = []
        self._interned: dict[tuple, int] = {}
        self._scalar_constants: dict[tuple, int] = {}  # (type, repr, dtype) of a Python number -> its node
        self._default_loc: Loc | None = None
        self._default_origin: int | None = None
        self.memory_plan: MemoryPlan | None = None  # set by the schedule pass
        # (op, args, attrs) -> the name a value had in an earlier graph where a rewrite left it dead:
        # when a later pass builds that value again (A2 = sigmoid(Z2) once BCE's gradient is
        # simplified), it gets its user's name back. See carry_name_hints.
        self.name_hints: dict[tuple, str] = {}
        # A pass's rewrite rule, applied to every node as it is built (see ``rewriting``), and how
        # often it fired.
        self.rewriter: RuleFunction | None = None
        self.rewrites = 0
        self._rewrite_depth = 0

    # ---- construction -------------------------------------------------------------------

    def add(
        self,
        op: str,
        args: Iterable[int] = (),
        attrs: dict | None = None,
        *,
        loc: Loc | None = None,
        name: str | None = None,
        origin: int | None = None,
        known_type: TensorType | None = None,
    ) -> int:
        """Add ``op(args; attrs)`` and return its id; an identical existing node is returned instead.

        Shape errors are raised as ``ShapeError`` at ``loc`` (or the graph's attribution).
        ``known_type`` skips type inference, for a caller that inferred this very node on operands
        of the same types (reverse mode replaying a recorded rule); ``verify`` checks it."""
        definition = OPS[op]
        if type(args) is not tuple:
            args = tuple(args)
        frozen = tuple(sorted(attrs.items())) if attrs else ()
        key = (op, args, frozen)
        interned = definition.interned
        if interned:
            existing = self._interned.get(key)
            if existing is not None:
                return existing
        loc = self._default_loc if loc is None else loc
        origin = self._default_origin if origin is None else origin
        if definition.arity is not None and len(args) != definition.arity:
            raise ChainruleError(f"{op} takes {definition.arity} operands, got {len(args)}", loc)
        nodes = self.nodes
        # nodes a rewrite builds carry this node's loc and origin (``attribution``, spelled out: hot path)
        saved = None
        if loc is not self._default_loc or origin is not self._default_origin:
            saved = self._default_loc, self._default_origin
            self._default_loc, self._default_origin = loc, origin
        try:
            out_type = self._result_type(definition, args, frozen) if known_type is None else known_type
            node = Node(op, args, frozen, out_type, loc, name, origin)
            simpler = CANONICAL(self, node, args)
            if simpler is None and self.rewriter is not None and self._rewrite_depth < _MAX_REWRITE_DEPTH:
                simpler = self._offer_to_rewriter(self.rewriter, node, args)
        except ChainruleError as error:
            raise error.at(loc) from None
        finally:
            if saved is not None:
                self._default_loc, self._default_origin = saved
        if simpler is not None:
            return simpler
        if name is None and self.name_hints:
            node.name = self.name_hints.get(key)
        node_id = len(nodes)  # _append, spelled out
        nodes.append(node)
        if interned:
            self._interned[key] = node_id
        return node_id

    def _result_type(self, definition: Op, args: tuple[int, ...], frozen: tuple) -> TensorType:
        nodes = self.nodes
        types = tuple([nodes[a].type for a in args])
        try:
            return INFERRED[(definition.name, types, frozen)]
        except (KeyError, TypeError):  # not seen yet, a source, or an unhashable attribute
            return definition.result_type(types, frozen)

    def rewriting(self, rule: RuleFunction | None) -> _Rewriting:
        """``with graph.rewriting(rule):`` every node built inside the block is first offered to
        ``rule(graph, node, args) -> id or None``; a replacement the rule builds is offered to it in
        turn. Operands are built first, so a graph built this way is at the rule's fixed point
        without a second walk (for rules that look only at a node and its operands)."""
        return _Rewriting(self, rule)

    def _offer_to_rewriter(self, rewriter: RuleFunction, node: Node, args: tuple) -> int | None:
        """The installed rule's replacement for ``node`` (not built), or None; a replacement the
        rule builds is offered to it in turn, to a bounded depth."""
        self._rewrite_depth += 1
        try:
            simpler = rewriter(self, node, args)
        finally:
            self._rewrite_depth -= 1
        if simpler is not None:
            self._rewrote(node, simpler)
        return simpler

    def _rewrote(self, node: Node, replacement: int) -> None:
        """Bookkeeping for a rewrite of ``node`` (not built) to ``replacement``."""
        self.rewrites += 1
        kept = self.nodes[replacement]
        assert kept.type == node.type, f"rewrite of {node.op} changed its type {node.type} to {kept.type}"
        if kept.name is None and node.name and kept.op not in ("input", "const"):
            self.name_node(replacement, node.name)

    def append_copy(self, node: Node, args: tuple, origin: int | None) -> int:
        """Append a copy of another graph's ``node`` with operands ``args`` (ids here), as it is:
        no type inference, no rewriting. For passes that copy nodes they do not change."""
        copy = Node(node.op, args, node.attrs, node.type, node.loc, node.name, origin, node.recomputed)
        return self._append(copy, OPS[node.op].interned and not node.recomputed)

    def add_recomputed(
        self,
        op: str,
        args: Iterable[int],
        attrs: dict | None = None,
        *,
        loc: Loc | None = None,
        name: str | None = None,
        origin: int | None = None,
    ) -> int:
        """Append ``op(args; attrs)`` as a new recomputed node, even when an identical node exists.

        Checkpointing copies forward values into the backward pass this way; ``add`` would
        return the forward node itself (hash-consing is CSE), and the copy would be no copy.
        """
        args = tuple(args)
        frozen = freeze_attrs(attrs)
        out_type = OPS[op].result_type(tuple([self.nodes[a].type for a in args]), frozen)
        return self._append(Node(op, args, frozen, out_type, loc, name, origin, recomputed=True), False)

    def _append(self, node: Node, interned: bool) -> int:
        node_id = len(self.nodes)
        self.nodes.append(node)
        if interned:
            self._interned[(node.op, node.args, node.attrs)] = node_id
        return node_id

    def find(self, op: str, args: tuple, attrs: tuple) -> int | None:
        """The id of the existing node ``op(args; attrs)`` (attrs frozen as in ``Node.attrs``), or None."""
        return self._interned.get((op, args if type(args) is tuple else tuple(args), attrs))

    def add_input(self, type: TensorType, name: str | None, loc: Loc | None = None) -> int:
        node_id = self.add(
            "input", (), {"index": len(self.inputs), "shape": type.shape, "dtype": type.dtype}, loc=loc, name=name
        )
        self.inputs.append(node_id)
        return node_id

    def const(self, value: npt.ArrayLike, dtype: npt.DTypeLike | None = None) -> int:
        """A constant node holding ``value`` (a Python number, or anything ``np.asarray`` takes)."""
        scalar_key = None
        if type(value) in _PYTHON_NUMBERS and value == value and (dtype is None or type(dtype) is str):
            # The same few numbers recur (every `x * 2.0` in a loop): find their node without
            # building an array. repr tells 0.0 from -0.0; NaN (value != value) is not remembered.
            scalar_key = (type(value), repr(value), dtype)
            node_id = self._scalar_constants.get(scalar_key)
            if node_id is not None:
                return node_id
        array = np.asarray(value, dtype=dtype)
        node_id = self.add("const", (), {"value": ConstArray(array)})
        if scalar_key is not None:
            self._scalar_constants[scalar_key] = node_id
        return node_id

    def zeros(self, type: TensorType) -> int:
        """The symbolic zero of ``type``: an explicit value that DCE and rewrites understand."""
        return self.add("zeros", (), {"shape": type.shape, "dtype": type.dtype})

    def transplant(
        self, source: Graph, node_ids: Iterable[int], mapping: dict[int, int], verbatim: bool = False
    ) -> dict[int, int]:
        """Copy ``source``'s nodes ``node_ids`` (topological order) into this graph.

        ``mapping`` maps source ids to ids here and must already cover the
        operands that are not copied (inputs, typically); it is extended and
        returned. Copies go through ``add``, so they are hash-consed and
        canonicalized like any new node — unless ``verbatim``: then each node is
        appended as it is, without re-inferring its type (for passes that only
        drop nodes, such as DCE, where that work would be repeated for nothing).
        """
        source_nodes, nodes, interned = source.nodes, self.nodes, self._interned
        for node_id in node_ids:
            node = source_nodes[node_id]
            args = tuple([mapping[a] for a in node.args])
            origin = mapping.get(node.origin) if node.origin is not None else None
            if verbatim:  # append_copy, spelled out: DCE and the schedule copy every node this way
                copy = len(nodes)
                nodes.append(Node(node.op, args, node.attrs, node.type, node.loc, node.name, origin, node.recomputed))
                if OPS[node.op].interned and not node.recomputed:
                    interned[(node.op, args, node.attrs)] = copy
                mapping[node_id] = copy
            elif node.recomputed:
                mapping[node_id] = self.add_recomputed(
                    node.op, args, node.params, loc=node.loc, name=node.name, origin=origin
                )
            else:
                mapping[node_id] = self.add(node.op, args, node.params, loc=node.loc, name=node.name, origin=origin)
        return mapping

    @classmethod
    def continuing(cls, source: Graph, name: str | None = None) -> Graph:
        """A graph that starts as ``source`` (the same nodes under the same ids, its inputs, name
        hints and hash-consing index) and grows from there, as reverse mode's joint graph does.

        The node records are shared with ``source`` rather than copied (copying them cost ~2 ms of a
        depth-1000 chain's ~95 ms compile); renaming one goes through ``name_node``, which copies it first.
        """
        graph = cls(name or source.name)
        graph.nodes = list(source.nodes)
        graph.inputs = list(source.inputs)
        graph._interned = dict(source._interned)
        graph._scalar_constants = dict(source._scalar_constants)
        graph.name_hints = dict(source.name_hints)
        graph._shared_below = len(source.nodes)
        return graph

    def scratch_copy(self) -> Graph:
        """A copy to try rewrites on, so the nodes a rule builds land in the copy, not here."""
        copy = Graph.continuing(self)
        copy.set_outputs(self.outputs, self.output_names)
        return copy

    def name_node(self, node_id: int, name: str | None) -> None:
        """Give node ``node_id`` the name hint ``name`` (first copying a record this graph shares
        with the one it continues, which keeps its own names)."""
        if node_id < self._shared_below:
            self.nodes[node_id] = dataclasses.replace(self.nodes[node_id])
        self.nodes[node_id].name = name

    def carry_name_hints(self, source: Graph, mapping: dict[int, int]) -> None:
        """Remember the names of ``source``'s named values that were not copied here (``mapping``
        maps copied ids), and ``source``'s own hints, for the nodes whose operands were copied."""

        def remember(op: str, args: tuple[int, ...], attrs: tuple, name: str) -> None:
            if all(a in mapping for a in args):
                self.name_hints.setdefault((op, tuple(mapping[a] for a in args), attrs), name)

        for (op, args, attrs), name in source.name_hints.items():
            remember(op, args, attrs, name)
        for node_id, node in enumerate(source.nodes):
            if node.name and node_id not in mapping and node.op not in ("input", "const"):
                remember(node.op, node.args, node.attrs, node.name)

    def set_outputs(self, ids: Iterable[int], names: Iterable[str] | None = None) -> None:
        self.outputs = list(ids)
        self.output_names = list(names) if names is not None else [f"out{i}" for i in range(len(self.outputs))]

    def attribution(self, loc: Loc | None, origin: int | None = None) -> _Attribution:
        """``with graph.attribution(loc, origin):`` nodes added inside the block get ``loc`` and
        ``origin`` unless given their own."""
        return _Attribution(self, loc, origin)

    # ---- queries ------------------------------------------------------------------------

    def __getitem__(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def __len__(self) -> int:
        return len(self.nodes)

    def type(self, node_id: int) -> TensorType:
        return self.nodes[node_id].type

    def users(self, node_id: int) -> list[int]:
        """The nodes that take ``node_id`` as an operand, in id order, each once."""
        return list(self.users_index()[node_id])

    def users_index(self) -> list[list[int]]:
        """``users`` of every node, as one list indexed by node id (for walks over the whole
        graph; read only: it is the graph's own index)."""
        users, nodes = self._users, self.nodes
        if len(users) < len(nodes):  # index the nodes added since the last call
            start = len(users)
            users.extend([] for _ in range(start, len(nodes)))
            for user in range(start, len(nodes)):
                for a in nodes[user].args:
                    of_a = users[a]
                    if not of_a or of_a[-1] != user:  # an operand used twice (x * x) counts once
                        of_a.append(user)
        return users

    def constant(self, node_id: int) -> np.ndarray:
        """The value of ``node_id``, which must be a ``const`` or ``zeros`` node."""
        value = self.const_value(node_id)
        if value is None:
            raise ChainruleError(f"node {node_id} ({self.nodes[node_id].op}) is not a constant")
        return value

    def const_value(self, node_id: int) -> np.ndarray | None:
        """The value of a ``const`` or ``zeros`` node, else None."""
        node = self.nodes[node_id]
        if node.op == "const":
            return node.attrs[0][1].array  # its only attribute: ("value", ConstArray)
        if node.op == "zeros":
            return np.zeros(node.type.shape, node.type.dtype)
        return None

    def live_nodes(self, roots: Iterable[int] | None = None) -> list[int]:
        """Ids of the nodes the outputs (or ``roots``) depend on, and the inputs, in topological
        order (one sweep, no recursion).

        Remembered for the outputs until nodes or outputs change: the passes that leave a graph as
        it is hand the same graph on, and DCE, the schedule and the backend each ask."""
        key = (len(self.nodes), tuple(self.outputs))
        if roots is None and self._live is not None and self._live[0] == key:
            return list(self._live[1])
        nodes = self.nodes
        live = bytearray(len(nodes))
        for node_id in self.outputs if roots is None else roots:
            live[node_id] = 1
        for node_id in range(len(nodes) - 1, -1, -1):  # users come after their operands: one sweep back
            if live[node_id]:
                for a in nodes[node_id].args:
                    live[a] = 1
        for node_id in self.inputs:
            live[node_id] = 1
        ids = list(itertools.compress(range(len(nodes)), live))
        if roots is None:
            self._live = key, ids
        return list(ids)

    # ---- checking and printing ----------------------------------------------------------

    def verify(self) -> None:
        """Check the invariants every pass must keep; raise AssertionError naming the broken one.

        Every operand must come before its user, which also rules out cycles (ids are then a
        topological order), and every node must have the type its op's rule gives it.
        """
        nodes = self.nodes
        for node_id, node in enumerate(nodes):
            op = OPS.get(node.op)
            assert op is not None, f"%{node_id}: unknown op {node.op!r}"
            assert all(a < node_id for a in node.args), f"%{node_id}: operand defined after its user"
            inferred = op.result_type(tuple([nodes[a].type for a in node.args]), node.attrs)
            assert inferred == node.type, f"%{node_id} {node.op}: type {node.type} but rule infers {inferred}"
        for i, node_id in enumerate(self.inputs):
            assert self.nodes[node_id].op == "input", f"input {i} is not an input node"
        assert len(self.output_names) == len(self.outputs), "output names do not match outputs"
        for node_id in self.outputs:
            assert 0 <= node_id < len(self.nodes), f"output %{node_id} does not exist"

    def __str__(self) -> str:
        return format_graph(self)

    def to_dot(self) -> str:
        return format_dot(self)

    def to_networkx(self) -> nx.DiGraph:
        """The graph as a ``networkx.DiGraph`` whose nodes carry op, shape, dtype, name, attrs and the
        user's source line and whose edges carry operand positions (``ir/networkx_view.py``)."""
        return networkx_view.to_networkx(self)

    @classmethod
    def from_networkx(cls, g: nx.DiGraph) -> Graph:
        """The graph ``to_networkx`` described, rebuilt identical (ids, operand order, attributes)."""
        return networkx_view.from_networkx(g, cls)

    def write_graphml(self, path: str | os.PathLike[str]) -> None:
        """Write the graph as GraphML (``chainrule dump --format graphml``); ``read_graphml`` reads it back."""
        networkx_view.write_graphml(self, path)

    @classmethod
    def read_graphml(cls, path: str | os.PathLike[str]) -> Graph:
        """The graph ``write_graphml`` wrote to ``path``, identical."""
        return networkx_view.read_graphml(path, cls)


class _Rewriting:
    """``Graph.rewriting``'s context manager."""

    __slots__ = ("graph", "rule", "saved")

    def __init__(self, graph: Graph, rule: RuleFunction | None) -> None:
        self.graph, self.rule = graph, rule

    def __enter__(self) -> None:
        self.saved = self.graph.rewriter
        self.graph.rewriter = self.rule

    def __exit__(self, *exc_info: object) -> None:
        self.graph.rewriter = self.saved


class _Attribution:
    """``Graph.attribution``'s context manager: a class, not a generator (it runs once per
    backward node, where ``contextlib``'s machinery costs more than the block)."""

    __slots__ = ("graph", "loc", "origin", "saved")

    def __init__(self, graph: Graph, loc: Loc | None, origin: int | None):
        self.graph, self.loc, self.origin = graph, loc, origin

    def __enter__(self) -> None:
        graph = self.graph
        self.saved = graph._default_loc, graph._default_origin
        graph._default_loc, graph._default_origin = self.loc, self.origin

    def __exit__(self, *exc_info: object) -> None:
        self.graph._default_loc, self.graph._default_origin = self.saved
