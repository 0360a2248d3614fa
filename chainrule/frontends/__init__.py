"""Frontends: Python functions on NumPy arrays traced into the IR, and SymPy expressions imported.

Importing the package registers the NumPy surface on traced values (``numpy_api``,
``numpy_shapes`` and the other ``numpy_*`` modules) into ``dispatch``; ``SUPPORTED`` lists the
functions it covers.
"""

from chainrule.frontends import (  # noqa: F401  (fill the dispatch table)
    inplace,
    numpy_api,
    numpy_contractions,
    numpy_fft,
    numpy_idioms,
    numpy_layout,
    numpy_linalg,
    numpy_norm,
    numpy_predicates,
    numpy_scans,
    numpy_selection,
    numpy_shapes,
    numpy_special,
    numpy_statistics,
    numpy_windows,
    scipy_integrate,
    scipy_linalg,
    scipy_ndimage,
    scipy_signal,
    scipy_sparse,
    scipy_spatial,
    scipy_stats,
)
from chainrule.frontends.complex_values import complex_names
from chainrule.frontends.dispatch import supported_names
from chainrule.frontends.numpy_idioms import register_outer_methods
from chainrule.frontends.rebinding import rebind_in_user_modules

register_outer_methods()  # after every module's ufunc handlers are in
SUPPORTED = supported_names()
COMPLEX_SUPPORTED = complex_names()  # the NumPy functions that take traced complex values
rebind_in_user_modules()  # `from scipy.special import logsumexp` above `import chainrule`

__all__ = ["COMPLEX_SUPPORTED", "SUPPORTED"]
