"""What determines the trace of a Python function, as a hashable key, so that a function made
again with the same code and closure (``cr.grad(lambda w: loss(w, x))`` in a loop, a nested
``def`` re-made per call) finds the graphs and kernels traced for the one before it.

A function's key holds its code object (by identity), its globals namespace (by identity), its
name, and the values of its closure cells, defaults and keyword defaults; a ``functools.partial``
adds its function's key, arguments and keywords. Values are keyed as follows:

- Python and NumPy scalars, strings, bytes, None: by type and value (a float by its bits);
- tuples, lists, dicts (with hashable keys): by type and the keys of their items;
- NumPy arrays: by identity and content. The array is held weakly and a copy of it is kept
  while it lives, so an array changed in place gets a new key (it traces again); arrays over
  ``MAX_SNAPSHOT_BYTES`` are not copied and make the function unkeyable;
- functions: by their own key (a nested function calling another re-made one), those of
  NumPy, SciPy and chainrule by identity; modules, ufuncs, builtins and classes written in C
  (``np.ndarray``): by identity;
- a ``Compiled`` (``cr.jit(f)``, ``cr.grad(f)``, ``cr.vmap(f)``): by its class, its function's key
  and its options, so ``cr.grad(cr.jit(f))`` or ``cr.vmap(cr.grad(f))`` made again is found again;
- a bound method (``model.loss``): by its function's key and its object. The object is keyed by
  identity (a token held weakly and never reused: an equal object of the same state is another
  key, and the entry dies with the object) and by the values of the attributes the keyed code may
  read: every name the code of the method, of the functions it reaches (its globals, the module
  function it passes ``self`` to) and of its class's methods, properties and protocol methods
  (``__call__``, ``__matmul__``) reads, looked up in the object's ``__dict__`` and then its
  classes, until no new name turns up; an attribute that is itself an object of a user's class
  (``self.layer.weight``, ``self.layers[0].scale``) is keyed the same way. So rebinding ``model.x``, changing it in place or
  changing ``model.layer.scale`` gives a new key and a new trace, never a stale kernel; writing an
  attribute no code reads (a step counter) does not. An object whose attributes are not a plain
  ``__dict__`` lookup (``__getattr__``, ``__getattribute__``, ``__slots__``, a descriptor other
  than a property) or code that reads attributes by name at run time (``getattr``, ``vars``,
  ``__dict__``) makes the method unkeyable.

The globals a function's code reads (``x`` in ``lambda w: loss(w, x)`` at a script's top level)
are part of its key like closure values, so rebinding one is seen by the function made again.
Anything else (an object or a class of the user's in a closure) makes the function unkeyable:
``function_key`` returns None and its caches stay those of the function object, so nothing stale
can be found. What is read through a module (``config.scale``) is not part of the key, and a
Compiled that exists keeps its kernels, as ``jax.jit`` does: a global rebound between calls of
one ``cr.grad(f)`` is not seen by the signatures already traced.

    >>> def make(scale):
    ...     return lambda x: x * scale
    >>> function_key(make(2.0)) == function_key(make(2.0)) != function_key(make(3.0))
    True
"""

from __future__ import annotations

import functools
import itertools
import struct
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from chainrule.frontends.source import global_names

# An array bigger than this is not copied to detect changes in place: its function is unkeyable.
MAX_SNAPSHOT_BYTES = 1 << 24
# A closure with more values than this (a dict of a thousand arrays) is not worth keying.
_MAX_VALUES = 512
_MAX_DEPTH = 8


class Unkeyable(Exception):
    """A value the key cannot hold (it could change without the key changing)."""


class _Identity:
    """A key part equal only to itself's referent, holding it strongly (a module, a namespace)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.value is self.value


class _ArrayTokens:
    """A token per (array object, content): the same while the array lives unchanged, new when it
    changes in place or another array takes its address. Tokens are never reused."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # re-entrant: a weak reference's callback can run while held
        self._counter = itertools.count()
        # id(array) -> (weak reference, copy of its content, token); an object's: no content
        self._known: dict[int, tuple[weakref.ref[Any], Snapshot | None, int]] = {}
        self.retired: Callable[[int], None] = lambda token: None  # told when a token is retired

    def token(self, array: np.ndarray) -> int:
        if array.dtype.hasobject or array.nbytes > MAX_SNAPSHOT_BYTES:
            raise Unkeyable
        with self._lock:
            known = self._known.get(id(array))
            if known is not None and known[0]() is array and known[1] is not None and _same_content(array, known[1]):
                return known[2]
            token = next(self._counter)
            reference = weakref.ref(array, functools.partial(self._forget, id(array)))
            self._known[id(array)] = (reference, _snapshot(array), token)
        if known is not None:
            self.retired(known[2])
        return token

    def identity_token(self, instance: Any) -> int:
        """A token per object (held weakly): the same while it lives, whatever its attributes."""
        with self._lock:
            known = self._known.get(id(instance))
            if known is not None and known[0]() is instance and known[1] is None:
                return known[2]
            try:
                reference = weakref.ref(instance, functools.partial(self._forget, id(instance)))
            except TypeError:  # no weak reference: its death could not retire the token
                raise Unkeyable from None
            token = next(self._counter)
            self._known[id(instance)] = (reference, None, token)
        if known is not None:
            self.retired(known[2])
        return token

    def _forget(self, address: int, reference: weakref.ref[np.ndarray]) -> None:
        with self._lock:
            known = self._known.get(address)
            if known is None or known[0] is not reference:
                return
            del self._known[address]
        self.retired(known[2])


# An array up to this size is remembered as its bytes: comparing bytes objects is the fastest way
# to tell a small array changed (a tenth of a microsecond, against ten for np.array_equal).
_BYTES_SNAPSHOT = 1 << 16
# What an array was: its shape, dtype and bytes (small) or a copy (large). (``a.shape = ...``
# changes an array's shape in place, so the shape is part of it.)
Snapshot = tuple[tuple[int, ...], np.dtype[Any], bytes] | np.ndarray


def _snapshot(array: np.ndarray) -> Snapshot:
    return (array.shape, array.dtype, array.tobytes()) if array.nbytes <= _BYTES_SNAPSHOT else array.copy()


def _same_content(array: np.ndarray, snapshot: Snapshot) -> bool:
    """Bit for bit (``-0.0`` is not ``0.0``, a NaN equals itself), at the speed of a comparison."""
    if isinstance(snapshot, tuple):
        return array.shape == snapshot[0] and array.dtype == snapshot[1] and array.tobytes() == snapshot[2]
    if array.shape != snapshot.shape or array.dtype != snapshot.dtype:
        return False
    size = array.dtype.itemsize
    bits = f"u{size}" if size in (1, 2, 4, 8) else "u1"
    return bool(np.array_equal(np.ascontiguousarray(array).reshape(-1).view(bits), snapshot.reshape(-1).view(bits)))


ARRAY_TOKENS = _ArrayTokens()

_BY_VALUE = (type(None), bool, int, str, bytes, type(Ellipsis), np.dtype)
_BY_IDENTITY = (types.ModuleType, types.BuiltinFunctionType, np.ufunc)
# Libraries whose functions are keyed by identity: they do not change while a program runs.
_LIBRARIES = frozenset({"numpy", "scipy", "chainrule", "math", "functools", "operator", "jax"})
_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class written in Python, whose attributes can change


class FunctionKey:
    """A function's key: nested tuples, hashed once (a lookup hashes it several times)."""

    __slots__ = ("_hash", "parts")

    def __init__(self, parts: tuple[Any, ...]):
        self.parts = parts
        self._hash = hash(parts)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FunctionKey) and self._hash == other._hash and self.parts == other.parts


def function_key(fn: Callable[..., Any]) -> FunctionKey | None:
    """The key of what decides ``fn``'s trace, or None when it cannot be told by value."""
    try:
        return _KeyBuilder().key(fn)
    except (Unkeyable, RecursionError, TypeError):  # TypeError: an option that cannot be hashed
        return None


def array_tokens(key: FunctionKey) -> list[int]:
    """The array tokens a key holds (its entry is dead once one of them is retired)."""
    found, stack = [], [key.parts]
    while stack:
        part = stack.pop()
        if type(part) is tuple:
            if len(part) == 2 and part[0] is _ARRAY:
                found.append(part[1])
            else:
                stack.extend(part)
    return found


_ARRAY, _FUNCTION, _PARTIAL, _CYCLE, _METHOD, _COMPILED, _ABSENT = (object() for _ in range(7))
# Methods that are not part of what an object computes (a ``__init__`` reads every attribute).
_NOT_PROTOCOL = frozenset(
    {"__init__", "__new__", "__del__", "__repr__", "__str__", "__format__", "__init_subclass__", "__post_init__"}
    | {"__getstate__", "__setstate__", "__reduce__", "__reduce_ex__", "__copy__", "__deepcopy__", "__setattr__"}
    | {"__delattr__", "__eq__", "__ne__", "__hash__", "__class_getitem__", "__subclasshook__"}
)


# Names through which code reads attributes chosen at run time.
_DYNAMIC_ACCESS = frozenset({"getattr", "vars", "__dict__", "attrgetter", "methodcaller", "hasattr"})


def _hashable(options: tuple[Any, ...]) -> tuple[Any, ...]:
    hash(options)  # raises TypeError for an unhashable option (function_key then returns None)
    return options


def _plain_attributes(instance: Any) -> bool:
    """Whether reading an attribute of ``instance`` is a lookup in its ``__dict__`` and then its
    classes': no ``__getattr__``, ``__getattribute__`` or ``__slots__`` of its classes."""
    cls = type(instance)
    return (
        isinstance(getattr(instance, "__dict__", None), dict)
        and cls.__getattribute__ is object.__getattribute__
        and not any("__getattr__" in c.__dict__ or "__slots__" in c.__dict__ for c in cls.__mro__[:-1])
    )


def _protocol_methods(cls: type) -> list[tuple[str, Any]]:
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__[:-1]):
        for name, value in klass.__dict__.items():
            if name.startswith("__") and name.endswith("__") and name not in _NOT_PROTOCOL:
                if type(value) is types.FunctionType:
                    found[name] = value
    return sorted(found.items())


class _ObjectPart:
    """An object of the user's class being keyed: its token and the keys of its attributes."""

    __slots__ = ("checked", "depth", "instance", "items", "token")

    def __init__(self, instance: Any, token: int, depth: int):
        self.instance = instance
        self.token = token
        self.depth = depth
        self.items: dict[str, Any] = {}
        self.checked: set[str] = set()  # the names looked up (present or not)


class _KeyBuilder:
    def __init__(self) -> None:
        self.values = 0
        self.open: list[Any] = []  # the functions being keyed, outermost first (a cycle refers back)
        # the names the code keyed so far reads (attributes among them), and the objects of the
        # user's classes whose attributes of those names are part of the key
        self.names: set[str] = set()
        self.objects: dict[int, _ObjectPart] = {}  # by id: each keyed once

    def key(self, fn: Any) -> FunctionKey:
        parts = self.callable_key(fn, 0)
        objects = self.resolve_objects()
        return FunctionKey((parts, objects) if objects else parts)

    def method_key(self, method: types.MethodType, depth: int) -> tuple[Any, ...]:
        """A bound method: its function's key and its instance (``object_token``)."""
        instance = method.__self__
        if isinstance(instance, type):  # a classmethod of a class that can change: not seen here
            raise Unkeyable
        return (_METHOD, self.callable_key(method.__func__, depth + 1), self.object_token(instance, depth + 1))

    def object_token(self, instance: Any, depth: int) -> tuple[Any, int]:
        """An object of the user's class, by identity (a token never reused, retired when it dies);
        the attributes of it that the keyed code may read are keyed by ``resolve_objects``."""
        cls = type(instance)
        if depth > _MAX_DEPTH or not cls.__flags__ & _HEAP_TYPE or not _plain_attributes(instance):
            raise Unkeyable
        part = self.objects.get(id(instance))
        if part is None:
            part = self.objects[id(instance)] = _ObjectPart(instance, ARRAY_TOKENS.identity_token(instance), depth)
            # its class's protocol methods (``__call__``, ``__matmul__``, ``__array__``) run without
            # their names in any code: the names their code reads count too
            for name, method in _protocol_methods(cls):
                part.items[name] = self.callable_key(method, depth + 1)
        return (_ARRAY, part.token)

    def resolve_objects(self) -> tuple[Any, ...]:
        """Per object, the keys of its attributes named in the code keyed, until keying them (a
        method, a nested object) brings no new name or object; sorted by token."""
        if not self.objects:
            return ()
        changed = True
        while changed:
            changed = False
            for part in list(self.objects.values()):
                for name in sorted(self.names - part.checked):
                    part.checked.add(name)
                    found = self.attribute_key(part.instance, name, part.depth)
                    if found is not _ABSENT:
                        part.items[name] = found
                    changed = True
        if self.names & _DYNAMIC_ACCESS:  # getattr(self, name): which attributes is not seen here
            raise Unkeyable
        return tuple(sorted((part.token, tuple(sorted(part.items.items()))) for part in self.objects.values()))

    def attribute_key(self, instance: Any, name: str, depth: int) -> Any:
        attributes = instance.__dict__
        if name in attributes:
            return self.value_key(attributes[name], depth + 1, through_object=True)
        for cls in type(instance).__mro__[:-1]:
            if name in cls.__dict__:
                found = cls.__dict__[name]
                if isinstance(found, (staticmethod, classmethod)):
                    found = found.__func__
                elif isinstance(found, property):
                    found = found.fget
                if type(found) is types.FunctionType:
                    return self.callable_key(found, depth + 1)
                if hasattr(type(found), "__get__"):  # another descriptor: what it returns is not seen
                    raise Unkeyable
                return self.value_key(found, depth + 1)
        return _ABSENT

    def callable_key(self, fn: Any, depth: int) -> tuple[Any, ...]:
        if depth > _MAX_DEPTH:
            raise Unkeyable
        for index, outer in enumerate(self.open):
            if outer is fn:
                return (_CYCLE, index)
        if type(fn) is functools.partial:
            self.open.append(fn)
            args = tuple(self.value_key(a, depth + 1) for a in fn.args)
            keywords = tuple((name, self.value_key(v, depth + 1)) for name, v in sorted(fn.keywords.items()))
            key = (_PARTIAL, self.callable_key(fn.func, depth + 1), args, keywords)
            self.open.pop()
            return key
        if type(fn) is types.MethodType:
            return self.method_key(fn, depth)
        key_parts = getattr(type(fn), "chainrule_key_parts", None)
        if key_parts is not None:  # a Compiled: its function's key and its options
            inner, options = key_parts(fn)
            self.open.append(fn)
            cls = getattr(type(fn), "chainrule_key_class", type(fn))  # a Compiled called as its builtin: a Compiled
            compiled = (_COMPILED, _Identity(cls), self.callable_key(inner, depth + 1), _hashable(options))
            self.open.pop()
            return compiled
        if type(fn) is not types.FunctionType or "__wrapped__" in fn.__dict__ or "__signature__" in fn.__dict__:
            raise Unkeyable  # a callable object, a decorated function: its state is not seen here
        self.open.append(fn)
        code, namespace = fn.__code__, fn.__globals__
        self.names.update(global_names(code))
        cells = tuple(self.cell_key(cell, depth) for cell in fn.__closure__ or ())
        defaults = tuple(self.value_key(v, depth + 1) for v in fn.__defaults__ or ())
        keyword_defaults = tuple(
            (n, self.value_key(v, depth + 1)) for n, v in sorted((fn.__kwdefaults__ or {}).items())
        )
        # the globals its code reads: a loop at a script's top level rebinds them
        global_values = tuple(
            (name, self.value_key(namespace[name], depth + 1)) for name in global_names(code) if name in namespace
        )
        self.open.pop()
        return (
            _FUNCTION,
            _Identity(code),
            _Identity(namespace),
            fn.__name__,
            cells,
            defaults,
            keyword_defaults,
            global_values,
        )

    def cell_key(self, cell: types.CellType, depth: int) -> Any:
        try:
            contents = cell.cell_contents
        except ValueError:  # a name the enclosing function assigns later
            return _CYCLE
        return self.value_key(contents, depth + 1)

    def value_key(self, value: Any, depth: int, through_object: bool = False) -> Any:
        """The key of ``value``; ``through_object``: an attribute of a keyed object, where an object
        of the user's class (``self.layer``, ``self.layers[0]``) is keyed as one too."""
        self.values += 1
        if self.values > _MAX_VALUES or depth > _MAX_DEPTH:
            raise Unkeyable
        cls = type(value)
        if cls is float:
            return (cls, struct.pack("<d", value))
        if cls is complex:
            return (cls, struct.pack("<dd", value.real, value.imag))
        if cls in _BY_VALUE:
            return (cls, value)
        if isinstance(value, np.generic) and not value.dtype.hasobject:
            return (cls, value.tobytes())
        if cls is np.ndarray:
            return (_ARRAY, ARRAY_TOKENS.token(value))
        if cls is tuple or cls is list:
            return (cls, tuple(self.value_key(item, depth + 1, through_object) for item in value))
        if cls is dict:
            items = []
            for name, item in value.items():
                if type(name) not in _BY_VALUE:
                    raise Unkeyable
                items.append((name, self.value_key(item, depth + 1, through_object)))
            return (cls, tuple(items))
        if cls is types.FunctionType and str(value.__module__).split(".")[0] in _LIBRARIES:
            return _Identity(value)
        if cls is types.FunctionType or cls is functools.partial or cls is types.MethodType:
            return self.callable_key(value, depth + 1)
        if getattr(cls, "chainrule_key_parts", None) is not None:
            return self.callable_key(value, depth + 1)
        if isinstance(value, type):  # a class of C (np.ndarray) cannot change; one of Python can
            if value.__flags__ & _HEAP_TYPE:
                raise Unkeyable
            return _Identity(value)
        if isinstance(value, _BY_IDENTITY):
            return _Identity(value)
        if through_object and cls.__flags__ & _HEAP_TYPE:
            return self.object_token(value, depth + 1)  # self.layer.weight: keyed like self
        raise Unkeyable
