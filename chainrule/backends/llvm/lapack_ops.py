"""The linear-algebra ops as LAPACK calls from JIT code: cholesky (``?potrf``), solve (``?gesv``),
triangular_solve (BLAS ``?trsm``), slogdet (``?getrf``), eigh and eigvalsh (``?syevd``, jobz='V'
or 'N'), svd and svdvals (``?gesdd``, jobz='S' or 'N'), qr (``?geqrf`` + ``?orgqr``) and expm
(scaling and squaring with BLAS and ``?gesv``: ``expm.py``) and its Fréchet derivative
(``expm_frechet.py``), each once per matrix of the batch in a
native loop. The code around each call (argument slots, copies, checks) is ``lapack_unit.py``.

Layout: LAPACK is column-major and chainrule's arrays are row-major (or any strided view). Each
matrix is copied into a column-major workspace (converting its dtype on the way), factorized there,
and its factors are copied out into the node's (packed, row-major) result. The copies are O(n²)
against the factorization's O(n³), they accept any operand layout (transposed, broadcast batch
axes, a slice), and LAPACK may overwrite its input, which the operand must not be. The routines
read the same triangle NumPy's do (potrf and syevd the lower one unless eigh says UPLO="U").
Values-only routines skip the transpose: eigvalsh and svdvals copy A straight (row-major, a
vectorized copy) and have LAPACK read Aᵀ, which has A's eigenvalues (syevd told the other
triangle) and singular values (gesdd told the swapped shape).

Workspace: one block at a fixed place in the arena (``scratch``), shared by every LAPACK node of
the kernel (they run one after another), sized when the kernel is planned: matrices by their
shapes, ``lwork``/``liwork`` by LAPACK's own query (``lapack.py``). Its first word is the status
the kernel reads after the call: 0, or the number of the failure to raise (``Lowering.failures``).

Threads: SciPy's OpenBLAS threads a call from n ≈ 100 on. On a machine whose cores are busy
(2 cores, other jobs) a threaded call waits for descheduled threads at every synchronization:
a threaded trsm of order 200 took 25 ms where one thread takes 0.4 ms, and gemm then trsm
alternating 95 ms against 0.7 ms; on a quiet machine threads gain at most the core count. So a
kernel whose LAPACK matrices are all of order <= 256 (a few ms of work on one core), or whose
convolutions' products are no larger than a product of that order (``conv.py``), sets SciPy's
thread count to 1 for its duration and restores it at the end (``blas.set_blas_threads`` is the
same setting, for the user's own calls); larger ones keep SciPy's threads. Kernels running on
several Python threads at once share a counter: the first saves the setting, the last restores it.

triangular_solve is BLAS ``trsm`` rather than LAPACK ``trtrs``, like the NumPy lowering: trtrs
would stop on a zero diagonal where NumPy's path gives inf/NaN, and SciPy's threaded trtrs was
20-50× slower at n = 200.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from chainrule.backends.llvm import expm, expm_frechet, lapack, scalar_ops
from chainrule.backends.llvm.lapack_unit import STATUS_BYTES, LapackUnit, region_bytes
from chainrule.backends.llvm.strides import contiguous_strides
from chainrule.backends.llvm.views import View, gemm_layout, matrices
from chainrule.ir import Graph

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen

# A kernel whose LAPACK matrices all have at most this many rows and columns runs its BLAS and LAPACK
# calls on one thread (see the module docstring).
SINGLE_THREAD_MAX_ORDER = 256
OPS = (
    "cholesky",
    "solve",
    "triangular_solve",
    "slogdet",
    "eigh",
    "eigvalsh",
    "svd",
    "svdvals",
    "qr",
    "matmul",
    "expm",
    "expm_frechet",
)
# ops whose result has one axis (the values, or slogdet's pair) in place of a matrix's two
_VECTOR_RESULTS = ("slogdet", "eigh", "eigvalsh", "svd", "svdvals", "qr")
# NumPy's messages (numpy/linalg/_linalg.py), so the error reads the same on both backends
NOT_POSITIVE_DEFINITE = "Matrix is not positive definite"
SINGULAR = "Singular matrix"
EIGH_FAILED = "Eigenvalues did not converge"
SVD_FAILED = "SVD did not converge"


def ready(graph: Graph, node_id: int) -> bool:
    """Can LAPACK compute this node? Float results, operands with LLVM arithmetic, no empty axis."""
    node = graph[node_id]
    operands = [graph.type(a) for a in node.args]
    return (
        node.op in OPS
        and node.type.dtype in ("float64", "float32")
        and all(t.dtype in scalar_ops.TYPES and t.dtype != "bool" for t in operands)
        and node.type.size > 0
        and all(t.size > 0 for t in operands)
    )


def workspace(graph: Graph, node_id: int) -> dict[str, tuple[int, str]]:
    """The node's workspace: region -> (elements, dtype), ``int32`` for pivots and integer work."""
    node = graph[node_id]
    dtype = node.type.dtype
    if node.op == "matmul":
        a_shape, b_shape = (graph.type(x).shape for x in node.args)
        m, k, n = (a_shape[-2] if len(a_shape) > 1 else 1), a_shape[-1], (b_shape[-1] if len(b_shape) > 1 else 1)
        return {"a": (m * k, dtype), "b": (k * n, dtype), "c": (m * n, dtype)}
    a = graph.type(node.args[0])
    m, n = a.shape[-2:]
    k = min(m, n)
    if node.op == "expm":
        return expm.workspace(n, dtype)
    if node.op == "expm_frechet":
        return expm_frechet.workspace(n, dtype)
    if node.op in ("cholesky", "slogdet"):
        return {"a": (n * n, dtype), "ipiv": (n, "int32")}
    if node.op in ("solve", "triangular_solve"):
        rhs = node.type.shape[-1]
        return {"a": (n * n, dtype), "b": (n * rhs, dtype), "ipiv": (n, "int32")}
    if node.op in ("eigh", "eigvalsh"):
        lwork, liwork = lapack.syevd_work(n, dtype, vectors=node.op == "eigh")
        return {"a": (n * n, dtype), "w": (n, dtype), "work": (lwork, dtype), "iwork": (liwork, "int32")}
    if node.op in ("svd", "svdvals"):
        vectors = node.op == "svd"
        lwork = lapack.gesdd_work(m, n, dtype, vectors) if vectors else lapack.gesdd_work(n, m, dtype, vectors)
        regions = {"a": (m * n, dtype), "s": (k, dtype)}
        if vectors:
            regions |= {"u": (m * k, dtype), "vt": (k * n, dtype)}
        return {**regions, "work": (lwork, dtype), "iwork": (8 * k, "int32")}
    assert node.op == "qr", f"{node.op} has no LAPACK lowering"
    return {"a": (m * n, dtype), "tau": (k, dtype), "r": (k * n, dtype), "work": (qr_lwork(m, n, dtype), dtype)}


def qr_lwork(m: int, n: int, dtype: str) -> int:
    return lapack.qr_work(m, n, dtype)


def scratch_bytes(graph: Graph, node_id: int) -> int:
    """Bytes of arena the node needs while it runs (the status word included)."""
    return STATUS_BYTES + sum(region_bytes(c, d) for c, d in workspace(graph, node_id).values())


def _single_threaded(gen: Codegen) -> None:
    """Run the kernel's BLAS/LAPACK calls on one thread when its LAPACK matrices are small: save
    SciPy's thread count and set it to 1 (``finish`` restores it)."""
    orders = [
        max(gen.graph.type(a).shape[-2:])
        for u in gen.plan.units
        if u.kind == "lapack"
        for a in gen.graph[u.node_id].args
    ]
    if max(orders) <= SINGLE_THREAD_MAX_ORDER:
        blas_on_one_thread(gen)


def blas_on_one_thread(gen: Codegen) -> None:
    """From here to the end of the entry function, SciPy's BLAS/LAPACK calls run on one thread:
    its thread count saved and set to 1 (``finish`` restores it). Once per kernel (LAPACK's small
    matrices, ``conv.py``'s small products)."""
    if gen.lapack_threads is not None or not lapack.can_set_threads():
        return
    # Kernels on several Python threads at once: the first to start saves SciPy's setting in the
    # process-wide state (``lapack.THREAD_STATE``: kernels running, saved count), the last to end
    # restores it.
    entry, state = gen.entry, f"@{lapack.THREAD_STATE}"
    entry.declare(f"declare i32 @{lapack.GET_THREADS}() nounwind")
    entry.declare(f"declare void @{lapack.SET_THREADS}(i32) nounwind")
    entry.declare(f"{state} = external global [2 x i64]")
    saved = entry.emit(f"getelementptr i64, ptr {state}, i64 1", "blas.saved")
    running = entry.emit(f"atomicrmw add ptr {state}, i64 1 seq_cst", "kernels.running")
    save, go = entry.label("blas.save"), entry.label("blas.single")
    entry.do(f"br i1 {entry.emit(f'icmp eq i64 {running}, 0', 'first')}, label %{save}, label %{go}")
    entry.place(save)
    threads = entry.emit(f"sext i32 {entry.emit(f'call i32 @{lapack.GET_THREADS}()')} to i64", "blas.threads")
    entry.do(f"store atomic i64 {threads}, ptr {saved} seq_cst, align 8")
    entry.do(f"call void @{lapack.SET_THREADS}(i32 1)")
    entry.do(f"br label %{go}")
    entry.place(go)
    gen.lapack_threads = saved


def finish(gen: Codegen) -> None:
    """At the end of the entry function: the last kernel running restores SciPy's thread count."""
    if gen.lapack_threads is None:
        return
    entry = gen.entry
    running = entry.emit(f"atomicrmw sub ptr @{lapack.THREAD_STATE}, i64 1 seq_cst", "kernels.running")
    restore, done = entry.label("blas.restore"), entry.label("blas.done")
    entry.do(f"br i1 {entry.emit(f'icmp eq i64 {running}, 1', 'last')}, label %{restore}, label %{done}")
    entry.place(restore)
    threads = entry.emit(f"load atomic i64, ptr {gen.lapack_threads} seq_cst, align 8", "blas.threads")
    entry.do(f"call void @{lapack.SET_THREADS}(i32 {entry.emit(f'trunc i64 {threads} to i32')})")
    entry.do(f"br label %{done}")
    entry.place(done)


def emit_lapack(gen: Codegen, node_id: int) -> None:
    """``node_id`` as LAPACK calls, in the entry function (see the module docstring)."""
    node = gen.graph[node_id]
    if not gen.lapack_status_cleared:  # the first LAPACK node clears the status
        gen.entry.do(f"store i32 0, ptr {gen.base(gen.entry, gen.plan.scratch, {})}")
        gen.lapack_status_cleared = True
        _single_threaded(gen)
    batch = node.type.shape[: -1 if node.op in _VECTOR_RESULTS else -2]
    _EMITTERS[node.op](LapackUnit(gen, node_id, workspace(gen.graph, node_id), batch))


# ---- the ops ------------------------------------------------------------------------------------


def _cholesky(u: LapackUnit) -> None:
    (a_view,) = u.operands
    n = a_view.shape[-1]
    a, order, zero = u.regions["a"], u.integer(n), u.real(0.0)
    lower, upper, below = u.char("L"), u.char("U"), u.integer(n - 1)
    strict_upper = u.at(a, n)  # column 1: the strict upper triangle is the upper one of a[:n-1, 1:]

    def body(pointers: list[str]) -> None:
        u.into_columns(pointers[0], a_view, "a")
        u.call("potrf", lower, order, a, order, u.info)
        u.check("potrf", NOT_POSITIVE_DEFINITE)
        if n > 1:
            u.call("laset", upper, below, below, zero, zero, strict_upper, order)
        u.out_of_columns("a", n, n, pointers[1])

    u.each_matrix([a_view, u.result], body)


def _solve(u: LapackUnit) -> None:
    a_view, b_view = u.operands
    n, rhs = b_view.shape[-2:]
    order, columns = u.integer(n), u.integer(rhs)

    def body(pointers: list[str]) -> None:
        u.into_columns(pointers[0], a_view, "a")
        u.into_columns(pointers[1], b_view, "b")
        u.call("gesv", order, columns, u.regions["a"], order, u.regions["ipiv"], u.regions["b"], order, u.info)
        u.check("gesv", SINGULAR)
        u.out_of_columns("b", n, rhs, pointers[2])

    u.each_matrix([a_view, b_view, u.result], body)


def _triangular_solve(u: LapackUnit) -> None:
    """trsm reads A where it is when BLAS can (a row-major A is the column-major Aᵀ: solved with
    transa='T' and the other triangle), else from a column-major copy; B is copied (trsm overwrites it)."""
    a_view, b_view = u.operands
    n, rhs = b_view.shape[-2:]
    order, one = u.integer(n), u.real(1.0)
    lower = u.node.params["lower"]
    layout = gemm_layout(a_view) if a_view.dtype == u.dtype else None
    if layout is None:
        transposed, lda = False, order
    else:
        transposed, lda = layout[0] == "N", u.integer(layout[1])
    triangle = u.char("L" if lower != transposed else "U")
    left, plain, trans_a = u.char("L"), u.char("N"), u.char("T" if transposed else "N")
    arguments = (u.integer(rhs), one)

    def body(pointers: list[str]) -> None:
        if layout is None:
            u.into_columns(pointers[0], a_view, "a")
        a = u.regions["a"] if layout is None else pointers[0]
        u.into_columns(pointers[1], b_view, "b")
        u.call("trsm", left, triangle, trans_a, plain, order, *arguments, a, lda, u.regions["b"], order)
        u.out_of_columns("b", n, rhs, pointers[2])

    u.each_matrix([a_view, b_view, u.result], body)


def _slogdet(u: LapackUnit) -> None:
    (a_view,) = u.operands
    n = a_view.shape[-1]
    order, t, entry = u.integer(n), u.t, u.entry
    sign_slot, log_slot = entry.alloca(t, "sign"), entry.alloca(t, "logdet")
    last = u.result.strides[-1]

    def pivot(offsets: dict[Hashable, str]) -> None:
        # sign = Π sign(u_ii) · (-1)^(rows swapped), log|det| = Σ log|u_ii|, in NumPy's order
        emit = entry.emit
        d = u.gen.load(entry, u.regions["a"], offsets["d"], u.dtype, "u_ii")
        row = u.gen.load(entry, u.regions["ipiv"], offsets["i"], "int32", "ipiv")
        position = emit(f"trunc i64 {offsets['i']} to i32", "i")
        swapped = emit(f"icmp ne i32 {row}, {emit(f'add i32 {position}, 1', 'row')}", "swapped")
        flip = emit(f"xor i1 {swapped}, {emit(f'fcmp olt {t} {d}, 0.0', 'negative')}", "flip")
        sign = emit(f"load {t}, ptr {sign_slot}", "sign")
        flipped = emit(f"fneg {t} {sign}", "sign")
        entry.do(f"store {t} {emit(f'select i1 {flip}, {t} {flipped}, {t} {sign}', 'sign')}, ptr {sign_slot}")
        log_d = entry.math("log", u.dtype, scalar_ops.fabs(entry, t, d))
        total = emit(f"fadd {t} {emit(f'load {t}, ptr {log_slot}', 'logdet')}, {log_d}", "logdet")
        entry.do(f"store {t} {total}, ptr {log_slot}")

    def body(pointers: list[str]) -> None:
        u.into_columns(pointers[0], a_view, "a")
        u.call("getrf", order, order, u.regions["a"], order, u.regions["ipiv"], u.info)
        u.check("getrf", None)  # info > 0 (singular) is no error: sign 0, log|det| -inf, as NumPy
        entry.do(f"store {t} {scalar_ops.literal(1.0, u.dtype)}, ptr {sign_slot}")
        entry.do(f"store {t} {scalar_ops.literal(0.0, u.dtype)}, ptr {log_slot}")
        u.gen.nest(entry, [n], {"d": [n + 1], "i": [1]}, pivot)
        singular = entry.emit(f"icmp sgt i32 {entry.emit(f'load i32, ptr {u.info}')}, 0", "singular")
        values = [entry.emit(f"load {t}, ptr {slot}") for slot in (sign_slot, log_slot)]
        for index, (value, if_singular) in enumerate(zip(values, (0.0, float("-inf")))):
            chosen = entry.emit(f"select i1 {singular}, {t} {scalar_ops.literal(if_singular, u.dtype)}, {t} {value}")
            u.gen.store(entry, chosen, pointers[1], str(index * last), u.dtype)

    u.each_matrix([a_view, u.result], body)


def _eigh(u: LapackUnit) -> None:
    """eigh (jobz='V': values, then the vectors syevd leaves in a) or eigvalsh (jobz='N').

    eigvalsh copies A as it is (row-major, a straight copy) where eigh transposes it: LAPACK then
    reads Aᵀ, whose other triangle holds the one NumPy reads, so the triangle flag flips; the
    values are those of the same symmetric matrix. (eigh keeps the transposing copy: its vectors
    must come from the very reduction NumPy's path makes, signs included.)
    """
    (a_view,) = u.operands
    n = a_view.shape[-1]
    order, with_vectors = u.integer(n), u.node.op == "eigh"
    lwork, liwork = lapack.syevd_work(n, u.dtype, with_vectors)
    regions = u.regions
    lower = u.node.params["lower"] == with_vectors  # the triangle of what LAPACK reads (Aᵀ for eigvalsh)
    triangle, jobz = u.char("L" if lower else "U"), u.char("V" if with_vectors else "N")
    arguments = (regions["w"], regions["work"], u.integer(lwork), regions["iwork"], u.integer(liwork), u.info)

    def body(pointers: list[str]) -> None:
        (u.into_columns if with_vectors else u.into_rows)(pointers[0], a_view, "a")
        u.call("syevd", jobz, triangle, order, regions["a"], order, *arguments)
        u.check("syevd", EIGH_FAILED)
        u.out_of_vector("w", n, pointers[1])
        if with_vectors:
            u.out_of_columns("a", n, n, pointers[1], first=n)

    u.each_matrix([a_view, u.result], body)


def _svd(u: LapackUnit) -> None:
    """svd (jobz='S': the reduced U and Vᵀ too) or svdvals (jobz='N': u and vt are not referenced).

    svdvals copies A as it is (row-major, a straight copy): LAPACK reads the n×m Aᵀ, whose singular
    values are A's.
    """
    (a_view,) = u.operands
    m, n = a_view.shape[-2:]
    k = min(m, n)
    regions, with_vectors = u.regions, u.node.op == "svd"
    if not with_vectors:
        m, n = n, m  # the shape of Aᵀ
    lwork = lapack.gesdd_work(m, n, u.dtype, with_vectors)
    shape = (u.char("S" if with_vectors else "N"), u.integer(m), u.integer(n), regions["a"], u.integer(m))
    unreferenced = regions["s"]  # jobz='N' reads neither u nor vt; ldu and ldvt must still be >= 1
    u_region, vt_region = (regions["u"], regions["vt"]) if with_vectors else (unreferenced, unreferenced)
    factors = (regions["s"], u_region, u.integer(m), vt_region, u.integer(k if with_vectors else 1))
    work = (regions["work"], u.integer(lwork), regions["iwork"], u.info)

    def body(pointers: list[str]) -> None:
        (u.into_columns if with_vectors else u.into_rows)(pointers[0], a_view, "a")
        u.call("gesdd", *shape, *factors, *work)
        u.check("gesdd", SVD_FAILED, nan_info=-4)  # LAPACK >= 3.10 reports a NaN in A as info = -4
        u.out_of_vector("s", k, pointers[1])
        if with_vectors:
            u.out_of_columns("u", m, k, pointers[1], first=k)
            u.out_of_columns("vt", k, n, pointers[1], first=k + m * k)

    u.each_matrix([a_view, u.result], body)


def _qr(u: LapackUnit) -> None:
    (a_view,) = u.operands
    m, n = a_view.shape[-2:]
    k = min(m, n)
    regions, zero = u.regions, u.real(0.0)
    rows, columns, reflectors = u.integer(m), u.integer(n), u.integer(k)
    everything, upper = u.char("A"), u.char("U")
    work = (regions["work"], u.integer(qr_lwork(m, n, u.dtype)), u.info)

    def body(pointers: list[str]) -> None:
        u.into_columns(pointers[0], a_view, "a")
        u.call("geqrf", rows, columns, regions["a"], rows, regions["tau"], *work)
        u.check("geqrf", None)
        # R: the upper triangle of a's first k rows, zeros below; then a becomes Q
        u.call("laset", everything, reflectors, columns, zero, zero, regions["r"], reflectors)
        u.call("lacpy", upper, reflectors, columns, regions["a"], rows, regions["r"], reflectors)
        u.call("orgqr", rows, reflectors, reflectors, regions["a"], rows, regions["tau"], *work)
        u.check("orgqr", None)
        u.out_of_columns("a", m, k, pointers[1])
        u.out_of_columns("r", k, n, pointers[1], first=m * k)

    u.each_matrix([a_view, u.result], body)


_EMITTERS: dict[str, Callable[[LapackUnit], None]] = {
    "cholesky": _cholesky,
    "solve": _solve,
    "triangular_solve": _triangular_solve,
    "slogdet": _slogdet,
    "eigh": _eigh,
    "eigvalsh": _eigh,
    "svd": _svd,
    "svdvals": _svd,
    "qr": _qr,
}


def _matmul(u: LapackUnit) -> None:
    """A matmul BLAS cannot read as it is (a broadcast or strided operand, mixed dtypes, more batch
    elements than gemm.py unrolls): the operands copied column-major, one gemm per batch element."""
    a_view, b_view, batch = matrices(*u.operands)
    m, k, n = a_view.shape[-2], a_view.shape[-1], b_view.shape[-1]
    out = View(u.result.slot, u.result.offset, batch + (m, n), contiguous_strides(batch + (m, n)), u.dtype)
    u.batch = batch
    plain, one, zero = u.char("N"), u.real(1.0), u.real(0.0)
    sizes = (u.integer(m), u.integer(n), u.integer(k), one)
    operands = (u.regions["a"], u.integer(m), u.regions["b"], u.integer(k), zero, u.regions["c"], u.integer(m))

    def body(pointers: list[str]) -> None:
        u.into_columns(pointers[0], a_view, "a")
        u.into_columns(pointers[1], b_view, "b")
        u.call("gemm", plain, plain, *sizes, *operands)
        u.out_of_columns("c", m, n, pointers[2])

    u.each_matrix([a_view, b_view, out], body)


_EMITTERS["matmul"] = _matmul
_EMITTERS["expm"] = expm.emit_expm
_EMITTERS["expm_frechet"] = expm_frechet.emit_expm_frechet
