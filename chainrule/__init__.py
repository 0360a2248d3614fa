"""chainrule: a symbolic-plus-numeric differentiation compiler for NumPy code.

    >>> import numpy as np, chainrule as cr
    >>> df = cr.grad(lambda x: np.sum(x ** 2))
    >>> df(np.array([1.0, 2.0]))
    array([2., 4.])
"""

from chainrule.api import Compiled, check_grad, grad, jit, stop_gradient, trace, value_and_grad
from chainrule.errors import (ArgumentError, ChainruleError, OutputError, ShapeError, TraceError,
                              UnsupportedError)
from chainrule.errors import NonFiniteError  # with check_nans=True
from chainrule.frontends.sympy_frontend import from_sympy, to_sympy
from chainrule.dense import hessian, jacobian
from chainrule.higher_order import hvp, jvp, vjp
from chainrule.ir import Graph
from chainrule import nn, optim, train  # the training toolkit: cr.nn, cr.optim, cr.train.fit
from chainrule.markers import checkpoint

__version__ = "0.1.0"

__all__ = [
    "ArgumentError", "ChainruleError", "Compiled", "Graph", "OutputError", "ShapeError", "TraceError",
    "UnsupportedError", "check_grad", "checkpoint", "from_sympy", "grad", "hessian", "hvp", "jacobian", "jit",
    "jvp", "stop_gradient", "to_sympy", "trace", "value_and_grad", "vjp",
    "NonFiniteError",
]
