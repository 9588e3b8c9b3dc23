"""Streaming accumulators for folder-scale fusion (public through :mod:`medfuse.fusion`).

Members are added one at a time (a probability member also one class channel at a time, as the npz
readers stream them); the result is read at the end. Memory is the running sums, whatever the number of
members: ``C x voxels`` float32 for :class:`ProbabilityAccumulator`, ``C x voxels`` uint8 counts (uint16,
then float32 when the total weight needs it; plus a uint16 table for ``tie="first"``) for
:class:`VoteAccumulator`. With ``uncertainty=True`` both also keep what :meth:`~ProbabilityAccumulator.uncertainty`
needs: 1 byte a voxel per member (see :mod:`.uncertainty_stream`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.labels import label_dtype
from .._core.validation import as_int, describe
from ..errors import ValidationError
from ..geometry import Box, outside_box, validate_box
from .boxes import _ROW_TARGET, _as_num_classes, _as_shape, _box_rows, _float_source, _Grid, _labels_checked
from .checks import ChannelChecks
from .inputs import (
    SUM_TOLERANCE,
    check_probability_values,
    raise_for_unnormalised,
    range_limit_bits,
)
from .run import (
    DEFAULT_EPS,
    Space,
    TieRule,
    _run_fusion,
    _tie_code,
    _undecided_label,
    check_space,
    log_table,
    softmax_in_place,
)
from .uncertainty import UncertaintyMaps

__all__ = ["ProbabilityAccumulator", "VoteAccumulator"]

#: class sums are checked on every _CHECK_EVERY-th row of a member added with :meth:`ProbabilityAccumulator.add`
_CHECK_EVERY = 16


class ProbabilityAccumulator(_Grid):
    """Weighted mean of class probabilities, accumulated one member (or one class channel) at a time.

    Parameters
    ----------
    num_classes : int
        Number of classes C.
    shape : tuple of int
        Spatial shape of the volume, e.g. ``(Z, Y, X)``.
    space : {"probability", "log"}, default "probability"
        Accumulate the probabilities, or ``log(max(p, eps))`` (as :func:`~medfuse.fusion.fuse_probabilities`
        does in log space; a hard member and the background outside a box count as one-hot
        probabilities). In log space :meth:`probabilities` is the normalised weighted geometric mean
        (softmax over classes of the weighted mean of the logs) and :meth:`labels` its argmax.
    eps : float, default 1e-6
        Log space only: probabilities are clamped to ``eps`` before their log.
    uncertainty : bool, default False
        Also keep what :meth:`uncertainty` needs: each member's argmax (1 byte a voxel per member), a running
        float32 map of the member entropies, and in log space the linear sums (``C x voxels`` float32).

    Notes
    -----
    Holds float32 sums ``(C, *shape)`` and per-class weight totals. :meth:`probabilities` is
    ``sums[c] * float32(1 / weight_totals[c])``; :meth:`labels` is its argmax (ties: lowest class), so
    ``labels() == probabilities().argmax(0)`` exactly. Compared with :func:`~medfuse.fusion.average_probabilities`
    on the same members, values may differ in the last float32 bit (the weights are not known in
    advance, so the normalisation comes last).

    A probability member is checked as in :func:`~medfuse.fusion.fuse_probabilities` (range of every
    value; class sums on every 16th row when added with :meth:`add`, on a fixed sample of voxels when
    added with :meth:`add_channel`, once the member's last class is in). The check runs while the member
    is added: if it fails, the sums hold part of the bad member, and the accumulator refuses further use.
    Label maps are checked before anything is added.

    Examples
    --------
    >>> acc = ProbabilityAccumulator(3, (4, 5, 6))
    >>> for member in members:                                   # doctest: +SKIP
    ...     acc.add(member, weight=1.0)
    >>> labels = acc.labels()                                    # doctest: +SKIP
    """

    def __init__(self, num_classes: int, shape: Sequence[int], *, space: Space = "probability",
                 eps: float = DEFAULT_EPS, uncertainty: bool = False) -> None:
        self._n_classes = _as_num_classes(num_classes)
        self._shape = _as_shape(shape)
        self._log, self._eps = check_space(space, eps)
        self._unc = self._tracker(uncertainty, linear_sums=self._log)
        self._space: Space = "log" if self._log else "probability"
        #: in log space, what a one-hot probability of 0 adds (times the weight): log(eps)
        self._cold = float(np.log(self._eps)) if self._log else 0.0
        self._sums = np.zeros((self._n_classes, *self._shape), dtype=np.float32)
        self._totals = np.zeros(self._n_classes, dtype=np.float64)
        self._n_added = 0
        self._channel_adds = np.zeros(self._n_classes, dtype=np.int64)
        self._channel_checks: dict[int, ChannelChecks] = {}  # members being added channel by channel
        self._broken: str | None = None

    # ---------------------------------------------------------------- properties
    @property
    def space(self) -> Space:
        """``"probability"`` or ``"log"``."""
        return self._space

    @property
    def weight_totals(self) -> NDArray[np.float64]:
        """Total weight added per class, shape (C,)."""
        totals: NDArray[np.float64] = self._totals.copy()
        return totals

    @property
    def num_members(self) -> int:
        """Members added with :meth:`add`, plus members completed channel by channel."""
        return self._n_added + int(self._channel_adds.min())

    # ---------------------------------------------------------------- adding
    def add(self, member: ArrayLike, *, weight: float | ArrayLike = 1.0,
            box: Sequence[Sequence[int]] | None = None) -> None:
        """Add one member: class probabilities, or a label map (one-hot, never materialised).

        Parameters
        ----------
        member : ndarray of shape (C, *box sizes) float16/float32, or integer/bool of shape (*box sizes)
            The member's probabilities (or labels) over ``box`` (the whole volume when ``box`` is None).
        weight : float or array_like of shape (C,), default 1.0
            Non-negative weight of the member, or of each of its classes.
        box : sequence of [start, stop] pairs, optional
            Where the member lies in the volume (half-open, array order). Outside it the member counts
            as background: its class-0 weight is added there.
        """
        self._check_usable()
        a = np.asarray(member)
        b = self._as_box(box)
        sizes = tuple(hi - lo for lo, hi in b)
        w = self._class_weights(weight)
        if a.dtype.kind in "biu":
            if a.shape != sizes:
                raise ValidationError(
                    f"`member` is a label map and must have shape {sizes} (the box / volume shape); got {a.shape}."
                )
            lab = _labels_checked(a, n_classes=self._n_classes, name="member")
            kind, src, cstride = (2 if lab.dtype == np.uint8 else 3), lab, 0
            if self._unc is not None:
                self._unc.add_member(lab, w, b)
            if self._log:  # every class gets w * log(eps) over the box, the label's class w * (0 - log(eps))
                self._add_outside_value(b, w, inside=True)
                w_hard = w * -self._cold
                self._add(src, kind, cstride, w_hard, b, plane=0, check_sums=True, name="member")
                self._add_outside_value(b, w, inside=False)
                self._totals += w
                self._n_added += 1
                return
        elif a.dtype.kind == "f":
            if a.shape != (self._n_classes, *sizes):
                raise ValidationError(
                    f"`member` must have shape {(self._n_classes, *sizes)} (C, *box sizes); got {a.shape}."
                )
            src = _float_source(a)
            kind, cstride = (0 if src.dtype == np.float16 else 1), (src.strides[0] // src.itemsize)
        else:
            raise ValidationError(
                f"`member` must be float16/float32 probabilities or an integer label map; got {describe(a)}."
            )
        self._add(src, kind, cstride, w, b, plane=0, check_sums=True, name="member")
        if self._unc is not None and kind in (0, 1):
            self._unc.add_member(src, w, b)
        self._add_outside_value(b, w, inside=False)
        self._totals += w
        self._n_added += 1

    def add_channel(self, c: int, channel: ArrayLike, *, weight: float = 1.0,
                    box: Sequence[Sequence[int]] | None = None) -> None:
        """Add class ``c`` of one member; call it for every class of that member.

        Parameters
        ----------
        c : int
            Class index in ``[0, C)``.
        channel : ndarray of shape (*box sizes), float16/float32
            The member's probability of class ``c``. The k-th channel added for class ``c`` belongs to
            member k (add the members in the same order for every class); the member's class sums are
            checked on a sample once all its classes are in.
        weight : float, default 1.0
            Non-negative weight of the member for this class.
        box : sequence of [start, stop] pairs, optional
            As in :meth:`add`: outside the box, channel 0 counts as probability 1 (background).
        """
        self._check_usable()
        cls = as_int(c, name="c", minimum=0)
        if cls >= self._n_classes:
            raise ValidationError(f"`c` must be a class index in [0, {self._n_classes}); got {cls}.")
        a = np.asarray(channel)
        b = self._as_box(box)
        sizes = tuple(hi - lo for lo, hi in b)
        if a.dtype.kind != "f":
            raise ValidationError(
                f"`channel` must hold float16/float32 probabilities; got {describe(a)}. Add label maps with `add`."
            )
        if a.shape != sizes:
            raise ValidationError(f"`channel` must have shape {sizes} (the box / volume shape); got {a.shape}.")
        w = self._class_weights(weight)[:1]
        src = _float_source(a[None])
        k = int(self._channel_adds[cls])
        checks = self._channel_checks.get(k)
        if checks is None:
            checks = self._channel_checks[k] = ChannelChecks(self._n_classes, f"`channel` (member {k})")
        maxbits = self._add(src, 0 if src.dtype == np.float16 else 1, 0, w, b, plane=cls, check_sums=False,
                            name="channel")
        try:
            checks.feed(cls, src[0], maxbits=maxbits)
        except ValidationError as exc:
            self._broken = str(exc).split(";")[0]
            raise
        if checks.done:
            del self._channel_checks[k]
        if self._unc is not None:
            self._unc.add_channel(k, cls, src[0], float(w[0]), b)
        for region in outside_box(self._shape, b):  # background: probability 1 for class 0, 0 for the others
            if cls == 0 and not self._log:
                self._sums[0][region] += np.float32(w[0])
            elif cls > 0 and self._log:
                self._sums[cls][region] += np.float32(w[0] * self._cold)
        self._totals[cls] += w[0]
        self._channel_adds[cls] += 1

    def _add_outside_value(self, box: Box, w: NDArray[np.float64], *, inside: bool) -> None:
        """Add what probability 1 for class 0 and 0 for the others is worth, outside ``box`` (or inside it,
        ``inside=True``, for every class: log space's ``w * log(eps)`` under a hard member)."""
        regions = [tuple(slice(lo, hi) for lo, hi in box)] if inside else list(outside_box(self._shape, box))
        for region in regions:
            for c in range(self._n_classes):
                if inside or (self._log and c > 0):
                    self._sums[c][region] += np.float32(w[c] * self._cold)
                elif not self._log and c == 0:
                    self._sums[0][region] += np.float32(w[0])

    # ---------------------------------------------------------------- results
    def probabilities(self) -> NDArray[np.float32]:
        """The weighted mean, float32 of shape (C, *shape) (log space: the normalised geometric mean)."""
        _, mean = self._finish(labels=False, mean=True)
        if mean is None:  # pragma: no cover
            raise RuntimeError("no mean computed")
        if self._log:
            softmax_in_place(mean)
        return mean

    def labels(self) -> NDArray[Any]:
        """Argmax of :meth:`probabilities` (ties: lowest class), uint8 (uint16 above 256 classes)."""
        labels, _ = self._finish(labels=True, mean=False)
        if labels is None:  # pragma: no cover
            raise RuntimeError("no labels computed")
        return labels

    def uncertainty(self) -> UncertaintyMaps:
        """The uncertainty maps and counts of the members added (needs ``uncertainty=True``), as
        :func:`~medfuse.fusion.fusion_uncertainty` defines them, against :meth:`labels`."""
        unc = self._require_tracker()
        labels = self.labels()
        sums = self._sums if unc.lin is None else unc.lin
        return unc.maps(labels, sums, (1.0 / self._totals).astype(np.float32), self._totals)

    # ---------------------------------------------------------------- internals
    def _check_usable(self) -> None:
        if self._broken is not None:
            raise ValidationError(
                f"this ProbabilityAccumulator is unusable: an earlier add failed ({self._broken}) after part "
                "of the bad member had been added. Start a new accumulator."
            )

    def _as_box(self, box: Sequence[Sequence[int]] | None) -> Box:
        if box is None:
            return tuple((0, s) for s in self._shape)
        return validate_box(box, self._shape, name="box")

    def _class_weights(self, weight: object) -> NDArray[np.float64]:
        try:
            w = np.array(weight, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValidationError(f"`weight` must be a number or one per class; got {describe(weight)}.") from None
        if w.ndim == 0:
            w = np.full(self._n_classes, float(w))
        elif w.shape != (self._n_classes,):
            raise ValidationError(
                f"`weight` must be a number or have one entry per class ({self._n_classes},); got shape {w.shape}."
            )
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValidationError(f"`weight` must be finite and non-negative; got {w.tolist()}.")
        return w

    def _add(self, src: NDArray[Any], kind: int, cstride: int, w: NDArray[np.float64], box: Box, *, plane: int,
             check_sums: bool, name: str) -> int:
        """Add ``src`` with the kernel; returns the largest bit pattern read. With ``check_sums`` (whole
        members) the values and sampled sums are checked here; else the caller checks the values."""
        from .._kernels.accumulate import _add_rows, _add_rows_log
        from .._kernels.threads import n_threads, run_ranges, split

        if src.size == 0:
            return 0
        offsets, row_len = _box_rows(self._shape, box)
        n_rows = offsets.size
        rows_per_chunk = max(1, _ROW_TARGET // max(row_len, 1))
        n_chunks = -(-n_rows // rows_per_chunk)
        threads = n_threads()
        ranges = split(n_chunks, threads)
        maxbits = np.zeros(len(ranges), dtype=np.uint64)
        sum_bad = np.zeros(len(ranges), dtype=np.int64)
        sum_checked = np.zeros(len(ranges), dtype=np.int64)
        n_voxels = int(np.prod(self._shape))
        check = _CHECK_EVERY if (check_sums and kind in (0, 1)) else 0
        log = self._log and kind in (0, 1)
        tab = log_table(float(self._eps)) if log else np.zeros(1, np.float32)
        run_ranges(
            _add_rows_log if log else _add_rows, ranges, threads,
            rows_per_chunk, self._sums[plane].ctypes.data, n_voxels, offsets, row_len, src.ctypes.data, kind,
            cstride, w.astype(np.float32), check, np.float32(SUM_TOLERANCE), maxbits, sum_bad, sum_checked, tab,
            self._eps,
        )
        if kind in (0, 1) and check_sums:
            try:
                if int(maxbits.max()) > range_limit_bits(src.itemsize):
                    check_probability_values(src, name)
                if int(sum_bad.sum()) > 0:
                    raise_for_unnormalised(src, name, int(sum_bad.sum()), int(sum_checked.sum()))
            except ValidationError as exc:
                self._broken = str(exc).split(";")[0]
                raise
        return int(maxbits.max())

    def _finish(self, *, labels: bool, mean: bool) -> tuple[NDArray[Any] | None, NDArray[np.float32] | None]:
        from .inputs import prepare_members

        self._check_usable()
        if self.num_members == 0 and not self._totals.any():
            raise ValidationError("no member has been added to this ProbabilityAccumulator yet.")
        if self._channel_adds.min() != self._channel_adds.max():
            raise ValidationError(
                f"`add_channel` was called a different number of times per class ({self._channel_adds.tolist()}); "
                "add every class channel of each member."
            )
        zero = np.flatnonzero(self._totals <= 0)
        if zero.size:
            raise ValidationError(
                f"class(es) {zero.tolist()} have zero total weight, so their mean is undefined; add members "
                "with a positive weight for every class."
            )
        scale = (1.0 / self._totals).astype(np.float32)
        prep = prepare_members([self._sums], num_classes=self._n_classes)
        return _run_fusion(prep, scale[None, :], labels=labels, mean=mean, check=False, normalise=False)


class VoteAccumulator(_Grid):
    """Plain or weighted majority vote, accumulated one label map at a time.

    Parameters
    ----------
    num_classes : int
        Labels must be in ``[0, num_classes)``.
    shape : tuple of int
        Shape of the label maps.
    tie : {"lowest", "undecided", "first"}, default "lowest"
        Tie rule, as in :func:`~medfuse.fusion.majority_vote`.
    undecided_label : int, optional
        Label for ties with ``tie="undecided"`` (default ``num_classes``).
    uncertainty : bool, default False
        Also keep each member's label map (1 byte a voxel per member; 2 above 256 classes) for
        :meth:`uncertainty`.

    Notes
    -----
    Holds counts ``(C, *shape)``: uint8 while the integer total weight fits, then uint16, then float32
    (for non-integer weights too), plus a uint16 first-voter table for ``tie="first"``. The result
    equals :func:`~medfuse.fusion.majority_vote` of the same maps, except that weighted counts here are
    float32 sums (exact for integer weights up to 2**24).
    """

    def __init__(self, num_classes: int, shape: Sequence[int], *, tie: TieRule = "lowest",
                 undecided_label: int | None = None, uncertainty: bool = False) -> None:
        self._n_classes = _as_num_classes(num_classes)
        self._shape = _as_shape(shape)
        self._unc = self._tracker(uncertainty)
        self._tie = _tie_code(tie)
        undecided = _undecided_label(undecided_label, tie)
        self._undecided = self._n_classes if undecided is None else undecided
        self._counts: NDArray[Any] | None = None
        self._first: NDArray[np.uint16] | None = None
        self._total = 0.0
        self._integral = True
        self._n_added = 0

    @property
    def num_members(self) -> int:
        return self._n_added

    @property
    def weight_total(self) -> float:
        return self._total

    def add(self, label_map: ArrayLike, *, weight: float = 1.0) -> None:
        """Add one member's label map with a non-negative ``weight``."""
        from .._kernels.accumulate import _vote_add
        from .._kernels.threads import n_threads, run_ranges, split

        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise ValidationError(f"`weight` must be a number; got {describe(weight)}.") from None
        if not np.isfinite(w) or w < 0:
            raise ValidationError(f"`weight` must be finite and non-negative; got {w}.")
        lab = _labels_checked(label_map, n_classes=self._n_classes, name="label_map")
        if lab.shape != self._shape:
            raise ValidationError(f"`label_map` must have shape {self._shape}; got {lab.shape}.")
        if self._tie == 2 and self._n_added >= 0xFFFF - 1:
            raise ValidationError("tie='first' supports at most 65534 members.")
        self._grow_counts(w)
        counts = self._counts
        if counts is None:  # pragma: no cover - allocated by _grow_counts
            raise RuntimeError("counts not allocated")
        n_voxels = lab.size
        if n_voxels:
            chunk = 65536
            n_chunks = -(-n_voxels // chunk)
            threads = n_threads()
            ranges = split(n_chunks, threads)
            max_label = np.zeros(len(ranges), dtype=np.int64)
            kind = {np.dtype(np.uint8): 0, np.dtype(np.uint16): 1}.get(counts.dtype, 2)
            run_ranges(
                _vote_add, ranges, threads,
                chunk, n_voxels, counts.ctypes.data, kind, self._n_classes, lab.ctypes.data, lab.itemsize, w,
                0 if self._first is None else self._first.ctypes.data, self._n_added, max_label,
            )
        if self._unc is not None:
            self._unc.add_labels(lab, w)
        self._total += w
        self._n_added += 1

    def labels(self) -> NDArray[Any]:
        """The voted label map, uint8 (uint16 when a label or the undecided label exceeds 255)."""
        from .._kernels.accumulate import _vote_labels
        from .._kernels.threads import n_threads, run_ranges, split

        if self._counts is None or self._total <= 0:
            raise ValidationError("no member with a positive weight has been added to this VoteAccumulator yet.")
        top = max(self._n_classes - 1, self._undecided if self._tie == 1 else 0)
        out = np.empty(self._shape, dtype=label_dtype(top))
        n_voxels = out.size
        if n_voxels:
            chunk = 16384
            n_chunks = -(-n_voxels // chunk)
            threads = n_threads()
            kind = {np.dtype(np.uint8): 0, np.dtype(np.uint16): 1}.get(self._counts.dtype, 2)
            run_ranges(
                _vote_labels, split(n_chunks, threads), threads,
                chunk, n_voxels, self._counts.ctypes.data, kind, self._n_classes,
                0 if self._first is None else self._first.ctypes.data, self._tie, self._undecided,
                out.ctypes.data, 0 if out.dtype == np.uint8 else 1,
            )
        return out

    def uncertainty(self) -> UncertaintyMaps:
        """Uncertainty maps of the vote (needs ``uncertainty=True``): the entropy of the vote shares (members
        are one-hot, so the mutual information equals it), the disagreement with :meth:`labels` (an undecided
        voxel agrees with no member) and the counts."""
        unc = self._require_tracker()
        labels = self.labels()
        counts = self._counts
        if counts is None:  # pragma: no cover - labels() refuses an empty accumulator
            raise RuntimeError("no counts")
        totals = np.full(self._n_classes, self._total)
        return unc.maps(labels, counts, (1.0 / totals).astype(np.float32), totals, one_hot=True)

    def _grow_counts(self, w: float) -> None:
        """Allocate the counts, or widen them so that adding ``w`` cannot overflow or round."""
        self._integral = self._integral and float(w).is_integer()
        total = self._total + w
        if not self._integral or total > 65535:
            dtype: type[np.generic] = np.float32
        elif total > 255:
            dtype = np.uint16
        else:
            dtype = np.uint8
        if self._counts is None:
            self._counts = np.zeros((self._n_classes, *self._shape), dtype=dtype)
            if self._tie == 2:
                self._first = np.full((self._n_classes, *self._shape), 0xFFFF, dtype=np.uint16)
        elif np.dtype(dtype).itemsize > self._counts.itemsize or (
                dtype is np.float32 and self._counts.dtype != np.float32):
            self._counts = self._counts.astype(dtype)
