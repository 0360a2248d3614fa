"""The exceptions chainrule raises. Every one names the user's source line when it is known."""

from __future__ import annotations

import linecache
from dataclasses import dataclass


@dataclass(frozen=True)
class Loc:
    """A location in the user's source: where a traced operation was written."""

    filename: str
    lineno: int
    function: str = ""

    def __str__(self) -> str:
        short = self.filename.rsplit("/", 1)[-1]
        return f"{short}:{self.lineno}"

    def source_line(self) -> str:
        return linecache.getline(self.filename, self.lineno).strip()


class ChainruleError(Exception):
    """Base of every error chainrule raises on purpose.

    ``loc`` is the user's source line the error is about, if known; the
    message then starts with ``file.py:12`` and quotes that line.
    """

    def __init__(self, message: str, loc: Loc | None = None):
        self.loc = loc
        self.bare_message = message
        super().__init__(self._format(message, loc))

    @staticmethod
    def _format(message: str, loc: Loc | None) -> str:
        if loc is None:
            return message
        where = f"{loc}" + (f" in {loc.function}()" if loc.function else "")
        text = loc.source_line()
        quoted = f"\n    {text}" if text else ""
        return f"{where}: {message}{quoted}"

    def __reduce__(self) -> tuple:
        # the message and location, not the formatted text: an error raised on a Dask worker is
        # re-raised on the client as the same error, quoting the user's line
        return type(self), (self.bare_message, self.loc)

    def at(self, loc: Loc | None) -> ChainruleError:
        """The same error, located at ``loc`` (if it had no location yet)."""
        if self.loc is not None or loc is None:
            return self
        return type(self)(self.bare_message, loc)


class ShapeError(ChainruleError):
    """Operand shapes do not fit the operation (broadcasting, matmul, reshape ...)."""


class TraceError(ChainruleError):
    """The function does something that cannot be traced, such as ``if`` on a traced value."""


class TraceValueError(TraceError, ValueError):
    """NumPy (or chainrule, keeping NumPy's behaviour) refused the values a traced function gave
    it with a ValueError: a TraceError naming the user's line that is still the ValueError NumPy
    raises, for code that catches it."""


class TraceTypeError(TraceError, TypeError):
    """As ``TraceValueError``, for NumPy's TypeError (None, a dict or a list where an array was meant)."""


class UnsupportedError(ChainruleError):
    """A NumPy function or feature chainrule does not implement."""


class UnsupportedAttributeError(UnsupportedError, AttributeError):
    """An ndarray attribute a traced value does not have: an ``AttributeError`` too, so ``hasattr``
    and ``getattr(x, name, default)`` keep working."""


class ArgumentError(ChainruleError):
    """Bad arguments to a compiled function: wrong types, dtypes or pytree structure."""


class OutputError(ChainruleError):
    """The traced function's output does not fit the transformation (e.g. grad of a vector)."""


class NonFiniteError(ChainruleError):
    """With ``check_nans=True``: an op produced a NaN or an infinity from finite operands, or an argument
    holds a NaN."""


class GraphFormatError(ChainruleError):
    """A networkx graph or GraphML file that describes no chainrule graph (``Graph.from_networkx``,
    ``Graph.read_graphml``): the message names the node and what is wrong with it."""


class RetraceWarning(UserWarning):
    """A compiled function was traced again and again (more than ``Compiled.retrace_warning_after``
    times): the message names the argument whose shape, dtype or static value keeps changing.
    Issued once per function; ``.cache_info()`` counts the traces."""
