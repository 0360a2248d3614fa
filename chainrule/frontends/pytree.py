"""Pytrees: nested dicts, lists and tuples of leaves, flattened to a list and rebuilt.

Dict keys keep the caller's order, so gradients come back looking like the parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, eq=False)
class TreeDef:
    """The structure of a pytree with its leaves taken out. Hashable, so it can key a cache.

    Leaf count and hash are computed once, from the children's, when a node is
    built (children first), and equality and printing walk with a stack: a tree
    nested thousands deep never recurses.
    """

    kind: str  # "leaf", "dict", "list", "tuple", "none"
    keys: tuple = ()
    children: tuple = ()
    _num_leaves: int = field(init=False, repr=False)
    _hash: int = field(init=False, repr=False)

    def __post_init__(self):
        count = 1 if self.kind == "leaf" else sum(child._num_leaves for child in self.children)
        object.__setattr__(self, "_num_leaves", count)
        object.__setattr__(self, "_hash", hash((self.kind, self.keys, tuple(c._hash for c in self.children))))

    @property
    def num_leaves(self) -> int:
        return self._num_leaves

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        if not isinstance(other, TreeDef):
            return NotImplemented
        stack = [(self, other)]
        while stack:
            a, b = stack.pop()
            if a is b:
                continue
            if a._hash != b._hash or a.kind != b.kind or a.keys != b.keys or len(a.children) != len(b.children):
                return False
            stack.extend(zip(a.children, b.children))
        return True

    def __str__(self) -> str:
        parts: list = []
        stack: list = [self]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                parts.append(item)
            elif item.kind == "leaf":
                parts.append("*")
            elif item.kind == "none":
                parts.append("None")
            else:
                opening, closing = {"dict": ("{", "}"), "list": ("[", "]"), "tuple": ("(", ")")}[item.kind]
                pieces: list = [opening]
                for index, child in enumerate(item.children):
                    pieces.append(", " if index else "")
                    pieces.append(f"{item.keys[index]!r}: " if item.kind == "dict" else "")
                    pieces.append(child)
                if item.kind == "tuple" and len(item.children) == 1:
                    pieces.append(",")
                pieces.append(closing)
                stack.extend(reversed(pieces))
        return "".join(parts)

    def __repr__(self) -> str:
        return f"TreeDef({self})"


_LEAF = TreeDef("leaf")


def flatten(tree: Any, path: str = "") -> tuple[list, list[str], TreeDef]:
    """Leaves in order, a readable path for each (``p.W1``, ``layers[0]``), and the structure.

    Works with an explicit stack, so deeply nested trees do not recurse.
    """
    leaves, paths = [], []
    # Build children first, then parents: a stack of (node, path, state).
    results: list = []
    stack: list = [("visit", tree, path)]
    while stack:
        action, node, where = stack.pop()
        if action == "build":
            kind, keys, count = where
            children = tuple(results[len(results) - count :]) if count else ()
            del results[len(results) - count :]
            results.append(TreeDef(kind, keys, children))
            continue
        if isinstance(node, dict):
            keys = tuple(node.keys())
            stack.append(("build", None, ("dict", keys, len(keys))))
            for key in reversed(keys):
                stack.append(("visit", node[key], f"{where}.{key}" if where else str(key)))
        elif isinstance(node, (list, tuple)) and not _is_namedtuple(node):
            kind = "list" if isinstance(node, list) else "tuple"
            stack.append(("build", None, (kind, (), len(node))))
            for index in reversed(range(len(node))):
                stack.append(("visit", node[index], f"{where}[{index}]"))
        elif node is None:
            results.append(TreeDef("none"))
        else:
            leaves.append(node)
            paths.append(where)
            results.append(_LEAF)
    return leaves, paths, results[0]


def unflatten(treedef: TreeDef, leaves: list) -> Any:
    """Rebuild a pytree of ``treedef``'s structure from ``leaves`` (iteratively)."""
    leaf_iter = iter(leaves)
    results: list = []
    stack: list = [("visit", treedef)]
    while stack:
        action, node = stack.pop()
        if action == "build":
            count = len(node.children)
            children = results[len(results) - count :] if count else []
            del results[len(results) - count :]
            if node.kind == "dict":
                results.append(dict(zip(node.keys, children)))
            else:
                results.append(list(children) if node.kind == "list" else tuple(children))
        elif node.kind == "leaf":
            results.append(next(leaf_iter))
        elif node.kind == "none":
            results.append(None)
        else:
            stack.append(("build", node))
            for child in reversed(node.children):
                stack.append(("visit", child))
    return results[0]


def tree_map(fn: Callable, tree: Any) -> Any:
    leaves, _, treedef = flatten(tree)
    return unflatten(treedef, [fn(leaf) for leaf in leaves])


def _is_namedtuple(node) -> bool:
    return isinstance(node, tuple) and hasattr(node, "_fields")
