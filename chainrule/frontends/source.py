"""Finding the user's source line (and variable names) for the operation being traced."""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
import types
from collections.abc import Hashable
from types import CodeType, FrameType
from typing import TypeVar

import numpy as np
import scipy

from chainrule.errors import Loc

# The library's own code, NumPy's and SciPy's: a traced operation's source line is the first frame
# outside them (a SciPy function that refuses a traced value is reported at the user's call).
# chainrule's command-line tools (chainrule/cli) are clients of the library, as a user's program
# is, so the demo's network and the benchmark's nested function cite their own lines.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
SCIPY_DIR = os.path.dirname(scipy.__file__) + os.sep
_INTERNAL_DIRS = (_PACKAGE_DIR, os.path.dirname(np.__file__) + os.sep, SCIPY_DIR)
_CLIENT_DIRS = (os.path.join(_PACKAGE_DIR, "cli") + os.sep,)
# Installed code (the standard library, site-packages): never the user's own.
INSTALLED_DIRS = tuple(
    {
        os.path.abspath(path) + os.sep
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_paths().get(key))
    }
)


# Every traced operation looks up its source line, so what that takes is remembered:
# per code object, whether it is chainrule's or NumPy's own; per (code, line), the Loc.
# Both are cleared when they grow large (code made by exec in a loop is new every time).
_INTERNAL_CODE: dict[CodeType, bool] = {}
_LOCATIONS: dict[tuple[CodeType, int], Loc] = {}
_REMEMBERED_MAX = 1 << 14
_Key = TypeVar("_Key", bound=Hashable)
_Remembered = TypeVar("_Remembered")


def user_frame(depth: int = 2) -> FrameType | None:
    """The innermost frame outside chainrule, NumPy and SciPy: the line the user wrote.

    chainrule's command-line tools count as user code (see ``_CLIENT_DIRS``).
    """
    return user_frame_from(sys._getframe(depth))


def user_frame_from(frame: FrameType | None) -> FrameType | None:
    """``frame`` or the first of its callers outside chainrule, NumPy and SciPy."""
    while frame is not None:
        code = frame.f_code
        internal = _INTERNAL_CODE.get(code)
        if internal is None:
            internal = code.co_filename.startswith(_INTERNAL_DIRS) and not code.co_filename.startswith(_CLIENT_DIRS)
            _remember(_INTERNAL_CODE, code, internal)
        if not internal:
            return frame
        frame = frame.f_back
    return None


def location_of(frame: FrameType | None) -> Loc | None:
    """The source line ``frame`` is at (None for no frame)."""
    if frame is None:
        return None
    key = (frame.f_code, frame.f_lineno)
    loc = _LOCATIONS.get(key)
    if loc is None:
        loc = Loc(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
        _remember(_LOCATIONS, key, loc)
    return loc


def _remember(memory: dict[_Key, _Remembered], key: _Key, value: _Remembered) -> None:
    if len(memory) >= _REMEMBERED_MAX:
        memory.clear()
    memory[key] = value


def current_location() -> Loc | None:
    """The user's source line calling the chainrule function that calls this."""
    return location_of(user_frame(3))


@functools.lru_cache(maxsize=4096)
def global_names(code: types.CodeType) -> tuple[str, ...]:
    """The names ``code`` and the code nested in it (comprehensions, lambdas) look up: its globals
    among them (attribute names too, which are skipped when no global has them)."""
    names: dict[str, None] = {}
    stack = [code]
    while stack:
        current = stack.pop()
        names.update(dict.fromkeys(current.co_names))
        stack.extend(const for const in current.co_consts if isinstance(const, types.CodeType))
    return tuple(names)
