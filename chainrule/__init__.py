"""chainrule: a symbolic-plus-numeric differentiation compiler for NumPy code.

>>> import numpy as np, chainrule as cr
>>> df = cr.grad(lambda x: np.sum(x ** 2))
>>> df(np.array([1.0, 2.0]))
array([2., 4.])
"""

# the training toolkit (cr.nn, cr.optim, cr.train.fit) and pytrees (cr.tree_util)
from chainrule import nn, optim, train, tree_util
from chainrule.errors import (
    ArgumentError,
    ChainruleError,
    GraphFormatError,
    NonFiniteError,
    OutputError,
    RetraceWarning,
    ShapeError,
    TraceError,
    UnsupportedError,
)
from chainrule.frontends.sympy_frontend import from_sympy, to_sympy
from chainrule.ir import Graph
from chainrule.transforms import (
    Compiled,
    check_grad,
    checkpoint,
    cond,
    custom_jvp,
    custom_vjp,
    fori_loop,
    grad,
    hessian,
    hvp,
    jacobian,
    jit,
    jvp,
    scan,
    stop_gradient,
    switch,
    trace,
    value_and_grad,
    vjp,
    vmap,
    while_loop,
)

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "ChainruleError",
    "Compiled",
    "Graph",
    "GraphFormatError",
    "NonFiniteError",
    "OutputError",
    "RetraceWarning",
    "ShapeError",
    "TraceError",
    "UnsupportedError",
    "check_grad",
    "checkpoint",
    "cond",
    "custom_jvp",
    "custom_vjp",
    "fori_loop",
    "from_sympy",
    "grad",
    "hessian",
    "hvp",
    "jacobian",
    "jit",
    "jvp",
    "nn",
    "optim",
    "scan",
    "stop_gradient",
    "switch",
    "to_sympy",
    "trace",
    "train",
    "tree_util",
    "value_and_grad",
    "vjp",
    "vmap",
    "while_loop",
]
