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
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.errors import ShapeError
from chainrule.ir import npfuncs
from chainrule.ir.builder import F, Value
from chainrule.ir.ops import LINEAR, Attrs, Op, register
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


def _dft_flops(ins: list[TensorType], out: TensorType, attrs: Attrs) -> int:
    n = out.shape[attrs["axis"]]
    lines = out.size // 2 // max(n, 1)
    return int(5 * n * math.log2(n) * lines) if n > 1 else 0  # the radix-2 count of a complex FFT


def _batch_dft(
    operands: list[Value], batched: list[bool], logical: list[TensorType], out_type: TensorType, attrs: Attrs, size: int
) -> Value:
    return F.dft(operands[0], axis=attrs["axis"] + 1, inverse=attrs["inverse"], scale=attrs["scale"])


register(
    Op(
        "dft",
        "spectral",
        1,
        _infer_dft,
        "dft_of_pairs({0}, axis={axis}, inverse={inverse}, scale={scale})",
        vjp=(_dft_vjp,),
        jvp=LINEAR,
        flops=_dft_flops,
        batch=_batch_dft,
    )
)
