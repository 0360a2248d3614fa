"""The user-facing transformations: each takes a Python function and returns a compiled one.

``compiled.py`` holds ``Compiled`` (trace, run the pass pipeline, compile, cache per signature)
and grad, value_and_grad, jit and trace; ``higher_order.py`` forward mode and second order (jvp,
vjp, hvp); ``dense.py`` whole Jacobians and Hessians; ``checkpoint.py`` the ``checkpoint`` marker;
``check_grad.py`` seed 002's gradient check; ``control_flow.py`` loops and branches that stay
loops and branches in the IR (scan, fori_loop, while_loop, cond, switch); ``custom.py`` functions
with derivative rules of their own (custom_vjp, custom_jvp); ``vmap.py`` vmap (a function of one
example run on a batch as one vectorized program).
"""

from chainrule.frontends.tracer import stop_gradient
from chainrule.transforms.check_grad import check_grad
from chainrule.transforms.checkpoint import checkpoint
from chainrule.transforms.compiled import Compiled, grad, jit, trace, value_and_grad
from chainrule.transforms.control_flow import cond, fori_loop, scan, switch, while_loop
from chainrule.transforms.custom import custom_jvp, custom_vjp
from chainrule.transforms.dense import hessian, jacobian
from chainrule.transforms.higher_order import hvp, jvp, vjp
from chainrule.transforms.vmap import vmap

__all__ = [
    "Compiled",
    "check_grad",
    "checkpoint",
    "cond",
    "custom_jvp",
    "custom_vjp",
    "fori_loop",
    "grad",
    "hessian",
    "hvp",
    "jacobian",
    "jit",
    "jvp",
    "scan",
    "stop_gradient",
    "switch",
    "trace",
    "value_and_grad",
    "vjp",
    "vmap",
    "while_loop",
]
