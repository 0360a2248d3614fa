"""Pytrees: nested containers of leaves, flattened to a list and rebuilt.

The containers are dicts, lists, tuples, None (an empty subtree, as in JAX) and
every registered class: ``register_node`` takes JAX's pair of functions,
``flatten(node) -> (children, aux_data)`` and ``unflatten(aux_data, children)``;
dataclasses and NamedTuples are registered automatically the first time one is
seen (``node_kind``). Anything else is a leaf. Dict keys keep the caller's
order, so gradients come back looking like the parameters.

Every walk here uses an explicit stack: a tree nested thousands deep never recurses.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chainrule.errors import ArgumentError


@dataclass(frozen=True, eq=False)
class NodeType:
    """How a registered class comes apart: ``flatten(node) -> (children, aux_data)`` and
    ``unflatten(aux_data, children) -> node``. ``child_names`` (a dataclass's fields, a
    NamedTuple's) name the children in paths (``params.w``); without them a child is ``[i]``.
    One record per class, compared by identity: a TreeDef holds it."""

    cls: type
    flatten: Callable[[Any], tuple[Iterable[Any], Any]]
    unflatten: Callable[[Any, tuple[Any, ...]], Any]
    child_names: tuple[str, ...] | None = None
    automatic: bool = False  # registered because it is a dataclass or a NamedTuple: may be replaced
    aux_names: tuple[str, ...] | None = None  # a dataclass's static fields, whose values are the aux_data


# How each class flattens: a NodeType, or "leaf", "dict", "list", "tuple", "none". Filled on first
# sight of a class (``node_kind``), so a leaf of a class seen before costs one dict lookup.
_KINDS: dict[type, NodeType | str] = {dict: "dict", list: "list", tuple: "tuple", type(None): "none"}
_BUILTIN_CONTAINERS = (dict, list, tuple, type(None))


def register_node(node_type: NodeType) -> None:
    """Make instances of ``node_type.cls`` pytree nodes (``chainrule.tree_util.register_pytree_node``)."""
    cls = node_type.cls
    if not isinstance(cls, type):
        raise ArgumentError(f"register_pytree_node needs a class, got {cls!r}")
    if cls in _BUILTIN_CONTAINERS:
        raise ArgumentError(f"{cls.__name__} is a built-in pytree container; it cannot be registered again")
    if issubclass(cls, np.ndarray):  # arrays are leaves everywhere (the compiled call's key tests them first)
        raise ArgumentError(f"{cls.__qualname__} is an array class; arrays are pytree leaves")
    existing = _KINDS.get(cls)
    if isinstance(existing, NodeType) and not existing.automatic:
        raise ArgumentError(f"{cls.__qualname__} is already registered as a pytree node")
    if not callable(node_type.flatten) or not callable(node_type.unflatten):
        raise ArgumentError(f"register_pytree_node({cls.__qualname__}, ...) needs two functions: flatten, unflatten")
    _KINDS[cls] = node_type


def node_kind(cls: type) -> NodeType | str:
    """How instances of ``cls`` flatten: their NodeType if registered, else "leaf", or "dict",
    "list", "tuple" for those and their subclasses, "none" for None. Dataclasses and
    NamedTuples get registered here on first sight."""
    kind = _KINDS.get(cls)
    if kind is None:
        if dataclasses.is_dataclass(cls):
            kind = dataclass_node_type(cls, automatic=True)
        elif issubclass(cls, tuple) and hasattr(cls, "_fields"):
            kind = _namedtuple_node_type(cls)
        elif issubclass(cls, dict):
            kind = "dict"
        elif issubclass(cls, (list, tuple)):
            kind = "list" if issubclass(cls, list) else "tuple"
        else:
            kind = "leaf"
        _KINDS[cls] = kind
    return kind


def dataclass_node_type(
    cls: type,
    data_fields: Iterable[str] | None = None,
    meta_fields: Iterable[str] | None = None,
    automatic: bool = False,
) -> NodeType:
    """A dataclass's node type: ``data_fields`` are the children, ``meta_fields`` (hashable) the
    aux_data. By default a field is a child unless its metadata says ``static=True``
    (``field(metadata={"static": True})``, JAX's spelling). Rebuilding sets the fields on a new
    instance without calling ``__init__`` (as ``copy.copy`` does), so a ``__post_init__`` that
    validates or converts its inputs never sees tracers or gradients."""
    fields = [f.name for f in dataclasses.fields(cls)]
    if meta_fields is None:
        meta_fields = [f.name for f in dataclasses.fields(cls) if f.metadata.get("static", False)]
    meta = tuple(meta_fields)
    data = tuple(name for name in fields if name not in meta) if data_fields is None else tuple(data_fields)
    unknown = sorted(set(data + meta) - set(fields))
    if unknown:
        raise ArgumentError(f"{cls.__qualname__} has no fields {unknown}; its fields are {fields}")
    make = object.__new__
    assign = object.__setattr__  # works on frozen dataclasses too

    get_data, get_meta = _getter(data), _getter(meta)

    def flatten_dataclass(node: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return get_data(node), get_meta(node)

    def unflatten_dataclass(aux_data: tuple[Any, ...], children: tuple[Any, ...]) -> Any:
        node: Any = make(cls)
        for name, value in zip(data, children, strict=True):
            assign(node, name, value)
        for name, value in zip(meta, aux_data, strict=True):
            assign(node, name, value)
        return node

    return NodeType(cls, flatten_dataclass, unflatten_dataclass, data, automatic, meta)


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """``node -> (the values of its attributes names, in order)``; attrgetter makes that one C call."""
    if len(names) > 1:
        return operator.attrgetter(*names)
    if names:
        (name,) = names
        return lambda node: (getattr(node, name),)
    return lambda node: ()


def _namedtuple_node_type(cls: type) -> NodeType:
    fields: tuple[str, ...] = getattr(cls, "_fields")  # noqa: B009  (typing.NamedTuple's type has no _fields)
    return NodeType(cls, lambda node: (tuple(node), None), lambda _, children: cls(*children), fields, True)


@dataclass(frozen=True, eq=False)
class TreeDef:
    """The structure of a pytree with its leaves taken out. Hashable, so it can key a cache.

    ``kind`` is "leaf", "dict", "list", "tuple", "none" or "node" (a registered class:
    ``node_type`` says which, ``aux_data`` is what its flatten kept aside, compared by
    equality; ``keys`` are a dict's keys or a node's child names). Leaf count and hash are
    computed once, from the children's, when a node is built (children first), and
    equality and printing walk with a stack: a tree nested thousands deep never recurses.
    """

    kind: str
    keys: tuple = ()
    children: tuple = ()
    node_type: NodeType | None = None
    aux_data: Any = None
    _num_leaves: int = field(init=False, repr=False)
    _hash: int = field(init=False, repr=False)

    def __post_init__(self):
        count = 1 if self.kind == "leaf" else sum(child._num_leaves for child in self.children)
        object.__setattr__(self, "_num_leaves", count)
        child_hashes = tuple(c._hash for c in self.children)
        object.__setattr__(self, "_hash", hash((self.kind, self.keys, child_hashes, self.node_type, self.aux_data)))

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
            if a.node_type is not b.node_type or a.aux_data != b.aux_data:
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
                stack.extend(reversed(_pieces(item)))
        return "".join(parts)

    def __repr__(self) -> str:
        return f"TreeDef({self})"

    def describe(self) -> str:
        """What this node is, in a few words, for messages: "a dict with keys ('w', 'b')"."""
        if self.kind == "leaf":
            return "a leaf"
        if self.kind == "none":
            return "None"
        if self.kind == "dict":
            return f"a dict with keys {self.keys}"
        if self.kind == "node":
            assert self.node_type is not None
            return f"a {self.node_type.cls.__qualname__}"
        return f"a {self.kind} of {len(self.children)}"


def _pieces(treedef: TreeDef) -> list:
    """A container node printed: its brackets, separators and labels around its children (TreeDefs,
    printed next) and, for a dataclass, its static fields' values (strings, printed as they are)."""
    children: list = list(treedef.children)
    if treedef.kind == "node":
        node_type = treedef.node_type
        assert node_type is not None
        opening, closing = f"{node_type.cls.__qualname__}(", ")"
        labels = [f"{name}=" for name in treedef.keys] if treedef.keys else [""] * len(children)
        if node_type.aux_names:  # a dataclass's static fields, by name
            labels += [f"{name}=" for name in node_type.aux_names]
            children += [repr(value) for value in treedef.aux_data]
        elif treedef.aux_data not in (None, ()):
            closing = f"; {treedef.aux_data!r})"
    else:
        opening, closing = {"dict": ("{", "}"), "list": ("[", "]"), "tuple": ("(", ")")}[treedef.kind]
        labels = [f"{key!r}: " for key in treedef.keys] if treedef.kind == "dict" else [""] * len(children)
    pieces: list = [opening]
    for index, (label, child) in enumerate(zip(labels, children, strict=True)):
        pieces.extend((", " if index else "", label, child))
    if treedef.kind == "tuple" and len(children) == 1:
        pieces.append(",")
    pieces.append(closing)
    return pieces


LEAF = TreeDef("leaf")
NONE = TreeDef("none")


def _child_path(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def flatten(tree: Any, path: str = "", is_leaf: Callable[[Any], bool] | None = None) -> tuple[list, list[str], TreeDef]:
    """Leaves in order, a readable path for each (``p.W1``, ``layers[0]``), and the structure.

    ``is_leaf(node)``, when given, is asked first about every node: True keeps the
    node whole as a leaf. Works with an explicit stack, so deeply nested trees do not recurse.
    """
    leaves, paths = [], []
    # Build children first, then parents: a stack of (action, node, path or what to build).
    results: list = []
    stack: list = [("visit", tree, path)]
    while stack:
        action, node, where = stack.pop()
        if action == "build":
            kind, keys, count, node_type, aux_data = where
            children = tuple(results[len(results) - count :]) if count else ()
            del results[len(results) - count :]
            results.append(TreeDef(kind, keys, children, node_type, aux_data))
            continue
        if is_leaf is not None and is_leaf(node):
            leaves.append(node)
            paths.append(where)
            results.append(LEAF)
            continue
        kind = _KINDS.get(type(node)) or node_kind(type(node))
        if kind == "leaf":
            leaves.append(node)
            paths.append(where)
            results.append(LEAF)
        elif kind == "dict":  # a dict subclass (OrderedDict, defaultdict) is rebuilt as a dict
            keys = tuple(node.keys())
            stack.append(("build", None, ("dict", keys, len(keys), None, None)))
            for key in reversed(keys):
                stack.append(("visit", node[key], f"{where}.{key}" if where else str(key)))  # inline: hot
        elif kind == "list" or kind == "tuple":
            stack.append(("build", None, (kind, (), len(node), None, None)))
            for index in reversed(range(len(node))):
                stack.append(("visit", node[index], f"{where}[{index}]"))
        elif kind == "none":
            results.append(NONE)
        else:
            assert isinstance(kind, NodeType)
            _push_node(stack, node, where, kind)
    return leaves, paths, results[0]


def _push_node(stack: list, node: Any, where: str, node_type: NodeType) -> None:
    """A registered node: its children to visit, and the TreeDef to build after them."""
    children, aux_data = node_type.flatten(node)
    children = tuple(children)
    try:
        hash(aux_data)
    except TypeError:
        raise ArgumentError(
            f"{where or 'the tree'} is a {node_type.cls.__qualname__} whose flatten returned unhashable "
            f"aux_data {aux_data!r}; aux_data keys the compile cache, so it must be hashable "
            "(a dataclass's static fields included)"
        ) from None
    names = node_type.child_names
    if names is not None and len(names) != len(children):
        names = None
    stack.append(("build", None, ("node", names or (), len(children), node_type, aux_data)))
    for index in reversed(range(len(children))):
        child_path = _child_path(where, names[index]) if names else f"{where}[{index}]"
        stack.append(("visit", children[index], child_path))


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
            kind = node.kind
            if kind == "dict":
                results.append(dict(zip(node.keys, children)))
            elif kind == "list":
                results.append(list(children))
            elif kind == "tuple":
                results.append(tuple(children))
            else:
                results.append(node.node_type.unflatten(node.aux_data, tuple(children)))
        elif node.kind == "leaf":
            results.append(next(leaf_iter))
        elif node.kind == "none":
            results.append(None)
        else:
            stack.append(("build", node))
            for child in reversed(node.children):
                stack.append(("visit", child))
    return results[0]


def flatten_up_to(treedef: TreeDef, tree: Any, path: str = "") -> list:
    """The subtrees of ``tree`` where ``treedef`` has its leaves; ``tree`` must have ``treedef``'s
    structure down to them (an ArgumentError naming the first place it differs, by ``path``).
    Dicts match by their keys, in any order."""
    subtrees: list = []
    stack: list = [(treedef, tree, path)]
    while stack:
        expected, node, where = stack.pop()
        if expected.kind == "leaf":
            subtrees.append(node)
            continue
        children = _children_like(expected, node, where)
        for index in reversed(range(len(children))):
            if expected.keys:
                child_path = _child_path(where, str(expected.keys[index]))
            else:
                child_path = f"{where}[{index}]"
            stack.append((expected.children[index], children[index], child_path))
    return subtrees


def _children_like(expected: TreeDef, node: Any, where: str) -> list:
    """``node``'s children if it is the container ``expected`` describes, else an ArgumentError."""
    kind = node_kind(type(node))
    children: list | None = None
    if kind == "none" == expected.kind:
        children = []
    elif kind == "dict" == expected.kind and set(node) == set(expected.keys):
        children = [node[key] for key in expected.keys]
    elif kind == expected.kind and kind in ("list", "tuple") and len(node) == len(expected.children):
        children = list(node)
    elif isinstance(kind, NodeType) and kind is expected.node_type:
        flat, aux_data = kind.flatten(node)
        flat = list(flat)
        if aux_data == expected.aux_data and len(flat) == len(expected.children):
            children = flat
    if children is None:
        raise ArgumentError(
            f"{where or 'the tree'} is {describe_value(node)} where the first tree has {expected.describe()}"
        )
    return children


def describe_value(value: Any) -> str:
    """What a pytree node is, in a few words, for messages: "a list of 2", "a Params"."""
    kind = node_kind(type(value))
    if kind == "none":
        return "None"
    if kind == "dict":
        return f"a dict with keys {tuple(value)}"
    if kind in ("list", "tuple"):
        return f"a {kind} of {len(value)}"
    if isinstance(kind, NodeType):
        return f"a {kind.cls.__qualname__}"
    return f"a leaf ({type(value).__qualname__})"


def tree_map(fn: Callable, tree: Any, *rest: Any, is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """``fn`` applied to each leaf of ``tree`` (and the matching subtrees of ``rest``), in ``tree``'s structure."""
    leaves, _, treedef = flatten(tree, is_leaf=is_leaf)
    if not rest:
        return unflatten(treedef, [fn(leaf) for leaf in leaves])
    others = [flatten_up_to(treedef, other, f"rest[{i}]") for i, other in enumerate(rest)]
    return unflatten(treedef, [fn(*xs) for xs in zip(leaves, *others)])
