"""The passes (Graph -> Graph) and the pipeline that names them."""

# the derivative and batching rules of loops, branches and user-defined rules, registered on import
from chainrule.compiler import (  # noqa: F401
    control_ad,
    control_batch,
    custom_ad,
    loop_checkpoint,
    while_second_order,
)
