"""Class-major weighted-mean fusion for folder jobs (private).

A PaddleSeg / nnU-Net ``.npz`` stores ``softmax`` as ``(C, Z, Y, X)``: one class plane after the other in
one compressed stream. :class:`ClassMajorMean` exploits that order: with every member's stream open, it
adds every member's class ``c`` into ONE float32 plane, turns the plane into the weighted mean of class
``c`` and folds it into a running maximum and argmax, then moves on to class ``c + 1``. Its memory is
one float32 plane, one float32 maximum and one label map of the fused region (9 bytes a voxel, plus 2
bytes a voxel and class when the fused probabilities are kept) whatever the number of members and
classes; a ``(C, ...)`` float32 accumulator would need ``4 C`` bytes a voxel.

:func:`class_major_channels` reads the members' streams in that order on a small thread pool, a bounded
number of planes ahead of the consumer (inflating releases the GIL), so decoding overlaps accumulation
and the read-ahead does not grow with the number of members.

With ``uncertainty=True`` the same pass also builds the uncertainty maps
(:class:`medfuse.fusion.uncertainty.UncertaintyMaps`, definitions there): the entropy of the weighted mean
accumulates class by class (``sum_c q ln q`` and ``sum_c q`` of the linear mean ``q``; in log space a
second float32 plane holds the linear mean, since the maps are of the LINEAR mean while the labels are the
log-space ones), the members' own entropies too (``sum_m omega_m sum_c p ln p``), and each member's own
argmax needs a running maximum and argmax per member. Once the fused labels are final, one pass per member
gives the disagreement and the ``(M, C)`` counts. Memory, honestly:

* per voxel of the fused region: 12 bytes more (``sum q ln q``, ``sum q``, the member-entropy sum, float32;
  16 in log space with the linear plane), on top of the 9 of the fusion;
* per probability member and voxel of ITS crop box: the running maximum in the member's own dtype, kept
  as raw bits (2 bytes for float16, 4 for float32) and its argmax (1 byte; 2 above 256 classes), so 3 bytes
  a voxel and member for float16 members. This part grows with the number of members (the member argmax
  cannot be known before its last class, nor the disagreement before the fused labels);
* a hard member's label map is kept by reference (the caller holds it anyway), no copy.

Probability members are checked as :func:`medfuse.fuse_probabilities` checks them (values in the add
kernel's pass, class sums on a fixed sample: :mod:`medfuse.fusion.checks`), and a class whose total
weight is zero is refused, so a bad member never becomes a fused label map.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import FormatError, ValidationError
from ..geometry import Box, outside_box
from .checks import ChannelChecks
from .inputs import raise_for_zero_weight_classes
from .run import DEFAULT_EPS, Space, check_space, log_table, softmax_in_place
from .uncertainty import UncertaintyMaps

__all__ = ["ClassMajorMean", "class_major_channels"]


#: voxels per chunk of the argmax kernel (float32 plane + best + labels stay in L2)
_CHUNK = 1 << 15
#: the table argument of the linear kernels (unused)
_NO_TABLE = np.zeros(1, dtype=np.float32)

@dataclass
class _MemberTrack:
    """One member's running argmax (uncertainty): over its box, or its whole label map (hard member)."""

    box: Box
    best: NDArray[Any] | None = None  # raw bits of the running maximum (probability member)
    arg: NDArray[Any] | None = None  # running argmax, or the hard member's labels
    classes: int = 0  # classes added so far


class ClassMajorMean:
    """Weighted mean of members added class by class, and its argmax (ties to the lowest class).

    Usage: for each class ``c`` in order, :meth:`begin_class`, then :meth:`add_probabilities` /
    :meth:`add_labels` for every member, then :meth:`end_class` with the class's total weight.

    Parameters
    ----------
    num_classes : int
        Number of classes C (background included).
    shape : tuple of int
        Shape of the fused region (3-D).
    keep_probabilities : bool
        Keep each class's mean as float16 (for writing the fused probabilities).
    names : mapping of int to str, optional
        How error messages name probability member ``m`` (e.g. ``"case 'abc': member '/x/abc.npz'"``);
        by default ``"probability member m"``.
    space : {"probability", "log"}, default "probability"
        Sum the probabilities, or ``log(max(p, eps))`` (as :func:`medfuse.fuse_probabilities`; a hard member
        and the background outside a box count as one-hot probabilities). In log space the kept
        probabilities are the normalised weighted geometric mean, held as float32 log means until the
        end (4 bytes a voxel and class instead of 2).
    eps : float, default 1e-6
        Log space only: probabilities are clamped to ``eps`` before their log.
    uncertainty : bool, default False
        Also build the uncertainty maps (:meth:`uncertainty`; memory in the module docstring). Every member
        must then be added for every class; which member a channel belongs to is ``member=`` (default: the
        k-th add of the class, hard members included, is member k).
    weights : array_like of shape (M,) or (M, C), optional
        ``uncertainty`` only: the weights the adds use (raw, as passed to the adds), needed up front for
        each member's share ``omega[m] = mean_c W[m, c] / sum_m W[m, c]`` in the member entropies.
        Equal when omitted (then give ``num_members``).
    num_members : int, optional
        ``uncertainty`` only: the number of members M when ``weights`` are omitted.
    """

    def __init__(self, num_classes: int, shape: tuple[int, ...], *, keep_probabilities: bool = False,
                 names: Mapping[int, str] | None = None, space: Space = "probability",
                 eps: float = DEFAULT_EPS, uncertainty: bool = False, weights: ArrayLike | None = None,
                 num_members: int | None = None) -> None:
        self._log, self._eps = check_space(space, eps)
        self._cold = np.float32(np.log(self._eps)) if self._log else np.float32(0.0)
        if len(shape) != 3:
            raise ValidationError(f"`shape` must be 3-D; got {shape}.")
        self.num_classes = int(num_classes)
        self.shape = tuple(int(s) for s in shape)
        self._plane = np.zeros(self.shape, dtype=np.float32)
        self._best = np.empty(self.shape, dtype=np.float32)
        self._labels = np.zeros(self.shape, dtype=np.uint8 if num_classes <= 256 else np.uint16)
        kept = np.float32 if self._log else np.float16
        self._probs: NDArray[Any] | None = (np.empty((num_classes, *self.shape), dtype=kept)
                                            if keep_probabilities else None)
        self._class = -1
        self._next = 0
        self._names = dict(names or {})
        self._checks: dict[int, ChannelChecks] = {}
        self._ordinal = 0  # probability members added to the current class so far
        self._added = 0  # members (probability or hard) added to the current class so far
        self._shares: NDArray[np.float64] | None = None
        if uncertainty:
            self._init_uncertainty(weights, num_members)

    def _init_uncertainty(self, weights: ArrayLike | None, num_members: int | None) -> None:
        from .inputs import as_member_weights, raise_for_zero_weight_classes

        if weights is None:
            if num_members is None or isinstance(num_members, bool) or int(num_members) < 1:
                raise ValidationError("`uncertainty=True` needs the members' `weights` or `num_members` (>= 1) "
                                      f"up front; got weights=None, num_members={num_members!r}.")
            n = int(num_members)
        else:
            n = int(np.asarray(weights).shape[0]) if np.ndim(weights) else 0
        w = as_member_weights(weights, n_members=n, n_classes=self.num_classes)
        if num_members is not None and int(num_members) != w.shape[0]:
            raise ValidationError(f"`num_members` ({num_members}) must match the rows of `weights` ({w.shape[0]}).")
        totals = w.sum(axis=0)
        raise_for_zero_weight_classes(totals)
        self._shares = (w / totals[None, :]).mean(axis=1)
        self._tracks: dict[int, _MemberTrack] = {}
        self._ment = np.zeros(self.shape, dtype=np.float32)  # sum_m omega_m sum_c p ln p
        self._qlogq = np.zeros(self.shape, dtype=np.float32)
        self._qsum = np.zeros(self.shape, dtype=np.float32)
        self._lin = np.zeros(self.shape, dtype=np.float32) if self._log else self._plane

    def _track(self, member: int | None, box: Box) -> tuple[int, _MemberTrack]:
        """The uncertainty state of the member a channel belongs to (created at class 0)."""
        if self._shares is None:  # pragma: no cover - callers check
            raise ValidationError("uncertainty is off")
        m = self._added if member is None else int(member)
        if not 0 <= m < self._shares.shape[0]:
            raise ValidationError(f"`member` must be in 0..{self._shares.shape[0] - 1} (the members `weights` "
                                  f"names); got {m}.")
        track = self._tracks.get(m)
        if track is None:
            if self._class != 0:
                raise ValidationError(f"member {m} was not added for class 0; with uncertainty=True every member "
                                      "is added for every class.")
            track = self._tracks[m] = _MemberTrack(box)
        elif track.box != box:
            raise ValidationError(f"member {m} covers box {box} for class {self._class}, but {track.box} before; "
                                  "a member's box is the same for every class.")
        if track.classes != self._class:
            raise ValidationError(f"member {m} was added {track.classes} times before class {self._class}; add "
                                  "every member exactly once per class.")
        track.classes += 1
        return m, track

    # -------------------------------------------------------------------------------------------- adding
    def begin_class(self, c: int) -> None:
        if c != self._next:
            raise ValidationError(f"classes must be added in order; expected class {self._next}, got {c}.")
        self._class = c
        self._ordinal = 0
        self._added = 0
        self._plane.fill(0.0)
        if self._shares is not None and self._log:
            self._lin.fill(0.0)

    def _box(self, box: Box | None, sizes: tuple[int, ...], what: str) -> Box:
        if box is None:
            box = tuple((0, s) for s in self.shape)
        if tuple(hi - lo for lo, hi in box) != sizes or any(lo < 0 or hi > s for (lo, hi), s in
                                                             zip(box, self.shape, strict=True)):
            raise ValidationError(f"{what} of shape {sizes} does not fit box {box} inside {self.shape}.")
        return box

    def add_probabilities(self, channel: NDArray[Any], *, weight: float, box: Box | None = None,
                          member: int | None = None) -> None:
        """Add ``weight`` times one member's probabilities of the current class, which cover ``box``.

        Outside ``box`` the member is background: for class 0 it adds ``weight`` there. ``member`` says
        which member the channel belongs to (default: the k-th probability member added to this class is
        member k); its values are checked in the adding pass, and its class sums on a sample once its last
        class is added (even with ``weight=0``).

        Raises
        ------
        ValidationError
            The channel does not fit ``box``; values that are not probabilities (NaN, infinity, negative,
            above 1: logits); class sums off 1 (after the member's last class).
        """
        from .._kernels.channelwise import _add_box, _add_box_log
        from .._kernels.threads import n_threads, run_chunked

        b = self._box(box, tuple(channel.shape), "the channel")
        m = self._ordinal if member is None else int(member)
        self._ordinal += 1
        if channel.dtype == np.float16:
            bits = np.ascontiguousarray(channel).view(np.uint16)
        elif channel.dtype == np.float32:
            bits = np.ascontiguousarray(channel).view(np.uint32)
        else:
            bits = np.ascontiguousarray(channel, dtype=np.float32).view(np.uint32)
        threads = n_threads()
        maxbits = np.zeros(threads, dtype=np.uint64)
        if self._shares is not None:
            self._add_tracked(bits, b, member, weight, maxbits, threads)
        else:
            args = (self._plane, b[0][0], b[1][0], b[2][0], bits, np.float32(weight), maxbits)
            if self._log:
                run_chunked(_add_box_log, bits.shape[0], threads, *args, log_table(float(self._eps)), self._eps)
            else:
                run_chunked(_add_box, bits.shape[0], threads, *args)
        self._added += 1
        checks = self._checks.get(m)
        if checks is None:
            checks = self._checks[m] = ChannelChecks(self.num_classes, self._names.get(m, f"probability member {m}"))
        checks.feed(self._class, bits.view(np.float16 if bits.dtype == np.uint16 else np.float32),
                    maxbits=int(maxbits.max()))
        if weight == 0.0:
            return
        if self._class == 0 and not self._log:  # outside the box: probability 1 for class 0, 0 for the others
            for region in outside_box(self.shape, b):
                self._plane[region] += np.float32(weight)
        elif self._class > 0 and self._log:
            for region in outside_box(self.shape, b):
                self._plane[region] += np.float32(weight) * self._cold
        if self._shares is not None and self._log and self._class == 0:  # the linear mean, outside the box
            for region in outside_box(self.shape, b):
                self._lin[region] += np.float32(weight)

    def _add_tracked(self, bits: NDArray[Any], box: Box, member: int | None, weight: float,
                     maxbits: NDArray[np.uint64], threads: int) -> None:
        """The add of :meth:`add_probabilities` with the uncertainty terms, in one pass over the channel."""
        from .._kernels.planes import _add_box_uncertainty, _add_box_uncertainty_log
        from .._kernels.threads import run_chunked

        m, track = self._track(member, box)
        if track.best is None or track.arg is None:
            track.best = np.empty(bits.shape, dtype=bits.dtype)
            track.arg = np.empty(bits.shape, dtype=self._labels.dtype)
        elif track.best.dtype != bits.dtype:  # a member mixing float16 and float32 channels: keep float32
            if track.best.dtype == np.uint16:
                track.best = track.best.view(np.float16).astype(np.float32).view(np.uint32)
            bits = bits.view(np.float16).astype(np.float32).view(np.uint32)
        shares = self._shares if self._shares is not None else np.ones(1)
        tab = log_table(float(self._eps)) if self._log else _NO_TABLE
        kernel = _add_box_uncertainty_log if self._log else _add_box_uncertainty
        run_chunked(kernel, bits.shape[0], threads, self._plane, self._lin, self._ment, box[0][0], box[1][0],
                    box[2][0], bits, np.float32(weight), np.float32(shares[m]), maxbits, tab, self._eps,
                    track.arg.dtype.type(self._class), track.best, track.arg, self._log)

    def add_labels(self, labels: NDArray[Any], *, weight: float, member: int | None = None) -> None:
        """Add ``weight`` where a hard member's label map (covering the whole region) is the current class.

        ``member``: which member (``uncertainty`` only; default: the k-th add of the class is member k)."""
        from .._kernels.channelwise import _add_label_box
        from .._kernels.threads import n_threads, run_chunked

        full = self._box(None, tuple(labels.shape), "the label map")
        lab = np.ascontiguousarray(labels)
        if lab.dtype not in (np.uint8, np.uint16):
            lab = lab.astype(np.uint16)
        if self._shares is not None:
            _, track = self._track(member, full)
            if track.arg is None:
                track.arg = lab  # by reference: a hard member's own labels are its argmax
            if self._log and weight != 0.0:
                run_chunked(_add_label_box, lab.shape[0], n_threads(), self._lin, 0, 0, 0, lab, self._class,
                            np.float32(weight))
        self._added += 1
        if weight == 0.0:
            return
        if self._log:  # log(1) = 0 where the label is the class, log(eps) elsewhere
            self._plane += np.where(lab == self._class, np.float32(0.0), np.float32(weight) * self._cold)
            return
        run_chunked(_add_label_box, lab.shape[0], n_threads(), self._plane, 0, 0, 0, lab, self._class,
                    np.float32(weight))

    def end_class(self, total_weight: float) -> None:
        """Fold the current class's mean (plane / ``total_weight``) into the running argmax."""
        from .._kernels.channelwise import _argmax_update
        from .._kernels.threads import n_threads, run_chunked

        c = self._class
        if not total_weight > 0:
            raise_for_zero_weight_classes(np.array([0.0 if k == c else 1.0 for k in range(self.num_classes)]))
        if self._shares is not None and self._added != self._shares.shape[0]:
            raise ValidationError(f"class {c}: {self._added} members were added, but `weights` names "
                                  f"{self._shares.shape[0]}; add every member for every class.")
        scale = np.float32(1.0 / total_weight)
        flat = self._plane.reshape(-1)
        n_chunks = -(-flat.size // _CHUNK)
        threads = n_threads()
        if self._shares is None:
            run_chunked(_argmax_update, n_chunks, threads, _CHUNK, flat, scale, c, self._best.reshape(-1),
                        self._labels.reshape(-1))
        else:  # the argmax and the entropy terms of the linear mean in one pass over the class
            from .._kernels.planes import _argmax_entropy_update

            run_chunked(_argmax_entropy_update, n_chunks, threads, _CHUNK, flat, self._lin.reshape(-1), scale, c,
                        self._best.reshape(-1), self._labels.reshape(-1), self._qlogq.reshape(-1),
                        self._qsum.reshape(-1))
        if self._probs is not None:
            np.multiply(self._plane, scale, out=self._probs[c], casting="unsafe")
        self._next = c + 1
        self._class = -1

    # ----------------------------------------------------------------------------------------- results
    def _check_done(self) -> None:
        if self._next != self.num_classes:
            raise ValidationError(f"only {self._next} of {self.num_classes} classes were added.")

    def labels(self) -> NDArray[Any]:
        """Argmax of the weighted mean, ties to the lowest class."""
        self._check_done()
        return self._labels

    def uncertainty(self) -> UncertaintyMaps:
        """The uncertainty maps of this fusion (``uncertainty=True``; after the last class).

        Entropy of the normalised linear weighted mean, mutual information, disagreement with
        :meth:`labels`, and the ``(M, C)`` counts (:class:`~medfuse.fusion.uncertainty.UncertaintyMaps`).
        Outside a member's box the member is background with probability 1. Can be called once: the maps
        reuse the accumulators' memory.
        """
        from .._kernels.planes import _count_labels, _entropy_finish, _member_agreement
        from .._kernels.threads import n_threads, run_chunked

        self._check_done()
        if self._shares is None:
            raise ValidationError("the uncertainty maps were not built; create with uncertainty=True.")
        if self._qsum is None:
            raise ValidationError("uncertainty() was already called; it hands out its maps once.")
        shares = self._shares
        n_members, n_classes = shares.shape[0], self.num_classes
        missing = [m for m in range(n_members) if m not in self._tracks]
        if missing:
            raise ValidationError(f"members {missing} were never added; add every member for every class.")
        fused = self._labels
        # entropy = ln s - a / s where s > 0, else 0, into s; mutual information into ment: in place
        entropy, mutual = self._qsum, self._ment
        flat = entropy.reshape(-1)
        run_chunked(_entropy_finish, -(-flat.size // _CHUNK), n_threads(), _CHUNK, flat, self._qlogq.reshape(-1),
                    mutual.reshape(-1))
        self._qlogq = self._qsum = None  # type: ignore[assignment]
        self._ment = None  # type: ignore[assignment]
        dis = np.zeros(self.shape, dtype=np.float32)
        volumes = np.zeros((n_members, n_classes), dtype=np.int64)
        overlap = np.zeros((n_members, n_classes), dtype=np.int64)
        threads = n_threads()
        hist = np.zeros((threads, n_classes), dtype=np.int64)
        flat_fused = fused.reshape(-1)
        run_chunked(_count_labels, -(-flat_fused.size // _CHUNK), threads, _CHUNK, flat_fused, hist)
        fused_volumes = hist.sum(axis=0)
        for m in range(n_members):
            track = self._tracks[m]
            omega = np.float32(shares[m])
            vt = np.zeros((threads, n_classes), dtype=np.int64)
            ot = np.zeros((threads, n_classes), dtype=np.int64)
            if track.arg is not None and track.arg.size:
                run_chunked(_member_agreement, track.arg.shape[0], threads, track.arg, fused, track.box[0][0],
                            track.box[1][0], track.box[2][0], omega, dis, vt, ot)
            volumes[m] = vt.sum(axis=0)
            overlap[m] = ot.sum(axis=0)
            for region in outside_box(self.shape, track.box):  # background with probability 1 there
                f = fused[region]
                not_bg = f != 0
                dis[region] += omega * not_bg
                volumes[m, 0] += f.size
                overlap[m, 0] += f.size - int(np.count_nonzero(not_bg))
        return UncertaintyMaps(entropy=entropy, mutual_information=mutual, disagreement=dis,
                               member_volumes=volumes, member_overlap=overlap, fused_volumes=fused_volumes,
                               member_shares=shares.astype(np.float64))

    def probabilities(self) -> NDArray[np.float16]:
        """The weighted mean of every class, float16 (only with ``keep_probabilities=True``); in log space
        the normalised weighted geometric mean."""
        self._check_done()
        if self._probs is None:
            raise ValidationError("probabilities were not kept; create with keep_probabilities=True.")
        if self._probs.dtype == np.float32:  # log space: log means, normalised once
            softmax_in_place(self._probs)
            self._probs = self._probs.astype(np.float16)
        out: NDArray[np.float16] = self._probs
        return out


def class_major_channels(
    streams: Sequence[Iterator[tuple[int, NDArray[Any]]] | None], num_classes: int, *, window: int | None = None,
    names: Sequence[str] | None = None,
) -> Iterator[tuple[int, int, NDArray[Any]]]:
    """Yield ``(c, m, channel)`` for ``c`` in classes, ``m`` in members with a stream, in that order.

    Channels are decoded on a thread pool, at most ``window`` (default: the kernel thread count, at most
    the number of streams) ahead of the consumer, so one member's stream is never advanced by two threads at once and
    the read-ahead memory does not grow with the number of members.
    """
    from .._kernels.threads import n_threads

    active = [m for m, s in enumerate(streams) if s is not None]
    if not active:
        return
    window = min(window or n_threads(), len(active))
    order = [(c, m) for c in range(num_classes) for m in active]

    def pull(c: int, m: int) -> NDArray[Any]:
        stream = streams[m]
        if stream is None:  # pragma: no cover - excluded by `active`
            raise ValidationError("no stream")
        try:
            got, channel = next(stream)
        except StopIteration:
            who = names[m] if names else f"member {m}"
            raise FormatError(f"{who} has only {c} class channels; expected {num_classes}.") from None
        if got != c:  # pragma: no cover - streams yield classes in order
            raise FormatError(f"expected class {c} next, got {got}")
        return channel

    pending: deque[tuple[int, int, Future[NDArray[Any]]]] = deque()
    with ThreadPoolExecutor(max_workers=window, thread_name_prefix="medfuse-inflate") as pool:
        it = iter(order)
        try:
            for c, m in it:
                pending.append((c, m, pool.submit(pull, c, m)))
                if len(pending) >= window:
                    break
            while pending:
                c, m, fut = pending.popleft()
                # wait first: the next task may be this member's next channel (same stream)
                holder = [fut.result()]
                del fut
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt[0], nxt[1], pool.submit(pull, *nxt)))
                # popped at the yield: no local keeps the channel while suspended, the consumer frees it
                yield c, m, holder.pop()
        finally:
            for _, _, fut in pending:
                fut.cancel()
