"""Tracing a Python function on example arguments into a Graph."""

from __future__ import annotations

import dis
import inspect
import re
import struct
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chainrule.errors import ArgumentError, OutputError, TraceError, TraceTypeError, TraceValueError
from chainrule.frontends.creation import traced_creation
from chainrule.frontends.pytree import NodeType, TreeDef, flatten, node_kind, tree_map, unflatten
from chainrule.frontends.random_draws import warning_on_random_draws
from chainrule.frontends.source import location_of, user_frame_from
from chainrule.frontends.tracer import TraceContext, Tracer, innermost_open, stop_gradient
from chainrule.ir import Graph, TensorType, Value


@dataclass(frozen=True)
class LeafSpec:
    """How one leaf of the arguments is treated: a traced input (with its type) or a static value."""

    traced: bool
    type: TensorType | None = None
    python_float: bool = False  # a Python float: its gradient comes back as a float
    scalar: bool = False  # a NumPy scalar (np.float32(1.0)): its gradient comes back as one
    static: Any = None
    python_int: bool = False  # a Python int, traced as a 0-d int64

    @property
    def weak(self) -> bool:
        """A Python int or float: traced as a 0-d value that combines with arrays as a Python number
        does (``x32 * lr`` stays float32), JAX's weak type."""
        return self.python_float or self.python_int

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
    keywords: tuple[str, ...] = ()  # the last len(keywords) arguments are passed by these names


_STATIC_LEAF = TreeDef("leaf")  # a static argument is one leaf, whatever its structure


@dataclass(frozen=True)
class StaticArguments:
    """Which arguments are static (compiled in by value, a new value compiles again), as JAX's
    ``static_argnums`` and ``static_argnames``: each is also found by the other way of passing
    it, through ``fn``'s signature (``static_argnames="n"`` covers ``f(x, 3)`` for ``def f(x, n)``)."""

    numbers: tuple[int, ...] = ()
    names: frozenset[str] = frozenset()

    @staticmethod
    def of(fn: Callable, static_argnums: Any = (), static_argnames: Any = ()) -> StaticArguments:
        """The static arguments of ``fn`` given by positions and names; an ArgumentError for a bad spec."""
        numbers = int_tuple(static_argnums, "static_argnums")
        if isinstance(static_argnames, str):
            static_argnames = (static_argnames,)
        if not isinstance(static_argnames, (tuple, list)) or not all(isinstance(n, str) for n in static_argnames):
            raise ArgumentError(f"static_argnames must be a str or a tuple of str, got {static_argnames!r}")
        names = set(static_argnames)
        positional = [p.name for p in _parameters(fn) if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        by_name = {name: i for i, name in enumerate(positional)}
        found = set(numbers) | {by_name[n] for n in names if n in by_name}
        names |= {positional[n] for n in numbers if 0 <= n < len(positional)}
        return StaticArguments(tuple(sorted(found, key=lambda n: (n < 0, n))), frozenset(names))

    def positions(self, count: int, keywords: tuple[str, ...]) -> tuple[int, ...]:
        """The static positions among ``count`` positional arguments followed by ``keywords``."""
        static = {n % count for n in self.numbers if -count <= n < count}
        static.update(count + i for i, name in enumerate(keywords) if name in self.names)
        return tuple(sorted(static))

    def __bool__(self) -> bool:
        return bool(self.numbers or self.names)


def int_tuple(value: Any, what: str) -> tuple[int, ...]:
    """``value`` (an int or a sequence of ints) as a tuple, or an ArgumentError naming ``what`` it was."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if not isinstance(value, (tuple, list)) or not all(isinstance(a, int) and not isinstance(a, bool) for a in value):
        raise ArgumentError(f"{what} must be an int or a tuple of ints, got {value!r}")
    return tuple(value)


def split_keywords(args: tuple, kwargs: dict) -> tuple[tuple, tuple[str, ...]]:
    """A call's arguments as one tuple, positional ones then keyword ones sorted by name, and
    those names: keyword arguments are traced like positional ones."""
    if not kwargs:
        return args, ()
    keywords = tuple(sorted(kwargs))
    return args + tuple(kwargs[name] for name in keywords), keywords


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


def describe_args(
    fn: Callable,
    args: Sequence,
    differentiated: Sequence[int],
    static: Sequence[int] = (),
    keywords: tuple[str, ...] = (),
) -> tuple[ArgsSpec, list]:
    """The spec of ``args`` (positional ones, then the values of ``keywords``) and the flat list of
    their leaves. An argument at a ``static`` position is one leaf, keyed by its value."""
    names = argument_names(fn, len(args) - len(keywords)) + list(keywords)
    treedefs, specs, paths, owners, all_leaves = [], [], [], [], []
    for position, (arg, name) in enumerate(zip(args, names)):
        if position in static:
            specs.append(LeafSpec(False, static=_static_key(arg, name)))
            paths.append(name)
            owners.append(position)
            all_leaves.append(arg)
            treedefs.append(_STATIC_LEAF)
            continue
        leaves, leaf_paths, treedef = flatten(arg, name)
        treedefs.append(treedef)
        for leaf, path in zip(leaves, leaf_paths):
            specs.append(_leaf_spec(leaf, path, position in differentiated, position))
            paths.append(path)
            owners.append(position)
            all_leaves.append(leaf)
    return ArgsSpec(tuple(treedefs), tuple(specs), tuple(paths), tuple(owners), tuple(keywords)), all_leaves


def _static_key(value: Any, name: str) -> tuple:
    """A static argument's cache key; an ArgumentError when it cannot be one (it is unhashable)."""
    key = static_token(value)
    try:
        hash(key)
    except TypeError:
        raise ArgumentError(
            f"static argument {name} is a {type(value).__name__}, which is unhashable: a static argument "
            "keys the compile cache by its value. Pass a hashable value (a tuple, not a list or an "
            "array), or make the argument traced."
        ) from None
    return key


# Structure tokens of call_key: identity-hashed markers that no leaf's token can equal.
_DICT, _LIST, _TUPLE, _NONE, _STATIC = (object() for _ in range(5))


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


def call_key(args: Sequence, static: Sequence[int] = (), keywords: tuple[str, ...] = ()) -> tuple[tuple, list] | None:
    """A cheap hashable key for ``args`` and their leaves, or None when only describe_args can tell.

    Equal keys mean equal ``describe_args`` specs: the key holds the pytree
    structure (flattened the way ``pytree.flatten`` does, as a prefix-coded token
    list; a registered class by its node type and aux_data), each array's class,
    shape and dtype, and each static value, but no paths or TensorTypes, which
    take far longer to build than a small kernel takes to run. None for a traced value (a Tracer: grad of grad) so the caller
    takes the slow path; an unhashable static value fails when the key is hashed.
    """
    tokens: list = [len(args), keywords] if keywords else [len(args)]
    leaves: list = []
    token, leaf = tokens.append, leaves.append
    ndarray = np.ndarray
    for position, arg in enumerate(args):
        if static and position in static:
            token((_STATIC, static_token(arg)))
            leaf(arg)
            continue
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
                elif cls is float or cls is int:
                    token((cls,))  # a Python float or int is an input too (weakly typed)
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
    elif type(leaf) is float:
        spec = LeafSpec(True, TensorType((), "float64"), python_float=True)
    elif type(leaf) is int and differentiated:
        raise ArgumentError(_not_float_message(path, position, "Python int"))
    elif type(leaf) is int:
        if not _INT64_MIN <= leaf <= _INT64_MAX:
            raise ArgumentError(
                f"argument {position} ({path}) is the Python int {leaf}, which does not fit a traced int64; "
                "declare it static (static_argnums or static_argnames)"
            )
        spec = LeafSpec(True, TensorType((), "int64"), python_int=True)
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


_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


def _not_float_message(path, position, what) -> str:
    return (
        f"cannot differentiate with respect to argument {position} ({path}), a {what}: gradients need "
        "float arrays or Python floats. Pass it as floats (e.g. x.astype(float), 3.0 for 3) or leave it out "
        "of argnums."
    )


def trace_graph(
    fn: Callable,
    spec: ArgsSpec,
    leaves: list,
    name: str | None = None,
    has_aux: bool = False,
    differentiated: Sequence[int] = (),
    captured: list[Tracer] | None = None,
):
    """Run ``fn`` on traced stand-ins for its traced leaves; return (graph, output treedef).

    With ``has_aux``, ``fn`` returns ``(value, aux)``: both are outputs, and no gradient flows
    back from ``aux`` (it is passed through ``stop_gradient``). ``differentiated`` lists the
    argument positions differentiated, which errors must not advise declaring static.

    Given a ``captured`` list, ``fn`` may read values of the traces running now (a transform
    called inside a traced function, on a closure over its values): each becomes an input of the
    graph after the arguments' and is appended to ``captured``, to be passed in by the caller.
    Without one, such a value is a TraceError."""
    graph = Graph(name or getattr(fn, "__name__", "f").replace("<lambda>", "fn"))
    enclosing = innermost_open() if captured is not None else None
    context = TraceContext(graph, nested=enclosing is not None, parent=enclosing)
    try:
        stand_ins = _stand_ins(context, spec, leaves, differentiated)
        args, start = [], 0
        for treedef in spec.treedefs:
            count = treedef.num_leaves
            args.append(unflatten(treedef, stand_ins[start : start + count]))
            start += count
        positional = len(args) - len(spec.keywords)
        keyword_args = dict(zip(spec.keywords, args[positional:]))
        with traced_creation(context), warning_on_random_draws(fn):
            result = fn(*args[:positional], **keyword_args)
            if has_aux:
                result = _without_aux_gradient(result, graph.name)
    except (TypeError, ValueError) as error:
        raise _library_error(error) from error
    finally:
        context.close()
    out_leaves, out_paths, out_treedef = flatten(result, "out")
    outputs = []
    for leaf, path in zip(out_leaves, out_paths):
        if isinstance(leaf, Tracer):
            if leaf._context is context:
                outputs.append(leaf._value.id)
            elif enclosing is not None and leaf._context.open:  # a value of an enclosing trace
                outputs.append(context.capture(leaf, None))
            else:
                raise TraceError(f"output {path} is a traced value from another trace")
        else:
            outputs.append(_constant_output(graph, leaf, path))
    if captured is not None:
        captured.extend(context.captured)
    graph.set_outputs(outputs, [graph.name if p == "out" else p.replace("out", graph.name, 1) for p in out_paths])
    return graph, out_treedef


def _constant_output(graph: Graph, leaf: Any, path: str) -> int:
    array = np.asarray(leaf)
    if array.dtype.kind not in "biuf":
        raise TraceError(
            f"output {path} of {graph.name} is a {type(leaf).__name__}, not an array." + _pytree_hint(leaf)
        )
    return graph.const(array)


def _stand_ins(context: TraceContext, spec: ArgsSpec, leaves: list, differentiated: Sequence[int]) -> list:
    """What ``fn`` is called on, leaf by leaf: a Tracer of a new input for each traced leaf (a
    Python number's weakly typed), the leaf itself for a static one."""
    graph, stand_ins = context.graph, []
    for leaf, leaf_spec, path, owner in zip(leaves, spec.leaves, spec.paths, spec.arg_of_leaf):
        if leaf_spec.traced:
            node_id = graph.add_input(leaf_spec.traced_type, path)
            if leaf_spec.weak:  # combines as a Python number; control flow on it names the argument
                # (unless it is differentiated: then declaring it static is no way out)
                context.weak[node_id] = () if owner in differentiated else (path,)
            stand_ins.append(Tracer(Value(graph, node_id), context))
        else:
            stand_ins.append(leaf)
    return stand_ins


def _without_aux_gradient(result: Any, name: str) -> tuple:
    """``(value, aux)`` with no gradient flowing back from ``aux``; an OutputError for another result."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        what = f"a {type(result).__name__}" + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        raise OutputError(f"with has_aux=True, {name} must return a pair (value, aux); it returned {what}")
    value, aux = result
    return value, tree_map(lambda leaf: stop_gradient(leaf) if isinstance(leaf, Tracer) else leaf, aux)


# Python's messages when a call's arguments do not bind: "f() takes 1 positional argument but 2
# were given", "f() got an unexpected keyword argument 'y'", "f() missing 1 required ...".
_ARGUMENTS_DO_NOT_FIT = re.compile(
    r"[\w.<>]+\(\) (takes .* given|got (an unexpected|multiple values)|missing \d+ required)"
)


def _library_error(error: TypeError | ValueError) -> Exception:
    """What to raise for an error NumPy (or chainrule) raised under the user's function: the same
    error when the user's own code raised it; else a TraceError at the user's line, so a bad
    argument (None, a dict where an array was meant) reads as one line about that line."""
    if _raised_by_a_raise_statement_of_the_user(error):
        return error  # theirs to handle, as in JAX
    if "setting an array element with a sequence" in str(error):
        # NumPy gives a traced scalar written into a NumPy array no chance to explain
        return TraceError(
            "a traced value was written into a NumPy array (out[i] = f(x)), which cannot hold it. "
            "Create the array in the traced function with np.zeros, np.ones, np.empty, np.full or "
            "their _like forms, spelled np.<name> (chainrule traces the float arrays they create), "
            "or build the result with np.stack, np.concatenate or np.where.",
            _raising_user_line(error),
        )
    if isinstance(error, TypeError) and _ARGUMENTS_DO_NOT_FIT.match(str(error)):
        # Python's own complaint about a call, not NumPy's about values: say so, at the user's line
        return TraceTypeError(
            f"a call here does not fit the called function's parameters ({error})", _raising_user_line(error)
        )
    kind = TraceValueError if isinstance(error, ValueError) else TraceTypeError
    return kind(
        f"NumPy refused the values it was given here ({type(error).__name__}: {error}); an argument "
        "may not be what the function expects (None, a dict or a list where an array was meant?)",
        _raising_user_line(error),
    )


def _raised_by_a_raise_statement_of_the_user(error: BaseException) -> bool:
    """Whether the innermost frame is the user's and stopped at a ``raise`` (not at a call into
    NumPy's C code, which leaves no frame of its own)."""
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    if traceback is None or user_frame_from(traceback.tb_frame) is not traceback.tb_frame:
        return False
    instructions = {i.offset: i.opname for i in dis.get_instructions(traceback.tb_frame.f_code)}
    return instructions.get(traceback.tb_lasti, "").startswith(("RAISE", "RERAISE"))


def _innermost_frame(error: BaseException):
    traceback, frame = error.__traceback__, None
    while traceback is not None:
        frame = traceback.tb_frame
        traceback = traceback.tb_next
    return frame


def _raising_user_line(error: BaseException):
    """The user's source line where ``error`` was raised: the innermost frame outside chainrule and NumPy."""
    return location_of(user_frame_from(_innermost_frame(error)))
