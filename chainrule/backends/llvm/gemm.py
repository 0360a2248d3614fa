"""A matmul lowered to BLAS: one ``?gemm`` call per batch element, arguments by pointer (the
row-major product computed as the column-major product of the transposes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from chainrule.backends.llvm import scalar_ops
from chainrule.backends.llvm.views import gemm_layout, matrices

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen


def emit_gemm(gen: Codegen, node_id: int) -> None:
    """``node_id`` (a matmul) as one BLAS gemm call per batch element, in the entry function."""
    gen.uses_blas = True
    entry = gen.entry
    node = gen.graph[node_id]
    entry.note(gen.describe(node_id))
    a_view, b_view = (gen.plan.views[x] for x in node.args)
    out = gen.plan.views[node_id]
    dtype = out.dtype
    t = scalar_ops.register_type(dtype)
    gemm = "chainrule_dgemm" if dtype == "float64" else "chainrule_sgemm"
    a2, b2, batch = matrices(a_view, b_view)
    rows, inner = a2.shape[-2:]
    columns = b2.shape[-1]
    cache: dict[object, str] = {}

    def constant(llvm_type: str, value: object, name: str) -> str:
        """A pointer to ``value`` (BLAS takes every argument by pointer), one per distinct value."""
        key = (llvm_type, value)
        if key not in gen.blas_arguments:
            slot = entry.alloca(llvm_type, name)
            entry.do(f"store {llvm_type} {value}, ptr {slot}")
            gen.blas_arguments[key] = slot
        return gen.blas_arguments[key]

    a_layout, b_layout = gemm_layout(a2), gemm_layout(b2)
    assert a_layout is not None and b_layout is not None, "a matmul planned for BLAS that BLAS cannot read"
    n_ptr, m_ptr, k_ptr = (constant("i32", v, f"int.{v}") for v in (columns, rows, inner))
    trans_b, trans_a = (constant("i8", ord(layout[0]), f"char.{layout[0]}") for layout in (b_layout, a_layout))
    ld_b, ld_a, ld_c = (constant("i32", v, f"int.{v}") for v in (b_layout[1], a_layout[1], max(columns, 1)))
    alpha = constant(t, scalar_ops.literal(1.0, dtype), "alpha")
    beta = constant(t, scalar_ops.literal(0.0, dtype), "beta")
    itemsize = np.dtype(dtype).itemsize
    for index in np.ndindex(*batch):
        a_at = a2.offset + sum(i * s for i, s in zip(index, a2.strides[:-2])) * itemsize
        b_at = b2.offset + sum(i * s for i, s in zip(index, b2.strides[:-2])) * itemsize
        c_at = out.offset + (int(np.ravel_multi_index(index, batch)) if batch else 0) * rows * columns * itemsize
        pointers = [
            gen.base(entry, type(out)(v.slot, at, (), (), dtype), cache)
            for v, at in ((a2, a_at), (b2, b_at), (out, c_at))
        ]
        entry.do(
            f"call void @{gemm}(ptr {trans_b}, ptr {trans_a}, ptr {n_ptr}, ptr {m_ptr}, ptr {k_ptr}, "
            f"ptr {alpha}, ptr {pointers[1]}, ptr {ld_b}, ptr {pointers[0]}, ptr {ld_a}, ptr {beta}, "
            f"ptr {pointers[2]}, ptr {ld_c})"
        )
