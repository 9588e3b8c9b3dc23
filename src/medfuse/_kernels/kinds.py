"""How a fusion kernel reads a member: its element kind (numba-free, so that :mod:`medfuse.fusion` can
describe members without loading numba)."""

from __future__ import annotations

__all__ = ["KIND_F16", "KIND_F32", "KIND_U8", "KIND_U16", "ONE_BITS"]

#: member kinds (the ``kinds`` array of the fusion kernel):
#: float16 probabilities, float32 probabilities, uint8 labels, uint16 labels
KIND_F16, KIND_F32, KIND_U8, KIND_U16 = 0, 1, 2, 3

#: bit pattern of 1.0 per bit width: a value ``v`` of that float type lies in ``[+0, 1]`` and is finite
#: exactly when ``bits(v) <= ONE_BITS[width]`` (negative zero excepted, which has the sign bit set).
ONE_BITS = {16: 0x3C00, 32: 0x3F800000}
