"""The address of a C function a Cython module exports (``__pyx_capi__``): how native code calls
SciPy's BLAS (``cython_blas``) and special functions (``cython_special``) directly."""

from __future__ import annotations

import ctypes
from types import ModuleType

_capsule_name = ctypes.pythonapi.PyCapsule_GetName
_capsule_name.restype = ctypes.c_char_p
_capsule_name.argtypes = [ctypes.py_object]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def exported_address(module: ModuleType, function: str) -> int:
    """The address of ``function`` in ``module.__pyx_capi__``."""
    capsule = module.__pyx_capi__[function]
    pointer = _capsule_pointer(capsule, _capsule_name(capsule))
    assert pointer is not None, f"{module.__name__} exports {function} without an address"
    return int(pointer)
