"""chainrule beyond one machine, on Dask (``pip install "chainrule[dask]"``).

Dask does the distributing: ``dask.array`` holds the data in chunks along the
batch axis, ``dask.distributed`` runs the tasks on a ``LocalCluster`` or on a
cluster started by ``dask-jobqueue``/``dask-kubernetes``, and ``dask.bag``'s
tree reduction sums the chunks' gradients. chainrule adds compiled functions
that travel (a ``Compiled`` pickles as its function and options and compiles
once per worker process, see ``chainrule.transforms.portable``) and the
bookkeeping that makes a distributed gradient equal to the one-process one.

    >>> from dask.distributed import Client, LocalCluster        # doctest: +SKIP
    >>> client = Client(LocalCluster(n_workers=2))               # doctest: +SKIP
    >>> vg = chainrule.distributed.value_and_grad(loss, data_argnums=(1, 2))  # doctest: +SKIP
    >>> value, grads = vg(params, dask_x, dask_y)               # doctest: +SKIP

``value_and_grad``/``grad``: a loss's value and gradient over data too large for one process;
``map``: a compiled function applied blockwise to dask arrays; ``data_parallel_step``: the
step ``chainrule.train.fit(..., client=client)`` runs; ``TopK``: top-k gradient transport with
error feedback (``transport=TopK(0.01)``).
"""

from chainrule.distributed.blockwise import map
from chainrule.distributed.compression import TopK
from chainrule.distributed.gradients import DistributedValueAndGrad, grad, value_and_grad
from chainrule.distributed.training import data_parallel_step

__all__ = ["DistributedValueAndGrad", "TopK", "data_parallel_step", "grad", "map", "value_and_grad"]
