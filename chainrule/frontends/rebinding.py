"""SciPy functions imported by name before chainrule was: rebound to chainrule's dispatching versions.

``scipy.special.logsumexp`` and ``scipy.linalg.solve_triangular`` are Python functions that convert
their arguments with ``np.asarray``; chainrule replaces them in their SciPy modules by functions that
trace when an argument is traced (``numpy_special.traceable``, ``scipy_linalg.scipy_function``). A
script that wrote ``from scipy.special import logsumexp`` above ``import chainrule`` (autograd's HMM
and mixture examples, ported by changing their import lines) holds the original under its own name.
When chainrule is imported, that name is rebound in the user's modules (``__main__`` and modules
outside the standard library and installed packages) to the replacement, which calls the original
whenever nothing is traced, so the user's program computes exactly what it did. Installed packages
are left alone: their names keep SciPy's originals.
"""

from __future__ import annotations

import sys
from types import ModuleType

from chainrule.frontends.source import INSTALLED_DIRS

# id(original) -> (original, replacement); the original is kept so the id stays its own
_REPLACED: dict[int, tuple[object, object]] = {}


def record_replacement(original: object, replacement: object) -> None:
    """Remember that ``replacement`` stands for ``original`` in SciPy's namespace."""
    _REPLACED[id(original)] = (original, replacement)


def rebind_in_user_modules() -> int:
    """Point the user's module-level names for replaced SciPy functions at the replacements;
    returns how many names were rebound."""
    rebound = 0
    for module in list(sys.modules.values()):
        if not _is_user_module(module):
            continue
        namespace = vars(module)
        for name, value in list(namespace.items()):
            entry = _REPLACED.get(id(value))
            if entry is not None and entry[0] is value:
                namespace[name] = entry[1]
                rebound += 1
    return rebound


def _is_user_module(module: object) -> bool:
    if not isinstance(module, ModuleType):
        return False
    name = getattr(module, "__name__", "") or ""
    if name == "__main__":
        return True
    if name.partition(".")[0] in ("chainrule", "scipy", "numpy"):
        return False
    path = getattr(module, "__file__", None)
    return isinstance(path, str) and not path.startswith(INSTALLED_DIRS)
