"""Tracing a Python function on example arguments into a Graph."""

from __future__ import annotations

import inspect
import struct
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chainrule.errors import ArgumentError, TraceError
from chainrule.frontends.creation import traced_creation
from chainrule.frontends.pytree import NodeType, TreeDef, flatten, node_kind, unflatten
from chainrule.frontends.source import location_of, user_frame_from
from chainrule.frontends.tracer import TraceContext, Tracer
from chainrule.ir import Graph, TensorType, Value


@dataclass(frozen=True)
class LeafSpec:
    """How one leaf of the arguments is treated: a traced input (with its type) or a static value."""

    traced: bool
    type: TensorType | None = None
    python_float: bool = False  # a Python float: its gradient comes back as a float
    scalar: bool = False  # a NumPy scalar (np.float32(1.0)): its gradient comes back as one
    static: Any = None

    @property
    def traced_type(self) -> TensorType:
        """A traced leaf's type (a static leaf has none)."""
        assert self.type is not None, "a static leaf has no type"
        return self.type


@dataclass(frozen=True)
class ArgsSpec:
    """Everything a compiled function specializes on: structure, types and static values."""

    treedefs: tuple[TreeDef, ...]
    leaves: tuple[LeafSpec, ...]
    paths: tuple[str, ...]
    arg_of_leaf: tuple[int, ...]


# fn -> its parameters; inspect.signature costs tens of microseconds, too much to pay per call.
_PARAMETERS: weakref.WeakKeyDictionary[Callable, list] = weakref.WeakKeyDictionary()


def _parameters(fn: Callable) -> list:
    try:
        return _PARAMETERS[fn]
    except (KeyError, TypeError):  # TypeError: fn cannot be weakly referenced or hashed
        pass
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    try:
        _PARAMETERS[fn] = parameters
    except TypeError:
        pass
    return parameters


def argument_names(fn: Callable, count: int) -> list[str]:
    parameters = _parameters(fn)
    names = []
    for i in range(count):
        if i < len(parameters) and parameters[i].kind in (
            parameters[i].POSITIONAL_ONLY,
            parameters[i].POSITIONAL_OR_KEYWORD,
        ):
            names.append(parameters[i].name)
        elif parameters and parameters[-1].kind == parameters[-1].VAR_POSITIONAL:
            names.append(f"{parameters[-1].name}{i - len(parameters) + 1}")
        else:
            names.append(f"arg{i}")
    return names


def describe_args(fn: Callable, args: Sequence, differentiated: Sequence[int]) -> tuple[ArgsSpec, list]:
    """The spec of ``args`` and the flat list of their leaves."""
    names = argument_names(fn, len(args))
    treedefs, specs, paths, owners, all_leaves = [], [], [], [], []
    for position, (arg, name) in enumerate(zip(args, names)):
        leaves, leaf_paths, treedef = flatten(arg, name)
        treedefs.append(treedef)
        for leaf, path in zip(leaves, leaf_paths):
            specs.append(_leaf_spec(leaf, path, position in differentiated, position))
            paths.append(path)
            owners.append(position)
            all_leaves.append(leaf)
    return ArgsSpec(tuple(treedefs), tuple(specs), tuple(paths), tuple(owners)), all_leaves


# Structure tokens of call_key: identity-hashed markers that no leaf's token can equal.
_DICT, _LIST, _TUPLE, _NONE = (object() for _ in range(4))


def static_token(value: Any) -> tuple:
    """What a static value is keyed by: its class and value, a float or complex by its bits, so that
    values which compare equal but compute differently get kernels of their own (``-0.0`` is not
    ``0.0``: ``1 / x`` differs), and NaN finds its kernel again (``nan != nan``)."""
    cls = type(value)
    if cls is float:
        return (cls, struct.pack("<d", value))
    if cls is complex:
        return (cls, struct.pack("<dd", value.real, value.imag))
    return (cls, value)


def call_key(args: Sequence, differentiated: Sequence[int]) -> tuple[tuple, list] | None:
    """A cheap hashable key for ``args`` and their leaves, or None when only describe_args can tell.

    Equal keys mean equal ``describe_args`` specs: the key holds the pytree
    structure (flattened the way ``pytree.flatten`` does, as a prefix-coded token
    list; a registered class by its node type and aux_data), each array's class,
    shape and dtype, and each static value, but no paths or TensorTypes, which
    take far longer to build than a small kernel takes to run. None for a traced value (a Tracer: grad of grad) so the caller
    takes the slow path; an unhashable static value fails when the key is hashed.
    """
    tokens: list = [len(args)]
    leaves: list = []
    token, leaf = tokens.append, leaves.append
    ndarray = np.ndarray
    for position, arg in enumerate(args):
        wrt = position in differentiated
        stack = [arg]
        pop, push = stack.pop, stack.extend
        while stack:
            node = pop()
            cls = type(node)
            if cls is ndarray or isinstance(node, ndarray):
                token((cls, node.shape, node.dtype))
                leaf(node)
                continue
            kind = "dict" if cls is dict else "list" if cls is list else "tuple" if cls is tuple else node_kind(cls)
            if kind == "dict":
                keys = tuple(node)
                token((_DICT, keys))
                push(reversed(node.values()) if cls is dict else [node[key] for key in reversed(keys)])
            elif kind == "list" or kind == "tuple":
                token((_LIST if kind == "list" else _TUPLE, len(node)))
                push(reversed(node))
            elif kind == "none":
                token(_NONE)
            elif isinstance(kind, NodeType):  # a registered class: its node type and aux_data are structure
                children, aux_data = kind.flatten(node)
                children = list(children)
                token((kind, aux_data, len(children)))
                push(reversed(children))
            elif isinstance(node, Tracer):
                return None
            else:
                if isinstance(node, np.generic) and not isinstance(node, (np.str_, np.bytes_)):
                    token((cls,))  # the class fixes the dtype; the value is an input
                elif wrt and isinstance(node, float):
                    token((cls,))  # a differentiated Python float is an input too
                else:
                    token(static_token(node))  # a static value: compiled in
                leaf(node)
    return tuple(tokens), leaves


def _leaf_spec(leaf, path: str, differentiated: bool, position: int) -> LeafSpec:
    if isinstance(leaf, Tracer):
        spec = LeafSpec(True, leaf.type)
    elif isinstance(leaf, np.ndarray) or (isinstance(leaf, np.generic) and not isinstance(leaf, (np.str_, np.bytes_))):
        dtype = np.asarray(leaf).dtype
        if dtype.kind not in "biuf":
            raise ArgumentError(
                f"argument {position} ({path}) has dtype {dtype}; traced arrays must be bool, integer or float"
            )
        spec = LeafSpec(True, TensorType(np.shape(leaf), dtype.name), scalar=isinstance(leaf, np.generic))
    elif isinstance(leaf, float) and differentiated:
        spec = LeafSpec(True, TensorType((), "float64"), python_float=True)
    elif differentiated:
        raise ArgumentError(_not_float_message(path, position, type(leaf).__name__) + _pytree_hint(leaf))
    else:
        try:
            hash(leaf)
        except TypeError:
            raise ArgumentError(
                f"argument {position} ({path}) is a {type(leaf).__name__}, which is neither an "
                "array nor a hashable Python value." + _pytree_hint(leaf)
            ) from None
        if _holds_arrays(leaf):
            raise ArgumentError(
                f"argument {position} ({path}) is a {type(leaf).__qualname__}, a class chainrule cannot look "
                "inside: the arrays it holds would be compiled in as constants, and every new one would "
                "compile again." + _pytree_hint(leaf)
            )
        return LeafSpec(False, static=static_token(leaf))
    if differentiated and not spec.traced_type.is_float:
        raise ArgumentError(_not_float_message(path, position, str(spec.type)))
    return spec


def _holds_arrays(leaf: Any) -> bool:
    """Whether ``leaf``, an object of a class of the user's, has arrays or traced values as attributes."""
    if type(leaf).__module__ in ("builtins", "numpy"):
        return False
    attributes = getattr(leaf, "__dict__", None)
    return isinstance(attributes, dict) and any(isinstance(v, (np.ndarray, Tracer)) for v in attributes.values())


def _pytree_hint(leaf: Any) -> str:
    """For an object of the user's own class: how to make it a container of arrays instead of a leaf."""
    if type(leaf).__module__ in ("builtins", "numpy"):
        return ""
    return (
        f" If a {type(leaf).__qualname__} holds arrays, make its class a pytree node: a dataclass or a "
        "NamedTuple is one already; otherwise use cr.tree_util.register_pytree_node or register_pytree_node_class."
    )


def _not_float_message(path, position, what) -> str:
    return (
        f"cannot differentiate with respect to argument {position} ({path}), a {what}: gradients need "
        "float arrays or Python floats. Pass it as floats (e.g. x.astype(float)) or leave it out of argnums."
    )


def trace_graph(fn: Callable, spec: ArgsSpec, leaves: list, name: str | None = None):
    """Run ``fn`` on traced stand-ins for its traced leaves; return (graph, output treedef)."""
    graph = Graph(name or getattr(fn, "__name__", "f").replace("<lambda>", "fn"))
    context = TraceContext(graph)
    stand_ins = []
    for leaf, leaf_spec, path in zip(leaves, spec.leaves, spec.paths):
        if leaf_spec.traced:
            stand_ins.append(Tracer(Value(graph, graph.add_input(leaf_spec.traced_type, path)), context))
        else:
            stand_ins.append(leaf)
    args, start = [], 0
    for treedef in spec.treedefs:
        count = treedef.num_leaves
        args.append(unflatten(treedef, stand_ins[start : start + count]))
        start += count
    try:
        with traced_creation(context):
            result = fn(*args)
    except ValueError as error:
        if "setting an array element with a sequence" not in str(error):
            raise
        # NumPy gives a traced scalar written into a NumPy array no chance to explain
        raise TraceError(
            "a traced value was written into a NumPy array (out[i] = f(x)), which cannot hold it. "
            "Create the array in the traced function with np.zeros, np.ones, np.empty, np.full or "
            "their _like forms, spelled np.<name> (chainrule traces the float arrays they create), "
            "or build the result with np.stack, np.concatenate or np.where.",
            _raising_user_line(error),
        ) from error
    finally:
        context.open = False
    out_leaves, out_paths, out_treedef = flatten(result, "out")
    outputs = []
    for leaf, path in zip(out_leaves, out_paths):
        if isinstance(leaf, Tracer):
            if leaf._context is not context:
                raise TraceError(f"output {path} is a traced value from another trace")
            outputs.append(leaf._value.id)
        else:
            array = np.asarray(leaf)
            if array.dtype.kind not in "biuf":
                raise TraceError(
                    f"output {path} of {graph.name} is a {type(leaf).__name__}, not an array." + _pytree_hint(leaf)
                )
            outputs.append(graph.const(array))
    graph.set_outputs(outputs, [graph.name if p == "out" else p.replace("out", graph.name, 1) for p in out_paths])
    return graph, out_treedef


def _raising_user_line(error: BaseException):
    """The user's source line where ``error`` was raised: the innermost frame outside chainrule and NumPy."""
    traceback, frame = error.__traceback__, None
    while traceback is not None:
        frame = traceback.tb_frame
        traceback = traceback.tb_next
    return location_of(user_frame_from(frame))
