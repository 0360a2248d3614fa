"""Dask, imported only when a distributed function is used, with the install hint when it is missing."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from chainrule.errors import ArgumentError, UnsupportedError


def dask_modules() -> tuple[ModuleType, ModuleType, ModuleType, ModuleType]:
    """(dask, dask.array, dask.bag, dask.distributed), or an UnsupportedError saying how to install them."""
    try:
        import dask
        import dask.array
        import dask.bag
        import dask.distributed
    except ImportError as error:
        raise UnsupportedError(
            f"chainrule.distributed needs Dask ({error.name} is not installed): pip install 'chainrule[dask]'"
        ) from None
    return dask, dask.array, dask.bag, dask.distributed


def current_client(client: Any) -> Any:
    """``client``, or the Dask client this process made last; an ArgumentError when there is none."""
    if client is not None:
        return client
    distributed = dask_modules()[3]
    try:
        return distributed.default_client()
    except ValueError:
        raise ArgumentError(
            "chainrule.distributed needs a Dask client: make one first (Client(LocalCluster()) on this "
            "machine, Client('tcp://scheduler:8786') for a cluster) or pass client="
        ) from None
