"""Loops and branches (``chainrule.ir.control``) on the LLVM backend when they cannot be native
loops (``loops.py``: a body runs some node through NumPy, such as SciPy's zeta or a gather's cotangent):
the node is a NumPy fallback (a Python loop over the steps, called back from the native kernel),
and each step calls the body's own native code, compiled once per body like any graph (about 1 us
a call, against 8-20 us for a small body as NumPy code). ``kernel.py`` supplies the compiler
(``set_native_compiler``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from chainrule.ir import Graph
from chainrule.ir.control import Body, run_loop, run_switch, run_while, run_while_vjp
from chainrule.ir.custom import run_custom
from chainrule.ir.reversal import run_loop_reversal

Step = Callable[..., tuple[Any, ...]]
_COMPILER: list[Callable[[Graph], Step]] = []


def set_native_compiler(compiler: Callable[[Graph], Step]) -> None:
    """Compile bodies with ``compiler`` (the backend's ``compile_graph``, given by kernel.py)."""
    _COMPILER.append(compiler)


def native_step(body: Body) -> Step:
    """``body`` as native code (compiled on first use, kept with the body)."""
    step: Step = body.derived("llvm step", lambda: _COMPILER[-1](body.graph))
    return step


def _loop(operands: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    settings = (attrs["length"], attrs["reverse"], attrs["tape"], attrs["n_carry"], attrs["n_xs"])
    return run_loop(attrs["body"].key, *settings, tuple(operands), native_step)


def _switch(operands: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    keys = tuple(branch.key for branch in attrs["branches"])
    return run_switch(keys, operands[0], tuple(operands[1:]), native_step)


def _while(operands: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    return run_while(attrs["cond"].key, attrs["body"].key, attrs["n_carry"], tuple(operands), native_step)


def _while_vjp(operands: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    return run_while_vjp(attrs["body"].key, attrs["backward"].key, tuple(operands), native_step)


def _custom(operands: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    # the pipeline inlines custom nodes; one reaches a backend only in a body run outside it
    result: np.ndarray = run_custom(attrs["primal"].key, tuple(operands), native_step)
    return result


def _loop_reversal(operands: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    keys = (attrs["body"].key, attrs["backward"].key, attrs["schedule"].key)
    settings = (attrs["reverse"], attrs["n_backward"], attrs["n_carry"], attrs["n_xs"])
    return run_loop_reversal(*keys, *settings, tuple(operands), native_step)


# op -> what its fallback calls (strategies.py declares them)
RUNNERS: dict[str, Callable[[list[np.ndarray], dict[str, Any]], np.ndarray]] = {
    "loop": _loop,
    "switch": _switch,
    "while": _while,
    "while_vjp": _while_vjp,
    "custom_vjp": _custom,
    "custom_jvp": _custom,
    "loop_reversal": _loop_reversal,
}
