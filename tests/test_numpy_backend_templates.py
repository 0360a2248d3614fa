"""generate_source fills in an op's template itself (printf style, see ``lowering``) rather than
calling ``Op.render``: for every op it does that for, both must write the same text."""

from chainrule.backends.numpy.expressions import lowering
from chainrule.ir import OPS


def test_printf_templates_write_what_render_writes():
    for name, op in OPS.items():
        printf, elementwise, _ = lowering(name)
        assert elementwise == op.is_elementwise
        if printf is not None:
            # operand texts with % and braces in them must come through as they are
            operands = [f"f{i}(a % b, {{}})" for i in range(op.arity)]
            assert printf % tuple(operands) == op.render(operands, {}), name
