"""The discrete Fourier transform of complex values held as (real, imaginary) pairs: ``dft``.

The IR is real: a complex array of shape ``s`` is a float array of shape ``s + (2,)``, its real
parts at ``[..., 0]`` and imaginary parts at ``[..., 1]`` (``chainrule.frontends.complex_values``
builds those pairs; ``np.fft``'s functions are written with this one primitive in
``chainrule.frontends.numpy_fft``). ``dft`` is the transform along one axis, scaled:

    y_k = scale · Σ_j x_j · exp(∓2πi·jk/n)      (− forward, + inverse)

computed by NumPy's pocketfft in O(n log n). As a real linear map it is self-adjoint up to the
sign of the exponent: the DFT matrix W is symmetric, and the real form of multiplying by W has
for transpose the real form of multiplying by W's conjugate transpose, conj(W). So the VJP of
a forward transform is the unscaled-inverse transform with the same scale, and the JVP is the op
itself (linear). Derivatives of any order follow, in both modes.

Real signals have two primitives of their own, NumPy's half-spectrum transforms, so that a real
program does the work ``np.fft.rfft`` and ``np.fft.irfft`` do by hand (half of a complex FFT):

- ``rdft``: a real array to the pairs of its first ``n // 2 + 1`` DFT values (``rfft``, scaled);
- ``irdft``: those pairs to the real signal of ``n`` points whose spectrum they are (``irfft``,
  scaled: the bins between 0 and n/2 stand for their conjugate mirror images too).

They are each other's transposes up to a weight per bin: ``irdft`` counts each middle bin twice,
so the VJP of ``rdft`` is ``irdft`` of the cotangent with its middle bins halved, and the VJP of
``irdft`` is ``rdft`` of the cotangent with its middle bins doubled.
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.errors import ShapeError
from chainrule.ir import npfuncs
from chainrule.ir.builder import F, Value
from chainrule.ir.ops import LINEAR, Attrs, Op, register
from chainrule.ir.scans import batch_along_next_axis
from chainrule.ir.types import TensorType


def dft_of_pairs(pairs: np.ndarray, axis: int, inverse: bool, scale: float) -> np.ndarray:
    """The ``dft`` op on concrete (real, imaginary) pairs: NumPy's FFT of the complex values, scaled."""
    complex_dtype = np.complex64 if pairs.dtype == np.float32 else np.complex128
    values = np.ascontiguousarray(pairs).view(complex_dtype)[..., 0]
    # norm="forward" leaves the inverse unscaled (and "backward" the forward): the op's scale is its own
    transformed = np.fft.ifft(values, axis=axis, norm="forward") if inverse else np.fft.fft(values, axis=axis)
    if scale != 1.0:
        transformed *= scale
    transformed = np.asarray(transformed, dtype=complex_dtype)
    return transformed.view(pairs.dtype).reshape(transformed.shape + (2,))


npfuncs.NAMESPACE.setdefault("dft_of_pairs", dft_of_pairs)


def rdft_of_reals(x: np.ndarray, axis: int, scale: float) -> np.ndarray:
    """The ``rdft`` op on concrete values: NumPy's rfft, scaled, as (real, imaginary) pairs."""
    transformed = np.fft.rfft(x, axis=axis)
    if scale != 1.0:
        transformed *= scale
    complex_dtype = np.complex64 if x.dtype == np.float32 else np.complex128
    transformed = np.ascontiguousarray(transformed, dtype=complex_dtype)
    return transformed.view(x.dtype).reshape(transformed.shape + (2,))


def irdft_of_pairs(pairs: np.ndarray, axis: int, n: int, scale: float) -> np.ndarray:
    """The ``irdft`` op on concrete pairs: NumPy's unscaled irfft to ``n`` points, times ``scale``."""
    complex_dtype = np.complex64 if pairs.dtype == np.float32 else np.complex128
    values = np.ascontiguousarray(pairs).view(complex_dtype)[..., 0]
    signal = np.fft.irfft(values, n=n, axis=axis, norm="forward")
    if scale != 1.0:
        signal *= scale
    return np.asarray(signal, dtype=pairs.dtype)


npfuncs.NAMESPACE.setdefault("rdft_of_reals", rdft_of_reals)
npfuncs.NAMESPACE.setdefault("irdft_of_pairs", irdft_of_pairs)


def _infer_dft(types: list[TensorType], attrs: Attrs) -> TensorType:
    pairs = types[0]
    if np.dtype(pairs.dtype).kind != "f" or pairs.ndim < 2 or pairs.shape[-1] != 2:
        raise ShapeError(
            f"dft takes float (real, imaginary) pairs, shape [..., 2], got {pairs.dtype}{list(pairs.shape)}"
        )
    if not 0 <= attrs["axis"] < pairs.ndim - 1:
        raise ShapeError(f"dft axis {attrs['axis']} does not fit pairs of shape {list(pairs.shape)}")
    return TensorType(pairs.shape, pairs.dtype)


def _dft_vjp(g: Value, y: Value, pairs: Value, axis: int, inverse: bool, scale: float) -> Value:
    return F.dft(g, axis=axis, inverse=not inverse, scale=scale)  # the transpose: conj(W) = W^H


def _fft_flops(shape: tuple[int, ...], axis: int) -> int:
    """The radix-2 count of complex FFTs of ``shape``'s lines along ``axis``: 5 n log2(n) each."""
    n = shape[axis]
    return int(5 * n * math.log2(n) * (math.prod(shape) // n)) if n > 1 else 0


def middle_bin_weights(pairs: Value, axis: int, n: int, middle: float) -> Value:
    """``pairs`` (a half spectrum of ``n`` points along ``axis``) with the bins strictly between
    0 and n/2 multiplied by ``middle``."""
    weights = np.ones(pairs.shape[axis], dtype=pairs.dtype)
    weights[1 : (n + 1) // 2] = middle
    return pairs * weights.reshape([-1 if i == axis else 1 for i in range(pairs.ndim)])


def _infer_rdft(types: list[TensorType], attrs: Attrs) -> TensorType:
    x = types[0]
    if np.dtype(x.dtype).kind != "f" or not 0 <= attrs["axis"] < x.ndim:
        raise ShapeError(
            f"rdft takes a float array and one of its axes, got {x.dtype}{list(x.shape)}, axis {attrs['axis']}"
        )
    shape = list(x.shape)
    shape[attrs["axis"]] = shape[attrs["axis"]] // 2 + 1
    return TensorType((*shape, 2), x.dtype)


def _infer_irdft(types: list[TensorType], attrs: Attrs) -> TensorType:
    pairs, axis, n = types[0], attrs["axis"], attrs["n"]
    _infer_dft(types, {"axis": axis})
    if pairs.shape[axis] != n // 2 + 1:
        raise ShapeError(f"irdft to {n} points takes {n // 2 + 1} bins along axis {axis}, got {list(pairs.shape)}")
    shape = list(pairs.shape[:-1])
    shape[axis] = n
    return TensorType(tuple(shape), pairs.dtype)


def _rdft_vjp(g: Value, y: Value, x: Value, axis: int, scale: float) -> Value:
    n = x.shape[axis]
    return F.irdft(middle_bin_weights(g, axis, n, 0.5), axis=axis, n=n, scale=scale)


def _irdft_vjp(g: Value, y: Value, pairs: Value, axis: int, n: int, scale: float) -> Value:
    return middle_bin_weights(F.rdft(g, axis=axis, scale=scale), axis, n, 2.0)


register(
    Op(
        "rdft",
        "spectral",
        1,
        _infer_rdft,
        "rdft_of_reals({0}, axis={axis}, scale={scale})",
        vjp=(_rdft_vjp,),
        jvp=LINEAR,
        flops=lambda ins, out, attrs: _fft_flops(ins[0].shape, attrs["axis"]) // 2,
        batch=batch_along_next_axis("rdft"),
    )
)
register(
    Op(
        "irdft",
        "spectral",
        1,
        _infer_irdft,
        "irdft_of_pairs({0}, axis={axis}, n={n}, scale={scale})",
        vjp=(_irdft_vjp,),
        jvp=LINEAR,
        flops=lambda ins, out, attrs: _fft_flops(out.shape, attrs["axis"]) // 2,
        batch=batch_along_next_axis("irdft"),
    )
)
register(
    Op(
        "dft",
        "spectral",
        1,
        _infer_dft,
        "dft_of_pairs({0}, axis={axis}, inverse={inverse}, scale={scale})",
        vjp=(_dft_vjp,),
        jvp=LINEAR,
        flops=lambda ins, out, attrs: _fft_flops(out.shape[:-1], attrs["axis"]),
        batch=batch_along_next_axis("dft"),
    )
)
