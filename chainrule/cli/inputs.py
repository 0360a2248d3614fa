"""Loading a user's ``FILE.py:FUNC`` and making example inputs for it, for the commands that compile it."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from chainrule.errors import ChainruleError


def load_function(target: str) -> tuple[Callable[..., Any], ModuleType]:
    """``path/to/file.py:func`` -> (the function, the module it lives in)."""
    path_text, _, name = target.rpartition(":")
    if not path_text or not name:
        raise ChainruleError(f"expected FILE.py:FUNC, got {target!r}")
    path = Path(path_text)
    if not path.is_file():
        raise ChainruleError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:  # not a Python source file (no loader for its suffix)
        raise ChainruleError(f"{path} is not a Python file (expected FILE.py:FUNC)")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    function = getattr(module, name, None)
    if not callable(function):
        raise ChainruleError(f"{path} has no function {name!r}")
    return function, module


def example_inputs(module: ModuleType, shapes: list[str], seed: int) -> tuple[Any, ...]:
    """Random normal arrays of the ``--shape NAME=DIMS`` options, else the module's ``example_args()``."""
    if shapes:
        rng = np.random.default_rng(seed)
        inputs = []
        for option in shapes:
            _, _, dims = option.partition("=")
            try:
                shape = tuple(int(d) for d in dims.split("x")) if dims else ()
            except ValueError:
                raise ChainruleError(f"--shape {option!r}: expected NAME=DIMS like x=400x2") from None
            try:
                inputs.append(rng.standard_normal(shape))
            except (ValueError, MemoryError) as error:  # a negative or an impossibly large shape
                raise ChainruleError(f"--shape {option!r}: {error}") from None
        return tuple(inputs)
    if hasattr(module, "example_args"):
        return tuple(module.example_args())
    raise ChainruleError("give the inputs: define example_args() in the file or pass --shape NAME=DIMS per argument")
