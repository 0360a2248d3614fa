"""chainrule: a symbolic-plus-numeric differentiation compiler for NumPy code.

    >>> import numpy as np, chainrule as cr
    >>> df = cr.grad(lambda x: np.sum(x ** 2))
    >>> df(np.array([1.0, 2.0]))
    array([2., 4.])
"""

from chainrule.api import Compiled, check_grad, grad, jit, stop_gradient, trace, value_and_grad
from chainrule.errors import (ArgumentError, ChainruleError, OutputError, ShapeError, TraceError,
                              UnsupportedError)
from chainrule.ir import Graph

__version__ = "0.1.0"

__all__ = [
    "ArgumentError", "ChainruleError", "Compiled", "Graph", "OutputError", "ShapeError", "TraceError",
    "UnsupportedError", "check_grad", "grad", "jit", "stop_gradient", "trace", "value_and_grad",
]
