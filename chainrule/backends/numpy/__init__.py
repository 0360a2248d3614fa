"""The NumPy backend: a graph becomes one Python function of straight-line NumPy calls.

The source is meant to be read: values keep the user's variable names
(``Z1``, ``A1``), cotangents are ``dZ1``, one statement a line, and each
backward line says which forward op it differentiates. It is registered with
``linecache``, so tracebacks and pdb show the generated lines.

- ``source.py`` writes the function (``generate_source``), ``expressions.py`` decides how
  an op's text reads inside another's, ``fused.py`` writes fused nodes;
- ``text.py`` holds what any writer of NumPy source shares (names, comments, literals,
  early ``del``s, output copies): the ``check_nans`` kernel (``backends/nan_check.py``) uses it too;
- ``kernel.py`` runs the source (``compile_graph``, ``define``); ``runtime.py`` holds the
  helpers the generated code calls; ``loops.py`` compiles the bodies of loops and branches.

Every per-op fact comes from the op table: templates (``Op.numpy``), in-place forms
(``Op.in_place``), views (``Op.view``).
"""

from chainrule.backends.numpy import loops  # noqa: F401  (compiles loop bodies: ir.control.set_step_compiler)
from chainrule.backends.numpy.kernel import NumpyKernel, compile_graph, define
from chainrule.backends.numpy.runtime import where_else_zero
from chainrule.backends.numpy.source import generate_source

__all__ = ["NumpyKernel", "compile_graph", "define", "generate_source", "where_else_zero"]
