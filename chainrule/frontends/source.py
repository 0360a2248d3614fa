"""Finding the user's source line (and variable names) for the operation being traced."""

from __future__ import annotations

import os
import sys
from typing import Optional

import numpy as np

import chainrule
from chainrule.errors import Loc

_INTERNAL_DIRS = (os.path.dirname(chainrule.__file__) + os.sep, os.path.dirname(np.__file__) + os.sep)


def user_frame(depth: int = 2):
    """The innermost frame outside chainrule and NumPy: the line the user wrote.

    A chainrule module that sets ``__chainrule_user_code__ = True`` (the demo)
    counts as user code.
    """
    frame = sys._getframe(depth)
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS) \
            and not frame.f_globals.get("__chainrule_user_code__"):
        frame = frame.f_back
    return frame


def location_of(frame) -> Optional[Loc]:
    if frame is None:
        return None
    return Loc(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


def current_location() -> Optional[Loc]:
    return location_of(user_frame(3))
