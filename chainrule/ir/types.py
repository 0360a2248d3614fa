"""Value types of the IR: a shape and a dtype."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_SHORT_NAMES = {
    "float64": "f64", "float32": "f32", "float16": "f16",
    "int64": "i64", "int32": "i32", "int16": "i16", "int8": "i8",
    "uint8": "u8", "bool": "bool",
}


@dataclass(frozen=True)
class TensorType:
    """Shape and dtype of one IR value. ``TensorType((400, 2), "float64")`` prints as ``f64[400,2]``."""

    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def is_float(self) -> bool:
        return np.issubdtype(np.dtype(self.dtype), np.floating)

    def __str__(self) -> str:
        return f"{short_dtype(self.dtype)}[{','.join(map(str, self.shape))}]"


def short_dtype(dtype) -> str:
    name = np.dtype(dtype).name
    return _SHORT_NAMES.get(name, name)
