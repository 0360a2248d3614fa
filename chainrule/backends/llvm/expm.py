"""The matrix exponential in native code: scaling and squaring with a Padé approximant (Higham 2005,
"The scaling and squaring method for the matrix exponential revisited", Algorithm 2.3), its matrix
products BLAS ``?gemm``, its sums BLAS ``?axpy``, its solve LAPACK ``?gesv``, its 1-norm LAPACK
``?lange``: the routines SciPy's ``cython_blas``/``cython_lapack`` export, as ``lapack_ops.py`` calls.

Per matrix of the batch (copied column-major into the workspace, as ``lapack_ops`` does):

- ``‖A‖₁`` picks the Padé degree m ∈ {3, 5, 7, 9, 13} at run time (the branches below, one per m);
  past θ₁₃ the matrix is scaled by 2⁻ˢ with s = ⌈log₂(‖A‖₁/θ₁₃)⌉, a native loop;
- U = A·Σ b_{odd} A^{k-1}, V = Σ b_{even} A^k (degree 13: the A⁶-factored form), R = (V − U)⁻¹(V + U);
- R is squared s times (a native loop), then copied out row-major.

SciPy's ``expm`` is Al-Mohy and Higham's 2009 refinement of the same method: it picks m and s from
norms of A⁴, A⁶, A⁸, A¹⁰ and a backward-error bound, so it sometimes takes one squaring fewer.
Both are backward stable to the unit roundoff; on well-conditioned matrices they agree to about
1e-14 relative. The thetas are double precision's, for float32 too (as SciPy does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainrule.backends.llvm import lapack, scalar_ops

if TYPE_CHECKING:
    from chainrule.backends.llvm.lapack_unit import LapackUnit

# Higham 2005, Table 2.3: the largest ‖A‖₁ for which the degree-m Padé approximant is accurate to
# the double unit roundoff
THETA = {3: 1.495585217958292e-2, 5: 2.539398330063230e-1, 7: 9.504178996162932e-1, 9: 2.097847961257068e0}
THETA_13 = 5.371920351148152e0
# the coefficients b₀ ... b_m of the degree-m Padé numerator (Higham 2005, (2.1))
PADE = {
    3: (120.0, 60.0, 12.0, 1.0),
    5: (30240.0, 15120.0, 3360.0, 420.0, 30.0, 1.0),
    7: (17297280.0, 8648640.0, 1995840.0, 277200.0, 25200.0, 1512.0, 56.0, 1.0),
    9: (17643225600.0, 8821612800.0, 2075673600.0, 302702400.0, 30270240.0, 2162160.0, 110880.0, 3960.0, 90.0, 1.0),
    13: (
        64764752532480000.0,
        32382376266240000.0,
        7771770303897600.0,
        1187353796428800.0,
        129060195264000.0,
        10559470521600.0,
        670442572800.0,
        33522128640.0,
        1323241920.0,
        40840800.0,
        960960.0,
        16380.0,
        182.0,
        1.0,
    ),
}
# at most this many squarings: ‖A‖₁ ≤ 1.8e308 needs 1022; an infinite norm stops here (NaN results)
MAX_SQUARINGS = 1100
_MATRICES = ("a", "a2", "a4", "a6", "a8", "x", "y", "u", "v", "r")


def workspace(n: int, dtype: str) -> dict[str, tuple[int, str]]:
    """The workspace of one expm of order ``n``: ten n×n matrices and gesv's pivots."""
    return {**dict.fromkeys(_MATRICES, (n * n, dtype)), "ipiv": (n, "int32")}


def emit_expm(u: LapackUnit) -> None:
    """``u``'s node (an expm) as native code, each matrix of its batch in turn."""
    PadeCode(u, u.operands[0].shape[-1]).emit()


class PadeCode:
    """The code of one expm node: BLAS/LAPACK calls on workspace regions, branches and loops
    (``expm_frechet.py`` extends it to the Fréchet derivative)."""

    def __init__(self, u: LapackUnit, n: int):
        self.u, self.entry, self.n = u, u.entry, n
        self.order, self.elements, self.step = u.integer(n), u.integer(n * n), u.integer(1)
        self.plain, self.everything = u.char("N"), u.char("A")
        self.r = u.regions
        # Argument slots are stored where first asked for and shared by the kernel's later calls:
        # ask for every one here, ahead of the branches, so each is stored on every path.
        u.char("1")
        for value in {0.0, 1.0, -1.0, *(c for coefficients in PADE.values() for c in coefficients)}:
            u.real(value)

    def emit(self) -> None:
        u, entry, n = self.u, self.entry, self.n
        squarings = entry.alloca("i32", "squarings")
        result = entry.alloca("ptr", "expm.result")
        other = entry.alloca("ptr", "expm.other")

        def body(pointers: list[str]) -> None:
            u.into_columns(pointers[0], u.operands[0], "a")
            entry.do(f"store i32 0, ptr {squarings}")
            solve = entry.label("expm.solve")
            self.pick_degree(solve, squarings)
            entry.place(solve)
            self.rational()
            self.square(squarings, result, other)
            current = entry.emit(f"load ptr, ptr {result}", "expm.r")
            u.copy((current, u.dtype, (1, n)), (pointers[1], u.dtype, (n, 1)), (n, n))

        u.each_matrix([u.operands[0], u.result], body)

    # ---- calls ----------------------------------------------------------------------------------

    def gemm(self, x: str, y: str, z: str, accumulate: bool = False) -> None:
        """z = x·y (or z += x·y), n×n column-major."""
        u, order = self.u, self.order
        beta = u.real(1.0 if accumulate else 0.0)
        u.call("gemm", self.plain, self.plain, order, order, order, u.real(1.0), x, order, y, order, beta, z, order)

    def combination(self, target: str, identity: float, terms: list[tuple[float, str]]) -> None:
        """target = identity·I + Σ c·X over (c, region name) ``terms``."""
        u = self.u
        u.call("laset", self.everything, self.order, self.order, u.real(0.0), u.real(identity), target, self.order)
        for coefficient, name in terms:
            u.call("axpy", self.elements, u.real(coefficient), self.r[name], self.step, target, self.step)

    def norm(self) -> str:
        """‖A‖₁ of the workspace's A (lange's '1' norm reads no work array)."""
        u = self.u
        u.entry.declare(lapack.declaration("lange", u.dtype))
        arguments = ", ".join(f"ptr {a}" for a in (u.char("1"), self.order, self.order, self.r["a"], self.order))
        symbol = lapack.symbol("lange", u.dtype)
        return u.entry.emit(f"call {u.t} @{symbol}({arguments}, ptr {self.r['ipiv']})", "norm")

    # ---- the algorithm --------------------------------------------------------------------------

    def pick_degree(self, solve: str, squarings: str) -> None:
        """Branch on ‖A‖₁ to the Padé degree that suffices; each branch leaves U in u, V in v and
        goes to ``solve``. Degree 13 first scales A by 2⁻ˢ (``squarings`` holds s)."""
        self.branches(solve, squarings, THETA, THETA_13, ("a",))

    def branches(
        self, solve: str, squarings: str, thetas: dict[int, float], theta_13: float, scaled: tuple[str, ...]
    ) -> None:
        """Branch on ‖A‖₁ ≤ ``thetas[m]`` to ``low_degree(m)``, else scale the ``scaled`` regions
        by 2⁻ˢ so that ‖2⁻ˢA‖₁ ≤ ``theta_13`` and run ``degree_13()``; then go to ``solve``."""
        u, entry = self.u, self.entry
        norm = self.norm()
        for degree, theta in thetas.items():
            chosen, next_test = entry.label(f"expm.pade{degree}"), entry.label("expm.test")
            small = entry.emit(f"fcmp ole {u.t} {norm}, {scalar_ops.literal(theta, u.dtype)}", "small")
            entry.do(f"br i1 {small}, label %{chosen}, label %{next_test}")
            entry.place(chosen)
            self.low_degree(degree)
            entry.do(f"br label %{solve}")
            entry.place(next_test)
        self.scale(norm, squarings, theta_13, scaled)
        self.degree_13()
        entry.do(f"br label %{solve}")

    def powers(self, degree: int) -> None:
        """A², A⁴, A⁶, A⁸ as far as ``degree`` needs them."""
        self.gemm(self.r["a"], self.r["a"], self.r["a2"])
        if degree >= 5:
            self.gemm(self.r["a2"], self.r["a2"], self.r["a4"])
        if degree >= 7:
            self.gemm(self.r["a4"], self.r["a2"], self.r["a6"])
        if degree >= 9:
            self.gemm(self.r["a4"], self.r["a4"], self.r["a8"])

    def low_degree(self, degree: int) -> None:
        """U = A·(b_m A^{m-1} + ... + b₁ I), V = b_{m-1} A^{m-1} + ... + b₀ I (m ≤ 9)."""
        b = PADE[degree]
        self.powers(degree)
        odd = [(b[k], f"a{k - 1}") for k in range(3, degree + 1, 2)]
        even = [(b[k], f"a{k}") for k in range(2, degree, 2)]
        self.combination(self.r["x"], b[1], odd)
        self.gemm(self.r["a"], self.r["x"], self.r["u"])
        self.combination(self.r["v"], b[0], even)

    def degree_13(self) -> None:
        """U = A·(A⁶(b₁₃A⁶ + b₁₁A⁴ + b₉A²) + b₇A⁶ + b₅A⁴ + b₃A² + b₁I) and V likewise (Higham (2.3))."""
        b, r = PADE[13], self.r
        self.powers(7)
        self.combination(r["y"], 0.0, [(b[13], "a6"), (b[11], "a4"), (b[9], "a2")])
        self.combination(r["x"], b[1], [(b[7], "a6"), (b[5], "a4"), (b[3], "a2")])
        self.gemm(r["a6"], r["y"], r["x"], accumulate=True)
        self.gemm(r["a"], r["x"], r["u"])
        self.combination(r["y"], 0.0, [(b[12], "a6"), (b[10], "a4"), (b[8], "a2")])
        self.combination(r["v"], b[0], [(b[6], "a6"), (b[4], "a4"), (b[2], "a2")])
        self.gemm(r["a6"], r["y"], r["v"], accumulate=True)

    def scale(self, norm: str, squarings: str, theta_13: float, scaled: tuple[str, ...]) -> None:
        """s = ⌈log₂(‖A‖₁/θ₁₃)⌉ (0 when ‖A‖₁ ≤ θ₁₃), by halving until ≤ θ₁₃; then each ``scaled``
        region X ← 2⁻ˢX (exact)."""
        u, entry, t = self.u, self.entry, self.u.t
        factor = entry.alloca(t, "expm.factor")
        size = entry.alloca(t, "expm.size")
        entry.do(f"store {t} {scalar_ops.literal(1.0, u.dtype)}, ptr {factor}")
        entry.do(f"store {t} {norm}, ptr {size}")
        test, halve, done = entry.label("expm.scale"), entry.label("expm.halve"), entry.label("expm.scaled")
        entry.do(f"br label %{test}")
        entry.place(test)
        current = entry.emit(f"load {t}, ptr {size}", "size")
        count = entry.emit(f"load i32, ptr {squarings}", "s")
        large = entry.emit(f"fcmp ogt {t} {current}, {scalar_ops.literal(theta_13, u.dtype)}", "large")
        room = entry.emit(f"icmp slt i32 {count}, {MAX_SQUARINGS}", "room")
        entry.do(f"br i1 {entry.emit(f'and i1 {large}, {room}')}, label %{halve}, label %{done}")
        entry.place(halve)
        half = scalar_ops.literal(0.5, u.dtype)
        entry.do(f"store {t} {entry.emit(f'fmul {t} {current}, {half}', 'size')}, ptr {size}")
        halved = entry.emit(f"fmul {t} {entry.emit(f'load {t}, ptr {factor}')}, {half}", "factor")
        entry.do(f"store {t} {halved}, ptr {factor}")
        entry.do(f"store i32 {entry.emit(f'add i32 {count}, 1', 's')}, ptr {squarings}")
        entry.do(f"br label %{test}")
        entry.place(done)
        for name in scaled:
            u.call("scal", self.elements, factor, self.r[name], self.step)

    def rational(self) -> None:
        """R = (V − U)⁻¹(V + U): Q = V − U in x, P = V + U in v, gesv leaves R in v."""
        u, r = self.u, self.r
        u.call("copy", self.elements, r["v"], self.step, r["x"], self.step)
        u.call("axpy", self.elements, u.real(-1.0), r["u"], self.step, r["x"], self.step)
        u.call("axpy", self.elements, u.real(1.0), r["u"], self.step, r["v"], self.step)
        u.call("gesv", self.order, self.order, r["x"], self.order, r["ipiv"], r["v"], self.order, u.info)
        u.check("gesv", None)  # Q is singular only for a non-finite A: the result is then NaN

    def square(self, squarings: str, result: str, other: str) -> None:
        """R ← R² ``squarings`` times, alternating between v and r; ``result`` points to the last."""
        entry = self.entry
        entry.do(f"store ptr {self.r['v']}, ptr {result}")
        entry.do(f"store ptr {self.r['r']}, ptr {other}")
        remaining = entry.alloca("i32", "expm.remaining")
        entry.do(f"store i32 {entry.emit(f'load i32, ptr {squarings}', 's')}, ptr {remaining}")
        test, step, done = entry.label("expm.square"), entry.label("expm.squaring"), entry.label("expm.squared")
        entry.do(f"br label %{test}")
        entry.place(test)
        left = entry.emit(f"load i32, ptr {remaining}", "left")
        entry.do(f"br i1 {entry.emit(f'icmp sgt i32 {left}, 0', 'more')}, label %{step}, label %{done}")
        entry.place(step)
        source, target = (entry.emit(f"load ptr, ptr {slot}", name) for slot, name in ((result, "r"), (other, "r2")))
        self.gemm(source, source, target)
        entry.do(f"store ptr {target}, ptr {result}")
        entry.do(f"store ptr {source}, ptr {other}")
        entry.do(f"store i32 {entry.emit(f'sub i32 {left}, 1', 'left')}, ptr {remaining}")
        entry.do(f"br label %{test}")
        entry.place(done)
