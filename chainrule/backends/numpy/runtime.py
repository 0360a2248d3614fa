"""What generated NumPy code calls besides NumPy and the op table's helpers (``chainrule.ir.npfuncs``)."""

from __future__ import annotations

import numpy as np

# The integer dtype whose bits where_else_zero masks a float dtype's elements with.
INT_OF_SAME_SIZE = {"float64": np.int64, "float32": np.int32, "float16": np.int16}


def where_else_zero(condition: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``np.where(condition, x, 0)`` bit for bit (+0.0, NaN payloads kept), without where's branches.

    Each element of ``x`` is ANDed with all-ones bits where ``condition`` holds and
    with zero bits where it does not.
    """
    bits = condition.view(np.uint8).astype(INT_OF_SAME_SIZE[x.dtype.name])
    np.negative(bits, out=bits)
    np.bitwise_and(bits, x.view(bits.dtype), out=bits)
    return bits.view(x.dtype)


# Names generated code may use, besides the op table's own (chainrule.ir.npfuncs).
HELPERS = {"where_else_zero": where_else_zero}
