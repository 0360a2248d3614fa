"""The Fréchet derivative of the matrix exponential in native code: L(A, E), Al-Mohy and Higham's
Algorithm 6.4 (2009, "Computing the Fréchet derivative of the matrix exponential"), the algorithm
of ``scipy.linalg.expm_frechet``, with ``expm.py``'s calls (BLAS gemm/axpy, LAPACK lange) and one
LU (``?getrf``) solved twice (``?getrs``).

It is expm's scaling and squaring differentiated: with Mₖ the derivative of Aᵏ (M₂ = AE + EA,
M₄ = A²M₂ + M₂A², ...), the Padé numerator's parts U, V get derivatives Lu, Lv; R = (V − U)⁻¹(V + U)
and L = (V − U)⁻¹((Lu + Lv) + (Lu − Lv)R); each squaring R ← R² takes L ← RL + LR. That is about
three times expm's work, where expm of the 2n×2n block matrix [[A, E], [0, A]] would be eight.
The degree and s come from ‖A‖₁ alone, with the thetas of Al-Mohy and Higham's Table 6.1, as
SciPy's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainrule.backends.llvm.expm import PADE, PadeCode

if TYPE_CHECKING:
    from chainrule.backends.llvm.lapack_unit import LapackUnit

# Al-Mohy and Higham 2009, Table 6.1 (SciPy's ``ell_table_61``)
THETA = {3: 1.08e-2, 5: 2.00e-1, 7: 7.83e-1, 9: 1.78e0}
THETA_13 = 4.74e0
_MATRICES = (
    *("a", "e", "a2", "a4", "a6", "a8", "m2", "m4", "m6", "m8"),
    *("w1", "w", "z1", "lw1", "lw", "lz1", "u", "v", "lu", "lv", "x", "t", "r", "l"),
)


def workspace(n: int, dtype: str) -> dict[str, tuple[int, str]]:
    """The workspace of one Fréchet derivative of order ``n``: n×n matrices and getrf's pivots."""
    return {**dict.fromkeys(_MATRICES, (n * n, dtype)), "ipiv": (n, "int32")}


def emit_expm_frechet(u: LapackUnit) -> None:
    """``u``'s node (an expm_frechet) as native code, each pair of matrices of its batch in turn."""
    FrechetCode(u, u.operands[0].shape[-1]).emit()


class FrechetCode(PadeCode):
    """expm's code with each step's derivative in direction E alongside (M, Lu, Lv, L)."""

    def emit(self) -> None:
        u, entry, n = self.u, self.entry, self.n
        squarings = entry.alloca("i32", "squarings")
        slots = [entry.alloca("ptr", name) for name in ("expm.r", "expm.r2", "frechet.l", "frechet.l2")]

        def body(pointers: list[str]) -> None:
            u.into_columns(pointers[0], u.operands[0], "a")
            u.into_columns(pointers[1], u.operands[1], "e")
            entry.do(f"store i32 0, ptr {squarings}")
            solve = entry.label("frechet.solve")
            self.branches(solve, squarings, THETA, THETA_13, ("a", "e"))
            entry.place(solve)
            self.rational()
            self.square_both(squarings, slots)
            current = entry.emit(f"load ptr, ptr {slots[2]}", "frechet.l")
            u.copy((current, u.dtype, (1, n)), (pointers[2], u.dtype, (n, 1)), (n, n))

        u.each_matrix([*u.operands, u.result], body)

    def derivative(self, left: str, right: str, d_left: str, d_right: str, target: str) -> None:
        """target = d_left·right + left·d_right: the derivative of left·right."""
        self.gemm(self.r[d_left], self.r[right], self.r[target])
        self.gemm(self.r[left], self.r[d_right], self.r[target], accumulate=True)

    def powers(self, degree: int) -> None:
        """A², A⁴, A⁶, A⁸ and their derivatives M₂ ... M₈ as far as ``degree`` needs them."""
        self.gemm(self.r["a"], self.r["a"], self.r["a2"])
        self.derivative("a", "a", "e", "e", "m2")
        if degree >= 5:
            self.gemm(self.r["a2"], self.r["a2"], self.r["a4"])
            self.derivative("a2", "a2", "m2", "m2", "m4")
        if degree >= 7:
            self.gemm(self.r["a2"], self.r["a4"], self.r["a6"])
            self.derivative("a4", "a2", "m4", "m2", "m6")
        if degree >= 9:
            self.gemm(self.r["a4"], self.r["a4"], self.r["a8"])
            self.derivative("a4", "a4", "m4", "m4", "m8")

    def low_degree(self, degree: int) -> None:
        """U = A·W, V and their derivatives Lu = A·Lw + E·W, Lv (m ≤ 9; SciPy's ``_diff_pade``)."""
        b, r = PADE[degree], self.r
        self.powers(degree)
        self.combination(r["w"], b[1], [(b[k], f"a{k - 1}") for k in range(3, degree + 1, 2)])
        self.gemm(r["a"], r["w"], r["u"])
        self.combination(r["v"], b[0], [(b[k], f"a{k}") for k in range(2, degree, 2)])
        self.combination(r["lw"], 0.0, [(b[k], f"m{k - 1}") for k in range(3, degree + 1, 2)])
        self.gemm(r["a"], r["lw"], r["lu"])
        self.gemm(r["e"], r["w"], r["lu"], accumulate=True)
        self.combination(r["lv"], 0.0, [(b[k], f"m{k}") for k in range(2, degree, 2)])

    def degree_13(self) -> None:
        """The degree-13 U, V, Lu, Lv of the scaled A and E (Al-Mohy and Higham (6.12)-(6.13))."""
        b, r = PADE[13], self.r
        self.powers(7)
        self.combination(r["w1"], 0.0, [(b[13], "a6"), (b[11], "a4"), (b[9], "a2")])
        self.combination(r["w"], b[1], [(b[7], "a6"), (b[5], "a4"), (b[3], "a2")])
        self.gemm(r["a6"], r["w1"], r["w"], accumulate=True)
        self.gemm(r["a"], r["w"], r["u"])
        self.combination(r["z1"], 0.0, [(b[12], "a6"), (b[10], "a4"), (b[8], "a2")])
        self.combination(r["v"], b[0], [(b[6], "a6"), (b[4], "a4"), (b[2], "a2")])
        self.gemm(r["a6"], r["z1"], r["v"], accumulate=True)
        self.combination(r["lw1"], 0.0, [(b[13], "m6"), (b[11], "m4"), (b[9], "m2")])
        self.combination(r["lw"], 0.0, [(b[7], "m6"), (b[5], "m4"), (b[3], "m2")])
        self.gemm(r["a6"], r["lw1"], r["lw"], accumulate=True)
        self.gemm(r["m6"], r["w1"], r["lw"], accumulate=True)
        self.gemm(r["a"], r["lw"], r["lu"])
        self.gemm(r["e"], r["w"], r["lu"], accumulate=True)
        self.combination(r["lz1"], 0.0, [(b[12], "m6"), (b[10], "m4"), (b[8], "m2")])
        self.combination(r["lv"], 0.0, [(b[6], "m6"), (b[4], "m4"), (b[2], "m2")])
        self.gemm(r["a6"], r["lz1"], r["lv"], accumulate=True)
        self.gemm(r["m6"], r["z1"], r["lv"], accumulate=True)

    def rational(self) -> None:
        """R = Q⁻¹P and L = Q⁻¹((Lu + Lv) + (Lu − Lv)R), Q = V − U, P = V + U: R in v, L in lu."""
        u, r, n, one = self.u, self.r, self.order, self.step
        u.call("copy", self.elements, r["v"], one, r["x"], one)
        u.call("axpy", self.elements, u.real(-1.0), r["u"], one, r["x"], one)
        u.call("axpy", self.elements, u.real(1.0), r["u"], one, r["v"], one)
        u.call("getrf", n, n, r["x"], n, r["ipiv"], u.info)
        u.check("getrf", None)  # Q is singular only for a non-finite A: the result is then NaN
        u.call("getrs", self.plain, n, n, r["x"], n, r["ipiv"], r["v"], n, u.info)
        u.check("getrs", None)
        u.call("copy", self.elements, r["lu"], one, r["t"], one)
        u.call("axpy", self.elements, u.real(-1.0), r["lv"], one, r["t"], one)
        u.call("axpy", self.elements, u.real(1.0), r["lv"], one, r["lu"], one)
        self.gemm(r["t"], r["v"], r["lu"], accumulate=True)
        u.call("getrs", self.plain, n, n, r["x"], n, r["ipiv"], r["lu"], n, u.info)
        u.check("getrs", None)

    def square_both(self, squarings: str, slots: list[str]) -> None:
        """``squarings`` times L ← RL + LR, R ← R²; ``slots``: R, its spare, L, its spare."""
        entry, r = self.entry, self.r
        for slot, region in zip(slots, ("v", "r", "lu", "l")):
            entry.do(f"store ptr {r[region]}, ptr {slot}")
        remaining = entry.alloca("i32", "frechet.remaining")
        entry.do(f"store i32 {entry.emit(f'load i32, ptr {squarings}', 's')}, ptr {remaining}")
        test, step, done = entry.label("frechet.square"), entry.label("frechet.squaring"), entry.label("frechet.done")
        entry.do(f"br label %{test}")
        entry.place(test)
        left = entry.emit(f"load i32, ptr {remaining}", "left")
        entry.do(f"br i1 {entry.emit(f'icmp sgt i32 {left}, 0', 'more')}, label %{step}, label %{done}")
        entry.place(step)
        rr, r_spare, ll, l_spare = (entry.emit(f"load ptr, ptr {slot}", "p") for slot in slots)
        self.gemm(rr, ll, l_spare)
        self.gemm(ll, rr, l_spare, accumulate=True)
        self.gemm(rr, rr, r_spare)
        for slot, pointer in zip(slots, (r_spare, rr, l_spare, ll)):
            entry.do(f"store ptr {pointer}, ptr {slot}")
        entry.do(f"store i32 {entry.emit(f'sub i32 {left}, 1', 'left')}, ptr {remaining}")
        entry.do(f"br label %{test}")
        entry.place(done)
