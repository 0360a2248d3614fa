"""The passes (Graph -> Graph) and the pipeline that names them."""

# the derivative and batching rules of loops, branches and user-defined rules, registered on import
from chainrule.compiler import control_ad, control_batch, custom_ad  # noqa: F401
