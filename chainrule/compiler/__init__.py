"""The passes (Graph -> Graph) and the pipeline that names them."""

# the derivative rules and the batching rules of loops and branches, registered on import
from chainrule.compiler import control_ad, control_batch  # noqa: F401
