"""The passes (Graph -> Graph) and the pipeline that names them."""

from chainrule.compiler import (
    control_ad,  # noqa: F401  (the derivative rules of loops and branches)
    loop_checkpoint,  # noqa: F401  (checkpointed loops)
    while_second_order,  # noqa: F401  (second order through while loops)
)
