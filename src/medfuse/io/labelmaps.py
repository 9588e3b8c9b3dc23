"""Label maps as every reader takes them (fuse, evaluate, search), and the checked argmax of a stored member.

* :func:`label_map_from_file` — the ONE rule for a label map read from a file: integer pixel types are
  label maps; a float map is accepted only when every value is a finite whole number in 0..65535 (then
  cast exactly), otherwise a :class:`~medfuse.errors.FormatError` names the file, the case and the first
  offending value.
* :func:`streamed_argmax` — the argmax of a stored probability member read one class channel at a time,
  with the checks of :func:`medfuse.fuse_probabilities` riding in the argmax kernel's pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import FormatError
from .nifti import label_dtype
from .npz import NpzMember

__all__ = ["label_map_from_file", "streamed_argmax"]

#: voxels per chunk of the argmax kernel
_CHUNK = 1 << 15
#: largest label a label map may hold (written as uint16)
_LIMIT = int(np.iinfo(np.uint16).max)


def label_map_from_file(array: NDArray[Any], *, source: str, case: str | None = None) -> NDArray[Any]:
    """``array`` (read from ``source``) as a uint8/uint16 label map, or FormatError naming file and case.

    Parameters
    ----------
    array : ndarray
        The voxels as read from the file.
    source : str
        The file (for messages).
    case : str, optional
        The case (for messages).
    """
    where = f"case {case!r}: " if case is not None else ""
    if array.dtype in (np.uint8, np.uint16):
        return array
    if array.dtype == np.bool_:
        return array.view(np.uint8)
    if array.dtype.kind not in "iuf":
        raise FormatError(f"{where}{source!r} has pixel type {array.dtype}; a label map must be integer "
                          "(or float holding whole numbers).")
    if array.size == 0:
        return array.astype(np.uint8)
    with np.errstate(invalid="ignore"):
        if array.dtype.kind == "f":
            bad = ~np.isfinite(array) | (array != np.round(array)) | (array < 0) | (array > _LIMIT)
        else:
            bad = (array < 0) | (array > _LIMIT)
    if bad.any():
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad.reshape(-1))), array.shape))
        what = "whole numbers in 0..65535" if array.dtype.kind == "f" else "labels in 0..65535"
        raise FormatError(
            f"{where}{source!r} is not a label map: {int(np.count_nonzero(bad))} of its values are not {what} "
            f"(pixel type {array.dtype}); the first is {array[index].item()!r} at voxel {index}. Write label "
            "maps with an integer pixel type (uint8), or round / remap the values."
        )
    return array.astype(label_dtype(int(array.max())))


def streamed_argmax(member: NpzMember, *, subject: str) -> NDArray[Any]:
    """Argmax over the class channels of a stored ``(C, ...)`` member (ties to the lowest class), read one
    channel at a time, uint8 (uint16 beyond 256 classes), over the stored array's spatial shape.

    Every value is checked in the argmax pass, the class sums on a sample (:mod:`medfuse.fusion.checks`);
    errors start with ``subject``.

    Raises
    ------
    ValidationError
        NaN, infinity, values outside [0, 1] (logits), class sums off 1.
    """
    from .._kernels.channelwise import _argmax_bits
    from .._kernels.threads import n_threads, run_chunked
    from ..fusion.checks import ChannelChecks

    n_classes = member.shape[0]
    labels = np.zeros(member.shape[1:], dtype=label_dtype(n_classes - 1))
    best = np.empty(member.shape[1:], dtype=np.float32)
    checks = ChannelChecks(n_classes, subject)
    threads = n_threads()
    for c, channel in member.iter_channels():
        a = np.ascontiguousarray(channel if channel.dtype == np.float16 else channel.astype(np.float32, copy=False))
        bits = a.view(np.uint16 if a.dtype == np.float16 else np.uint32).reshape(-1)
        maxbits = np.zeros(threads, dtype=np.uint64)
        run_chunked(_argmax_bits, -(-bits.size // _CHUNK), threads, _CHUNK, bits, c, best.reshape(-1),
                    labels.reshape(-1), maxbits)
        checks.feed(c, a, maxbits=int(maxbits.max()))
    return labels
