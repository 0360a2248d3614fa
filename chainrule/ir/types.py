"""Value types of the IR: a shape and a dtype."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_SHORT_NAMES = {
    "float64": "f64",
    "float32": "f32",
    "float16": "f16",
    "int64": "i64",
    "int32": "i32",
    "int16": "i16",
    "int8": "i8",
    "uint8": "u8",
    "bool": "bool",
}

# Generated code frees (``del``s) a value after its last use only from this size on: smaller arrays
# come from the allocator's free lists whatever happens. The NumPy backend writes the dels and the
# memory plan (compiler/schedule.py) simulates them by this one rule, so the estimate is what runs.
EARLY_FREE_MIN_BYTES = 65536


@dataclass(frozen=True)
class TensorType:
    """Shape and dtype of one IR value. ``TensorType((400, 2), "float64")`` prints as ``f64[400,2]``."""

    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self) -> None:
        # Types are built for every node: skip the normalization when there is nothing to do
        # (np.dtype(...).name alone costs microseconds).
        shape = self.shape
        if type(shape) is not tuple or not all(type(d) is int for d in shape):
            object.__setattr__(self, "shape", tuple(int(d) for d in shape))
        object.__setattr__(self, "dtype", dtype_name(self.dtype))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    # Computed once per type (types are shared: Op.result_type hands out the same one): the
    # passes ask a node's size and bytes again and again, and np.dtype() costs a microsecond.
    @functools.cached_property
    def size(self) -> int:
        return math.prod(self.shape)

    @functools.cached_property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @functools.cached_property
    def is_float(self) -> bool:
        return np.issubdtype(np.dtype(self.dtype), np.floating)

    @functools.cached_property
    def _hash(self) -> int:
        return hash((self.shape, self.dtype))

    def __hash__(self) -> int:
        # remembered: every type rule lookup (Op.result_type) hashes its operands' types
        return self._hash

    def __getstate__(self) -> dict:
        # a str's hash differs from process to process: never carry the remembered one along
        return {key: value for key, value in self.__dict__.items() if key != "_hash"}

    def __str__(self) -> str:
        return f"{short_dtype(self.dtype)}[{','.join(map(str, self.shape))}]"

    def interned(self) -> TensorType:
        """The one shared object equal to this type: dict lookups keyed by types (the type rules'
        memory) then match by identity, and size and nbytes are computed once per type."""
        shared = _INTERNED_TYPES.get(self)
        if shared is None:
            if len(_INTERNED_TYPES) >= _INTERNED_MAX:
                _INTERNED_TYPES.clear()
            shared = _INTERNED_TYPES[self] = self
        return shared


_INTERNED_TYPES: dict[TensorType, TensorType] = {}
_INTERNED_MAX = 1 << 16


_DTYPE_NAMES: dict[npt.DTypeLike, str] = {}  # anything np.dtype accepts (hashable) -> its canonical name


def dtype_name(dtype: npt.DTypeLike) -> str:
    """``np.dtype(dtype).name``, remembered: ``"f8"``, ``np.float64`` and ``float`` give ``"float64"``."""
    try:
        return _DTYPE_NAMES[dtype]
    except (KeyError, TypeError):  # TypeError: an unhashable spelling, which np.dtype may still accept
        pass
    name = np.dtype(dtype).name
    try:
        _DTYPE_NAMES[dtype] = name
    except TypeError:
        pass
    return name


def short_dtype(dtype: npt.DTypeLike) -> str:
    """The short spelling printed in types: ``"float64"`` gives ``"f64"``."""
    name = np.dtype(dtype).name
    return _SHORT_NAMES.get(name, name)
