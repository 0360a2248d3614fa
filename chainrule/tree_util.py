"""Pytrees, as in ``jax.tree_util``: nested containers of arrays that every transformation accepts.

A pytree is a leaf (an array, a number, anything not a container) or a container of
pytrees: a dict, list or tuple, None (an empty subtree: no leaves), a dataclass, a
NamedTuple, or an instance of a class registered here. ``cr.grad``, ``cr.jit``,
``cr.jacobian``, ``cr.scan``'s carry, the optimizers and ``cr.train.fit`` take any of
them and give results of the same structure: a dataclass of arrays in, the same
dataclass of gradients out.

>>> import dataclasses, numpy as np, chainrule as cr
>>> @dataclasses.dataclass
... class Linear:
...     w: np.ndarray
...     b: np.ndarray
...     name: str = dataclasses.field(default="linear", metadata={"static": True})
>>> model = Linear(np.ones(2), np.zeros(()))
>>> grads = cr.grad(lambda m, x: np.sum(x @ m.w + m.b))(model, np.eye(2))
>>> grads
Linear(w=array([1., 1.]), b=array(2.), name='linear')
>>> cr.tree_util.tree_leaves(model)
[array([1., 1.]), array(0.)]

Dataclasses: every field is a child, except fields whose metadata says
``static=True``: those are part of the structure (aux_data), must be hashable, and a
new value compiles a new specialization. An instance is rebuilt by setting its
fields on a new object, without calling ``__init__`` or ``__post_init__``.

Differences from JAX: dict keys keep their insertion order instead of being sorted,
and leaves that are not arrays (a string, an int) are compiled in as static values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from chainrule.errors import ArgumentError
from chainrule.frontends.pytree import (
    NodeType,
    TreeDef,
    dataclass_node_type,
    flatten,
    register_node,
    tree_map,
    unflatten,
)

T = TypeVar("T", bound=type)

IsLeaf = Callable[[Any], bool] | None


def tree_flatten(tree: Any, is_leaf: IsLeaf = None) -> tuple[list[Any], TreeDef]:
    """``(leaves, treedef)``: the leaves in order and the structure that ``tree_unflatten`` rebuilds.

    >>> tree_flatten({"a": [1.0, 2.0], "b": None})
    ([1.0, 2.0], TreeDef({'a': [*, *], 'b': None}))
    """
    leaves, _, treedef = flatten(tree, is_leaf=is_leaf)
    return leaves, treedef


def tree_unflatten(treedef: TreeDef, leaves: Iterable[Any]) -> Any:
    """The pytree of structure ``treedef`` with ``leaves`` in its leaves' places.

    >>> leaves, treedef = tree_flatten((1.0, {"x": 2.0}))
    >>> tree_unflatten(treedef, [10.0, 20.0])
    (10.0, {'x': 20.0})
    """
    if not isinstance(treedef, TreeDef):
        raise ArgumentError(f"tree_unflatten needs a TreeDef (from tree_flatten or tree_structure), got {treedef!r}")
    leaves = list(leaves)
    if len(leaves) != treedef.num_leaves:
        raise ArgumentError(f"tree_unflatten: {treedef} has {treedef.num_leaves} leaves, got {len(leaves)}")
    return unflatten(treedef, leaves)


def tree_leaves(tree: Any, is_leaf: IsLeaf = None) -> list[Any]:
    """The leaves of ``tree``, in order (None contributes none)."""
    return flatten(tree, is_leaf=is_leaf)[0]


def tree_structure(tree: Any, is_leaf: IsLeaf = None) -> TreeDef:
    """The structure of ``tree``: hashable, compared by structure, ``.num_leaves`` leaves."""
    return flatten(tree, is_leaf=is_leaf)[2]


def register_pytree_node(
    nodetype: type, flatten_func: Callable[[Any], tuple[Iterable[Any], Any]], unflatten_func: Callable[[Any, Any], Any]
) -> None:
    """Make instances of ``nodetype`` pytree nodes, with JAX's signatures:
    ``flatten_func(node) -> (children, aux_data)`` and ``unflatten_func(aux_data, children) -> node``.
    ``aux_data`` (whatever is not a child: sizes, names, flags) must be hashable and is compared
    by equality: it is part of the structure that keys the compile cache.

    >>> class Pair:
    ...     def __init__(self, first, second):
    ...         self.first, self.second = first, second
    >>> register_pytree_node(Pair, lambda p: ((p.first, p.second), None), lambda _, c: Pair(*c))
    >>> tree_leaves([Pair(1.0, 2.0), 3.0])
    [1.0, 2.0, 3.0]
    """
    register_node(NodeType(nodetype, flatten_func, unflatten_func))


def register_pytree_node_class(cls: T) -> T:
    """Class decorator: ``cls.tree_flatten(self) -> (children, aux_data)`` and the classmethod
    ``cls.tree_unflatten(aux_data, children)`` make it a pytree node (JAX's decorator)."""
    if not hasattr(cls, "tree_flatten") or not hasattr(cls, "tree_unflatten"):
        raise ArgumentError(
            f"register_pytree_node_class: {cls.__qualname__} needs a tree_flatten method and a "
            "tree_unflatten classmethod"
        )
    register_node(NodeType(cls, lambda node: node.tree_flatten(), cls.tree_unflatten))
    return cls


def register_dataclass(
    nodetype: T, data_fields: Iterable[str] | None = None, meta_fields: Iterable[str] | None = None
) -> T:
    """Register a dataclass with explicit ``data_fields`` (children) and ``meta_fields`` (static,
    hashable aux_data), as ``jax.tree_util.register_dataclass``. Without them (or without calling
    this at all) a field is a child unless its metadata says ``static=True``. Usable as a decorator."""
    import dataclasses

    if not dataclasses.is_dataclass(nodetype):
        raise ArgumentError(f"register_dataclass: {nodetype.__qualname__} is not a dataclass")
    register_node(dataclass_node_type(nodetype, data_fields, meta_fields))
    return nodetype


__all__ = [
    "TreeDef",
    "register_dataclass",
    "register_pytree_node",
    "register_pytree_node_class",
    "tree_flatten",
    "tree_leaves",
    "tree_map",
    "tree_structure",
    "tree_unflatten",
]
