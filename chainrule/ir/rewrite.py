"""The one rewrite engine: rules are data (``Rule`` records collected in a ``RuleSet``), applied by
one driver (``RuleSet.__call__``) wherever a node is about to be built.

A rule is a function ``(graph, node, args) -> id | None``: it sees a node not yet built (its
operands already in ``graph``) and returns the id of an equal value, building it if need be, or
None. With it, the record says when the rule can fire at all, which the driver checks before
calling it:

- ``ops``: the ops the rule rewrites (``EVERY_OP`` for all of them);
- ``any_operand``: it fires only when some operand is one of these ops (``x * 1`` needs a
  constant operand; most nodes of a gradient are products of plain values, and this one test
  skips the rule for them);
- ``every_operand``: it fires only when there are operands and every one is one of these ops
  (constant folding);
- ``kind``: what sort of rewrite it is, which says where it may run: ``exact`` (the same result
  for every input, inf and NaN included), ``rounding`` (a different rounding only) or
  ``stability`` (different only where the original overflows or underflows to a wrong inf/NaN).

Three sets serve the compiler: ``ir.canonical.CANONICAL`` (exact rules every ``Graph.add``
applies, so no graph ever holds ``x * 1``), ``compiler.simplify.SIMPLIFY`` (folding, algebra,
stability and the commutative merge, which the simplify pass and reverse mode install with
``Graph.rewriting``) and ``compiler.fold.FOLD`` / ``compiler.cse.CSE`` (one rule each).
``compiler.rewrite.rebuild`` is how a pass applies a set to a graph that already exists.

    >>> rules = RuleSet("demo")
    >>> @rules.rule("neg", any_operand={"neg"})
    ... def neg_of_neg(graph, node, args):
    ...     return graph[args[0]].args[0] if graph[args[0]].op == "neg" else None
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chainrule.ir.node import Node

if TYPE_CHECKING:
    from chainrule.ir.graph import Graph

# (graph being built, node about to be built, its operand ids) -> an id in that graph, or None
RuleFunction = Callable[["Graph", Node, tuple[int, ...]], "int | None"]

EVERY_OP = "*"
KINDS = ("exact", "rounding", "stability")


@dataclass(frozen=True)
class Rule:
    """One rewrite and when it can fire (see the module docstring)."""

    name: str
    rewrite: RuleFunction
    ops: frozenset[str]
    any_operand: frozenset[str] | None = None
    every_operand: frozenset[str] | None = None
    kind: str = "exact"

    def applies_to(self, op: str) -> bool:
        return EVERY_OP in self.ops or op in self.ops

    @property
    def needs(self) -> frozenset[str] | None:
        """Ops of which some operand must be one for the rule to fire, or None (no such condition).
        A rule on every operand needs one too: it never fires on a node without operands."""
        return self.any_operand if self.any_operand is not None else self.every_operand


@dataclass(frozen=True)
class _Dispatch:
    """The rules for one op, in order, and a quick test that lets the driver skip them all."""

    rules: tuple[Rule, ...]
    # (any_operand, every_operand, rewrite) of each rule: the driver's loop, without attribute lookups
    entries: tuple[tuple[frozenset[str] | None, frozenset[str] | None, RuleFunction], ...]
    # the union of the rules' ``needs``: when no operand is one of these ops, none can fire
    # (None when some rule needs no particular operand)
    needs: frozenset[str] | None


class RuleSet:
    """An ordered collection of rules, and the driver that applies them: calling the set on
    ``(graph, node, args)`` returns the first rule's replacement, or None. The set is itself a
    rule function, so sets compose (``RuleSet("all", [*a.rules, *b.rules])``) and install with
    ``Graph.rewriting``."""

    def __init__(self, name: str, rules: Iterable[Rule] = ()) -> None:
        self.name = name
        self.rules: list[Rule] = list(rules)
        self._by_op: dict[str, _Dispatch | None] = {}

    def __repr__(self) -> str:
        return f"RuleSet({self.name!r}, {len(self.rules)} rules)"

    def rule(
        self,
        *ops: str,
        any_operand: Iterable[str] | None = None,
        every_operand: Iterable[str] | None = None,
        kind: str = "exact",
    ) -> Callable[[RuleFunction], RuleFunction]:
        """Decorator: add the function as a rule for ``ops`` (see ``Rule``) and return it unchanged."""
        if kind not in KINDS:
            raise ValueError(f"a rule's kind is one of {KINDS}, not {kind!r}")

        def add(function: RuleFunction) -> RuleFunction:
            self.add(
                Rule(
                    getattr(function, "__name__", repr(function)),
                    function,
                    frozenset(ops),
                    None if any_operand is None else frozenset(any_operand),
                    None if every_operand is None else frozenset(every_operand),
                    kind,
                )
            )
            return function

        return add

    def add(self, rule: Rule) -> None:
        self.rules.append(rule)
        self._by_op.clear()

    def of_kind(self, *kinds: str) -> RuleSet:
        """The rules of these kinds, in the same order."""
        return RuleSet(f"{self.name}[{','.join(kinds)}]", [r for r in self.rules if r.kind in kinds])

    def for_op(self, op: str) -> tuple[Rule, ...]:
        """The rules that rewrite ``op``, in the order they are tried."""
        dispatch = self._dispatch(op)
        return () if dispatch is None else dispatch.rules

    def _dispatch(self, op: str) -> _Dispatch | None:
        try:
            return self._by_op[op]
        except KeyError:
            pass
        rules = tuple(r for r in self.rules if r.applies_to(op))
        dispatch = None
        if rules:
            needs = [r.needs for r in rules]
            union = None if any(n is None for n in needs) else frozenset().union(*(n for n in needs if n))
            entries = tuple((r.any_operand, r.every_operand, r.rewrite) for r in rules)
            dispatch = _Dispatch(rules, entries, union)
        self._by_op[op] = dispatch
        return dispatch

    def __call__(self, graph: Graph, node: Node, args: tuple[int, ...]) -> int | None:
        """The first replacement one of the rules gives for ``node`` (not built), or None."""
        try:
            dispatch = self._by_op[node.op]
        except KeyError:
            dispatch = self._dispatch(node.op)
        if dispatch is None:
            return None
        nodes = graph.nodes
        operand_ops = [nodes[a].op for a in args]
        needs = dispatch.needs
        if needs is not None and needs.isdisjoint(operand_ops):
            return None  # the common case: a product of plain values
        for any_operand, every_operand, rewrite in dispatch.entries:  # each rule's operand condition: hot
            if any_operand is not None and any_operand.isdisjoint(operand_ops):
                continue
            if every_operand is not None and not (operand_ops and every_operand.issuperset(operand_ops)):
                continue
            replacement = rewrite(graph, node, args)
            if replacement is not None:
                return replacement
        return None
