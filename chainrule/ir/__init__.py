"""The IR: types, the op table, graphs, printers. Imports nothing else from chainrule."""

from chainrule.ir import (  # noqa: F401  (fill the op table)
    conv,
    elementwise,
    fft,
    filters,
    fused,
    linalg,
    linalg_spectral,
    pool,
    reductions,
    scans,
    special,
    special_functions,
    structural,
    update,
)

# isort: split
from chainrule.ir import (
    control,  # noqa: F401  (loops and branches: after the ops their bodies use)
    custom,  # noqa: F401  (user-defined derivative rules, which hold bodies too)
    reversal,  # noqa: F401  (a checkpointed loop's backward pass)
)
from chainrule.ir.builder import F, Value
from chainrule.ir.graph import ConstArray, Graph, Node
from chainrule.ir.ops import OPS, Op
from chainrule.ir.types import TensorType

__all__ = ["OPS", "ConstArray", "F", "Graph", "Node", "Op", "TensorType", "Value"]
