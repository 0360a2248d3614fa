"""Traced values: stand-ins for NumPy arrays that record every operation into a Graph.

A ``Tracer`` implements NumPy's ``__array_ufunc__`` and ``__array_function__``
protocols, so unmodified NumPy code (``np.tanh(x)``, ``np.dot(W, A)``,
``x @ W``, ``np.sum(x, axis=1, keepdims=True)``) runs on it and builds the graph;
the handler of each NumPy function is looked up in ``chainrule.frontends.dispatch``.
Every node records the user's source line, and values bound to the user's local
variables lend those variable names to the IR and to the generated code.
"""

from __future__ import annotations

import functools
import itertools
import operator
import threading

import numpy as np

from chainrule.errors import ChainruleError, TraceError, UnsupportedAttributeError, UnsupportedError
from chainrule.frontends import dispatch
from chainrule.frontends.aliasing import VIEW_OPS, Alias, Buffer, current_value, take_view, view_step
from chainrule.frontends.conversion_advice import array_conversion_error
from chainrule.frontends.source import location_of, user_frame
from chainrule.frontends.weak_types import WeakValues, settle_weak_operands, static_advice
from chainrule.ir.builder import Value, weak_dtype
from chainrule.ir.ops import OPS
from chainrule.ir.types import TensorType


class TraceContext:
    """One tracing of one function into ``graph``. Tracers from a closed context are an error.

    A nested context traces a loop body or a branch (``cr.scan``, ``cr.cond``), or a function a
    transform traces while another trace runs (``cr.grad(lambda x: f(W, x))`` inside a traced
    function, W a value of that trace): a value of an enclosing trace that it reads becomes an input
    of its graph (``capture``), and ``captured`` lists those values in order. Its ``parent`` is the
    enclosing trace, known from the loop's operands or the traces open when it began, or adopted
    from the first enclosing value the body reads. Open contexts nest: ``innermost_open`` is the
    last opened on this thread and not yet closed.
    """

    _serials = itertools.count()

    def __init__(self, graph, capture_names: bool = True, nested: bool = False, parent: TraceContext | None = None):
        self.graph = graph
        self.open = True
        self.capture_names = capture_names
        self.nested = nested
        self.parent = parent
        self.serial = next(TraceContext._serials)  # later contexts are nested in earlier ones
        self.captured: list[Tracer] = []
        self._captured_ids: dict[tuple[int, int], Tracer] = {}
        self.weak: WeakValues = {}  # the weakly typed values (of Python-number arguments): weak_types
        _open_contexts().append(self)

    def close(self) -> None:
        """End this trace: its values are an error to use from now on."""
        self.open = False
        stack = _open_contexts()
        if stack and stack[-1] is self:
            stack.pop()
        elif self in stack:  # closed out of order (an error unwinding): still forgotten
            stack.remove(self)

    def capture(self, operand: Tracer, loc) -> int:
        """The id, in this graph, of ``operand``, a value of an enclosing trace (through each
        trace between them); a TraceError when it belongs to no enclosing trace."""
        chain: list[TraceContext] = []
        context: TraceContext | None = self
        while context is not None and context is not operand._context:
            chain.append(context)
            if context.nested and context.parent is None and operand._context.open:
                # open traces nest (each runs inside the one before), so an open one is enclosing
                context.parent = operand._context
            context = context.parent if context.nested else None
        if context is None and operand._context.open:
            raise TraceError(
                "a value of the traced function around this one was used here, in a function traced "
                "apart from it (by cr.trace or cr.to_sympy, which make a graph of their own): pass the "
                "value as an argument; cr.grad, cr.jit, cr.vmap, cr.jacobian and the other transforms read it",
                loc,
            )
        if context is None or not context.open:
            raise TraceError(
                "a traced value from another trace was used here: a traced value "
                "escaped its function (stored in a global, closure or attribute)",
                loc,
            )
        value = operand
        for inner in reversed(chain):
            value = inner._lift(value)
        return value._value.id

    def _lift(self, outer: Tracer) -> Tracer:
        key = (id(outer._value.graph), outer._value.id)
        lifted = self._captured_ids.get(key)
        if lifted is None:
            node_id = self.graph.add_input(outer._value.type, outer._value.graph[outer._value.id].name)
            origin = outer._context.weak.get(outer._value.id)
            if origin is not None:  # a Python number read by a loop body stays weakly typed there
                self.weak[node_id] = origin
            lifted = Tracer(Value(self.graph, node_id), self)
            self._captured_ids[key] = lifted
            self.captured.append(outer)
        return lifted

    def name_locals(self, frame) -> None:
        """Name unnamed nodes after the user's local variables that hold them (first name wins)."""
        if frame is None or not self.capture_names:
            return
        nodes = self.graph.nodes
        for variable, value in frame.f_locals.items():
            if type(value) is Tracer and value._context is self:
                node = nodes[value._current.id]  # as it is: a stale view is not used by being named
                if node.name is None:
                    node.name = variable


_OPEN = threading.local()


def _open_contexts() -> list[TraceContext]:
    stack = getattr(_OPEN, "contexts", None)
    if stack is None:
        stack = _OPEN.contexts = []
    return stack


def innermost_open() -> TraceContext | None:
    """The trace running on this thread now, innermost first (None outside any trace)."""
    stack = _open_contexts()
    return stack[-1] if stack else None


def operation(op_name: str, *operands, **attrs) -> Tracer | np.ndarray:
    """Record ``op_name(*operands; attrs)`` at the user's current source line.

    With no traced operand (a composite's constant half: ``lstsq(A, b)`` with a constant ``A`` takes
    ``A``'s SVD) the op runs now, through its NumPy lowering, and its array is returned.
    """
    for operand in operands:
        if isinstance(operand, Tracer):
            return record(op_name, operands, attrs, user_frame(2))
    return OPS[op_name].evaluate(operands, attrs)


def record(op_name: str, operands: tuple, attrs: dict, frame) -> Tracer:
    """``operation``, given the user's frame: a caller that knows how many of chainrule's frames
    sit above it looks past them with ``user_frame(depth)`` (each frame looked at costs a frame
    object, and the ufunc path records most of a trace's operations)."""
    context = _context_of(operands)
    loc = location_of(frame)
    graph = context.graph
    weak = context.weak
    like = None  # the traced operands' dtypes, which a Python number operand takes
    ids = []
    for operand in operands:
        if isinstance(operand, Tracer):
            ids.append(operand._value.id if operand._context is context else context.capture(operand, loc))
        else:
            if like is None:  # (the strong ones' when there are: a weak operand is cast to them)
                traced = [o._value for o in operands if isinstance(o, Tracer)]
                like = [v.dtype for v in traced if v.id not in weak] or [v.dtype for v in traced]
            ids.append(constant_id(graph, operand, like, loc))
    weak_origin = None
    if weak:
        weak_origin = settle_weak_operands(graph, op_name, ids, [isinstance(o, Tracer) for o in operands], weak, loc)
    node_id = graph.add(op_name, ids, attrs, loc=loc)
    if weak_origin is not None:
        weak[node_id] = weak_origin
    context.name_locals(frame)
    result = Tracer(Value(graph, node_id), context)
    if op_name in VIEW_OPS and isinstance(operands[0], Tracer):
        take_view(operands[0], result, view_step(op_name, attrs, ids[1:], result.ndim))
    return result


def constant_id(graph, operand, like_dtypes: list, loc) -> int:
    """A constant operand: Python numbers take the traced operands' dtype (NumPy's weak scalars)."""
    if isinstance(operand, (bool, int, float)):
        return graph.const(operand, dtype=weak_dtype(like_dtypes, operand))
    try:
        array = np.asarray(operand)
    except Exception:
        array = None
    if array is None or array.dtype == object or array.dtype.kind not in "biuf":
        raise TraceError(f"cannot use a {type(operand).__name__} as an array operand", loc)
    return graph.const(array)


def _context_of(operands) -> TraceContext:
    """The innermost trace among the operands' (a loop body's, over the loop's enclosing one)."""
    found = None
    for operand in operands:
        if isinstance(operand, Tracer):
            context = operand._context
            if not context.open:
                raise TraceError(
                    "a traced value was used after its trace ended: it escaped the traced "
                    "function (stored in a global, closure or attribute)",
                    _here(),
                )
            if found is None or context.serial > found.serial:
                found = context
    if found is None:
        raise AssertionError("operation() needs at least one traced operand")
    return found


def _here():
    return location_of(user_frame(3))


class Tracer(dispatch.NumpyOperators):
    """A traced array. It has ``shape``, ``ndim``, ``dtype`` and ``size``, but no value."""

    __slots__ = ("_alias", "_context", "_current")
    __array_priority__ = 1000  # ndarray <op> Tracer defers to the Tracer
    __hash__ = None  # type: ignore[assignment]  # like ndarray: == is elementwise (mypy wants a method)

    def __init__(self, value: Value, context: TraceContext):
        self._current = value
        self._context = context
        self._alias: Alias | None = None  # None: its own memory, of which no view was taken

    @property
    def _value(self) -> Value:
        """The value now: a view of a buffer written since it was last seen is taken again."""
        alias = self._alias
        if alias is not None and alias.seen != alias.buffer.version:
            self._refresh(alias)
        return self._current

    def _refresh(self, alias: Alias) -> None:
        self._current = current_value(alias, location_of(user_frame(4)))

    def alias(self) -> Alias:
        """Where this array lives (a buffer of its own is made when first asked for)."""
        if self._alias is None:
            self._alias = Alias(Buffer(self._current), (), 0)
        return self._alias

    # ---- what is known while tracing ------------------------------------------------------

    @property
    def type(self) -> TensorType:
        return self._value.type

    @property
    def shape(self) -> tuple:
        return self._value.shape

    @property
    def ndim(self) -> int:
        return self._value.ndim

    @property
    def size(self) -> int:
        return self._value.type.size

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._value.dtype)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d traced array")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            advice = static_advice(self._context.weak, self._value.id, "Using as a shape or a sequence")
            if advice is not None:  # np.zeros(n) iterates over n
                raise TraceError(advice, _here())
            raise TypeError("iteration over a 0-d traced array")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self) -> str:
        return f"Tracer({self.type})"

    # ---- what needs a value, which tracing does not have -----------------------------------

    def __bool__(self):
        advice = static_advice(self._context.weak, self._value.id, "Python control flow (`if`, `while`, bool())")
        raise TraceError(
            (f"{advice} Otherwise: " if advice else "")
            + f"Python control flow (`if`, `while`, `and`/`or`, bool()) on a traced value of type {self.type}: "
            "its value is not known while tracing. Use np.where(condition, a, b) to choose between "
            "values, cr.cond(pred, true_fn, false_fn, *operands) or cr.switch to run one branch, and "
            "cr.while_loop(cond_fun, body_fun, init) or cr.fori_loop for a loop (a Python loop over a "
            "traced condition cannot be unrolled); conditions on shapes and Python values are fine.",
            _here(),
        )

    def _needs_value(self, *_args, **_kwargs):
        what = "Converting to a Python number (int(), float(), range(), an index, a shape)"
        advice = static_advice(self._context.weak, self._value.id, what)
        if advice is not None:
            raise TraceError(advice, _here())
        raise TraceError(
            f"converting a traced value of type {self.type} to a Python number or NumPy array "
            "(float(), int(), .item(), np.asarray, math.*) needs its value, which is not known while "
            "tracing. Keep it an array and use NumPy functions on it.",
            _here(),
        )

    __float__ = __int__ = __index__ = __complex__ = item = tolist = _needs_value

    def __array__(self, *_args, **_kwargs):
        raise array_conversion_error(self.type)

    # ---- writes: the array gets a new value (chainrule.frontends.inplace) -------------------

    def __setitem__(self, key, value):
        dispatch.call_function(operator.setitem, (self, key, value), {})

    def __iadd__(self, other):
        return dispatch.call_function(operator.iadd, (self, other), {})

    def __isub__(self, other):
        return dispatch.call_function(operator.isub, (self, other), {})

    def __imul__(self, other):
        return dispatch.call_function(operator.imul, (self, other), {})

    def __itruediv__(self, other):
        return dispatch.call_function(operator.itruediv, (self, other), {})

    def __ipow__(self, other):
        return dispatch.call_function(operator.ipow, (self, other), {})

    # ---- operators and methods, by way of the NumPy functions (and dispatch.NumpyOperators) --

    def __rpow__(self, other):
        return np.power(other, self)

    def __mod__(self, other):
        return np.remainder(self, other)

    def __rmod__(self, other):
        return np.remainder(other, self)

    def __floordiv__(self, other):
        return np.floor_divide(self, other)

    def __rfloordiv__(self, other):
        return np.floor_divide(other, self)

    def __divmod__(self, other):
        return np.divmod(self, other)

    def __rdivmod__(self, other):
        return np.divmod(other, self)

    def __neg__(self):
        return np.negative(self)

    def __pos__(self):
        return self.copy()  # NumPy's +a is a new array

    def __invert__(self):
        return np.invert(self)

    def __and__(self, other):
        return np.logical_and(self, other)

    def __rand__(self, other):
        return np.logical_and(other, self)

    def __or__(self, other):
        return np.logical_or(self, other)

    def __ror__(self, other):
        return np.logical_or(other, self)

    def __lt__(self, other):
        return np.less(self, other)

    def __le__(self, other):
        return np.less_equal(self, other)

    def __gt__(self, other):
        return np.greater(self, other)

    def __ge__(self, other):
        return np.greater_equal(self, other)

    def __eq__(self, other):
        return np.equal(self, other)

    def __ne__(self, other):
        return np.not_equal(self, other)

    def __getitem__(self, key):
        return dispatch.call_function(operator.getitem, (self, key), {})

    @property
    def T(self):
        return np.transpose(self)

    @property
    def mT(self):
        return np.swapaxes(self, -1, -2)

    @property
    def real(self):
        """A real array's real part, itself (NumPy's ``x.real`` is ``x``): ``np.fft.irfft(X).real``."""
        return np.real(self)

    @property
    def imag(self):
        """A real array's imaginary part: zeros of its shape and dtype."""
        return np.imag(self)

    def transpose(self, *axes):
        return np.transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    def reshape(self, *shape, order="C"):
        return np.reshape(self, shape[0] if len(shape) == 1 else shape, order=order)

    def ravel(self, order="C"):
        return np.ravel(self, order)

    def flatten(self, order="C"):
        return np.ravel(self, order).copy()  # always a copy, unlike ravel

    def squeeze(self, axis=None):
        return np.squeeze(self, axis)

    def swapaxes(self, a, b):
        return np.swapaxes(self, a, b)

    def sum(self, axis=None, dtype=None, keepdims=False):
        return np.sum(self, axis=axis, dtype=dtype, keepdims=keepdims)

    def mean(self, axis=None, dtype=None, keepdims=False):
        return np.mean(self, axis=axis, dtype=dtype, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return np.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return np.min(self, axis=axis, keepdims=keepdims)

    def var(self, axis=None, ddof=0, keepdims=False):
        return np.var(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def std(self, axis=None, ddof=0, keepdims=False):
        return np.std(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def dot(self, other):
        return np.dot(self, other)

    def clip(self, min=None, max=None):
        return np.clip(self, min, max)

    def copy(self):
        """A new array of the same value: writes into either leave the other as it was."""
        return Tracer(self._value, self._context)

    def __getattr__(self, name: str):
        """An ndarray method not written out above, as the NumPy function of the same name
        (``x.cumsum(0)`` is ``np.cumsum(x, 0)``), which traces it or says it is not supported; any
        other ndarray attribute is not supported on a traced value, and says so."""
        if name.startswith("_") or not hasattr(np.ndarray, name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        function = getattr(np, name, None)
        if name in _IN_PLACE_METHODS:
            raise UnsupportedAttributeError(
                f"x.{name}() changes an array in place, which a traced value cannot; use np.{name}(x)", _here()
            )
        if not callable(function) or not callable(getattr(np.ndarray, name)):
            raise UnsupportedAttributeError(f"ndarray.{name} is not supported on a traced value", _here())
        return functools.partial(function, self)

    def astype(self, dtype, copy=True):
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self.copy() if copy else self
        if dtype.kind not in "biuf":
            raise UnsupportedError(f"astype({dtype}) is not supported; traced arrays are bool, int or float", _here())
        return operation("cast", self, dtype=dtype.name)


# ndarray methods that change the array they are called on (np.sort(x) is fine, x.sort() is not)
_IN_PLACE_METHODS = frozenset({"sort", "partition", "fill", "put", "resize", "itemset", "setfield", "byteswap"})


def stop_gradient(x):
    """``x`` itself, through which no gradient flows (eagerly: the identity)."""
    return operation("stop_gradient", x) if isinstance(x, Tracer) else x


def is_traced(x) -> bool:
    return isinstance(x, Tracer)


__all__ = ["ChainruleError", "TraceContext", "Tracer", "is_traced", "operation"]
