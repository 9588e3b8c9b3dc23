"""The checks of :func:`medfuse.fuse_probabilities` for members read one class channel at a time (private).

Folder fusion (:class:`medfuse.fusion.classwise.ClassMajorMean`, the vote's argmax), the streaming
accumulator (:meth:`medfuse.fusion.ProbabilityAccumulator.add_channel`) and the ensemble search read a
member's class channels one after the other and never hold its ``(C, ...)`` array. They refuse what the
in-memory API refuses, with its tolerances and its wording (:mod:`medfuse.fusion.inputs`):

values
    Every value is checked in the kernel that already reads it: the kernel keeps the largest raw bit
    pattern, and :class:`ChannelChecks` turns a pattern above :func:`range_limit_bits` into the exact
    numpy check of that channel (NaN, infinity, negative values, values above 1: logits).
class sums
    On a fixed sample of :data:`SAMPLE_SIZE` voxels of the member (runs of :data:`SAMPLE_RUN` voxels
    spread over the channel, at offsets that move from run to run, like the in-memory kernel's moving
    sample): each channel adds its values at the sample into one float32 buffer, and once every class
    has been added the voxels whose sum is off 1 by more than :data:`SUM_TOLERANCE` are counted. Memory
    is one buffer of the sample's size per member in flight, whatever the volume.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ValidationError
from .inputs import SUM_TOLERANCE, check_probability_values, raise_for_unnormalised, range_limit_bits

__all__ = ["SAMPLE_RUN", "SAMPLE_SIZE", "ChannelChecks", "channel_max_bits", "sample_positions"]

#: voxels whose class sums are checked per streamed member (4 x 64 KiB of float32 sums at most)
SAMPLE_SIZE = 16384
#: contiguous voxels per sampled run (one 64-byte line of float32)
SAMPLE_RUN = 16
#: voxels per chunk of :func:`channel_max_bits`
_CHUNK = 1 << 16


def sample_positions(n_voxels: int, *, size: int = SAMPLE_SIZE, run: int = SAMPLE_RUN) -> NDArray[np.intp]:
    """Flat positions (increasing) of the class-sum sample of a channel of ``n_voxels`` voxels.

    Every voxel when there are at most ``size``; else ``size // run`` runs of ``run`` voxels, run ``k`` in
    the ``k``-th of as many equal strides, at an offset inside its stride that moves from run to run.
    """
    if n_voxels <= size:
        return np.arange(n_voxels, dtype=np.intp)
    n_runs = max(1, size // run)
    stride = n_voxels // n_runs
    k = np.arange(n_runs, dtype=np.int64)
    starts = k * stride + (k * 40503) % (stride - run + 1)
    return np.asarray((starts[:, None] + np.arange(run)).reshape(-1), dtype=np.intp)


def _bits(channel: NDArray[Any]) -> NDArray[Any]:
    a = np.ascontiguousarray(channel)
    return a.view(np.uint16) if a.dtype == np.float16 else np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def channel_max_bits(channel: NDArray[Any]) -> int:
    """Largest raw bit pattern of a float16 (as uint16) or float32 (as uint32) channel, in one kernel pass."""
    from .._kernels.channelwise import _max_bits
    from .._kernels.threads import n_threads, run_chunked

    flat = _bits(channel).reshape(-1)
    if flat.size == 0:
        return 0
    threads = n_threads()
    out = np.zeros(threads, dtype=np.uint64)
    run_chunked(_max_bits, -(-flat.size // _CHUNK), threads, _CHUNK, flat, out)
    return int(out.max())


class ChannelChecks:
    """The value and class-sum checks of ONE probability member fed one class channel at a time.

    Parameters
    ----------
    num_classes : int
        Classes C of the member; its sums are checked once C distinct classes have been fed.
    subject : str
        How messages name the member, e.g. ``"case 'abc': member '/x/2d/abc.npz'"`` or ``"`members[2]`"``.
    """

    def __init__(self, num_classes: int, subject: str) -> None:
        self.num_classes = int(num_classes)
        self.subject = subject
        self._shape: tuple[int, ...] | None = None
        self._positions: NDArray[np.intp] | None = None
        self._sums: NDArray[np.float32] | None = None
        self._seen = np.zeros(self.num_classes, dtype=bool)

    @property
    def done(self) -> bool:
        """Whether every class has been fed (and the sums were checked)."""
        return bool(self._seen.all())

    def feed(self, c: int, channel: NDArray[Any], *, maxbits: int | None = None) -> None:
        """Check class ``c``'s channel: its values (``maxbits`` from the kernel that read it, else computed
        here) and its share of the sampled class sums; after the last class, the sums.

        Raises
        ------
        ValidationError
            NaN or infinite values, values outside ``[0, 1]``, a channel of another shape than the first,
            a class fed twice, class sums off 1 on the sample.
        """
        if not 0 <= c < self.num_classes or self._seen[c]:
            raise ValidationError(f"{self.subject}: class {c} was given twice or is not in [0, {self.num_classes}).")
        if self._shape is None:
            self._shape = tuple(channel.shape)
            self._positions = sample_positions(channel.size)
            self._sums = np.zeros(self._positions.size, dtype=np.float32)
        elif tuple(channel.shape) != self._shape:
            raise ValidationError(
                f"{self.subject}: class {c} has shape {tuple(channel.shape)}, but class channels before it had "
                f"{self._shape}; every class channel of a member covers the same voxels."
            )
        top = channel_max_bits(channel) if maxbits is None else int(maxbits)
        itemsize = 2 if channel.dtype == np.float16 else 4
        if top > range_limit_bits(itemsize):
            check_probability_values(channel, "", subject=f"{self.subject} class {c}")  # false alarms (-0.0) pass
        sums, positions = self._sums, self._positions
        if sums is None or positions is None:  # pragma: no cover - set with the shape
            raise RuntimeError("sample not initialised")
        sums += np.ravel(channel)[positions].astype(np.float32)  # np.ravel: a view of a contiguous channel
        self._seen[c] = True
        if self.done:
            self._check_sums(sums)

    def _check_sums(self, sums: NDArray[np.float32]) -> None:
        bad = int(np.count_nonzero(~(np.abs(sums - np.float32(1.0)) <= np.float32(SUM_TOLERANCE))))
        if bad:
            raise_for_unnormalised(None, "", bad, int(sums.size), subject=self.subject, sums=sums)
