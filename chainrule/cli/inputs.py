"""Loading a user's ``FILE.py:FUNC`` and making example inputs for it, for the commands that compile it."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
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
    except Exception as error:  # the user's module fails on import: say where, in one line
        raise ChainruleError(
            f"importing {path} failed{_where_in(error, path)}: {type(error).__name__}: {error}"
        ) from None
    finally:
        sys.path.pop(0)
    function = getattr(module, name, None)
    if not callable(function):
        raise ChainruleError(f"{path} has no function {name!r}")
    return function, module


def _where_in(error: BaseException, path: Path) -> str:
    """`` at file.py:12``: the last line of ``path`` in the error's traceback, or nothing."""
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(error.__traceback__)
        if Path(frame.filename).resolve() == path.resolve()
    ]
    return f" at {path.name}:{lines[-1]}" if lines else ""


def example_inputs(function: Callable[..., Any], module: ModuleType, shapes: list[str], seed: int) -> tuple[Any, ...]:
    """Random normal arrays of the ``--shape NAME=DIMS`` options in the order of ``function``'s
    parameters, else the module's ``example_args()``."""
    if shapes:
        return _shaped_inputs(function, shapes, seed)
    if hasattr(module, "example_args"):
        return tuple(module.example_args())
    raise ChainruleError("give the inputs: define example_args() in the file or pass --shape NAME=DIMS per argument")


def _shaped_inputs(function: Callable[..., Any], shapes: list[str], seed: int) -> tuple[Any, ...]:
    """One standard-normal array per ``--shape NAME=DIMS``, put in the order of the parameters they
    name (in the order given for a ``*args`` function)."""
    signature = inspect.signature(function).parameters.values()
    positional = [p for p in signature if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = [p.name for p in positional]
    named = {option.partition("=")[0]: option for option in shapes}
    if not any(p.kind == p.VAR_POSITIONAL for p in signature):
        unknown = [name for name in named if name not in names]
        if unknown:
            raise ChainruleError(
                f"--shape {named[unknown[0]]!r}: {function.__name__}() has no parameter {unknown[0]!r} "
                f"(its parameters: {', '.join(names) or 'none'})"
            )
        missing = [p.name for p in positional if p.name not in named and p.default is p.empty]
        if missing:
            raise ChainruleError(f"{function.__name__}({', '.join(names)}) needs --shape for {', '.join(missing)}")
        shapes = [named[name] for name in names if name in named]
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
