"""Frontends: Python functions on NumPy arrays traced into the IR, and SymPy expressions imported.

Importing the package registers the NumPy surface on traced values (``numpy_api``,
``numpy_shapes``) into ``dispatch``; ``SUPPORTED`` lists the functions it covers.
"""

from chainrule.frontends import inplace, numpy_api, numpy_shapes  # noqa: F401  (fill the dispatch table)
from chainrule.frontends.dispatch import supported_names

SUPPORTED = supported_names()

__all__ = ["SUPPORTED"]
