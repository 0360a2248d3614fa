"""The passes (Graph -> Graph) and the pipeline that names them."""

from chainrule.compiler import (
    control_ad,  # noqa: F401  (the derivative rules of loops and branches)
    custom_ad,  # noqa: F401  (reverse mode and batching of user-defined rules)
)
