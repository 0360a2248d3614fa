"""What to tell a user whose traced value NumPy tried to turn into a NumPy array.

NumPy converts a traced value with ``__array__`` when it cannot dispatch to chainrule: a traced
value written into a NumPy array, passed to ``np.asarray``, or used as the index of a NumPy array
(``table[i]`` with ``i`` computed from traced values). The last one looks like any other indexing
to the user, so it gets its own advice: NumPy's indexing of its own arrays has no hook a tracer
can use (``np.take`` does not dispatch on its indices either), but indexing a traced array is
traced. A SciPy function written in Python that chainrule does not trace converts its arguments
the same way; the advice then names that function.
"""

from __future__ import annotations

import dis
import sys
from types import FrameType

from chainrule.errors import TraceError
from chainrule.frontends.source import SCIPY_DIR, location_of, user_frame
from chainrule.ir.types import TensorType

_SUBSCRIPT_INSTRUCTIONS = frozenset({"BINARY_SUBSCR", "STORE_SUBSCR"})


def array_conversion_error(value_type: TensorType) -> TraceError:
    """The TraceError for ``__array__`` of a traced value, at the user's line (called from ``__array__``)."""
    frame = user_frame(3)
    scipy_function = _outermost_scipy_function(sys._getframe(2), frame)
    if scipy_function is not None:
        return TraceError(
            f"SciPy's {scipy_function} converted a traced value of type {value_type} to a NumPy array: "
            "chainrule does not trace that SciPy function (`python -m chainrule coverage` lists the ones "
            "it does). If it is listed, it was bound by name before chainrule was imported somewhere "
            "chainrule does not rebind names: import chainrule first, or call it through its module "
            "(scipy.special.logsumexp(...)). Otherwise write it with NumPy functions.",
            location_of(frame),
        )
    if frame is not None and _current_instruction(frame) in _SUBSCRIPT_INSTRUCTIONS:
        return TraceError(
            f"a NumPy array indexed by a traced value of type {value_type} (`table[i]`, i computed from "
            "traced values): NumPy's indexing of its own arrays needs the index's value, which is not "
            "known while tracing. Index a traced array instead: pass the table to the function as an "
            "argument, or make a traced copy in the function (`table = np.zeros_like(table) + table`).",
            location_of(frame),
        )
    return TraceError(
        f"converting a traced value of type {value_type} to a NumPy array needs its value, which is "
        "not known while tracing; np.asarray(x), np.array([...]) of traced values and writing a "
        "traced value into a NumPy array (out[i] = f(x)) do that. A NumPy array cannot hold a "
        "traced value: create the array in the traced function with np.zeros, np.ones, np.empty, "
        "np.full or their _like forms, spelled np.<name> (chainrule traces the float arrays they "
        "create), or build the result with np.stack, np.concatenate or np.where.",
        location_of(frame),
    )


def _outermost_scipy_function(frame: FrameType | None, user: FrameType | None) -> str | None:
    """``module.function()`` of the SciPy frame nearest the user's, between ``frame`` and ``user``."""
    found = None
    while frame is not None and frame is not user:
        if frame.f_code.co_filename.startswith(SCIPY_DIR):
            found = f"{frame.f_globals.get('__name__', 'scipy')}.{frame.f_code.co_name}()"
        frame = frame.f_back
    return found


def _current_instruction(frame: FrameType) -> str:
    for instruction in dis.get_instructions(frame.f_code):
        if instruction.offset == frame.f_lasti:
            return instruction.opname
    return ""
