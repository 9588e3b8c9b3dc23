"""Case-by-case machinery of the ensemble search: build a case's member stack, run the subset pass,
remember what the later stages need (compactly), and rebuild a candidate's label map.

Memory per case: the (M, C, *box) stack of the members (float16 for v1 folders), filled one class channel
at a time, plus the contested voxels kept for the weight search (a few per cent). Between cases only
counts, the contested voxels and two zlib-compressed label maps (reference and "safe" labels) remain.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ValidationError
from ..fusion.checks import ChannelChecks
from ..geometry import Box, union_box
from .oof import MemberPrediction, OOFCase
from .scoring import CONTESTED, CasePass, run_case_pass

__all__ = ["CaseMemo", "LoadedCase", "load_case", "process_case"]


def _box_slices(box: Box, origin: Sequence[int] | None = None) -> tuple[slice, ...]:
    off = origin or (0,) * len(box)
    return tuple(slice(lo - o, hi - o) for (lo, hi), o in zip(box, off, strict=True))


@dataclass
class LoadedCase:
    """A case with its members stacked over the union of their boxes."""

    name: str
    index: int
    fold: int
    reference: NDArray[np.uint8]  # full
    spacing_mm: tuple[float, ...]
    box: Box
    stack: NDArray[Any]  # (M, C, *box sizes)


def load_case(case: OOFCase, index: int, *, num_classes: int, models: Sequence[str]) -> LoadedCase:
    """Read the reference and every member of ``case`` into one stack (float16 unless a member is float32)."""
    ref = np.asarray(case.reference)
    if ref.size and int(ref.max()) >= num_classes:
        present = sorted(int(v) for v in np.unique(ref) if v >= num_classes)
        raise ValidationError(
            f"case {case.name!r}: the reference has labels {present} but the models predict only "
            f"{num_classes} classes (0..{num_classes - 1}). Check that the references belong to these models "
            "(or map the extra labels to 0)."
        )
    if ref.size and int(ref.min()) < 0:
        raise ValidationError(f"case {case.name!r}: the reference has negative labels.")
    members = case.members
    for m, member in enumerate(members):
        if len(member.box) != ref.ndim or any(not (0 <= lo <= hi <= s) for (lo, hi), s in
                                               zip(member.box, ref.shape, strict=True)):
            raise ValidationError(
                f"case {case.name!r}, model {models[m]!r}: the prediction's box {[list(b) for b in member.box]} "
                f"does not fit in the reference of shape {ref.shape}."
            )
        if member.num_classes is not None and member.num_classes != num_classes:
            raise ValidationError(
                f"case {case.name!r}: model {models[m]!r} has {member.num_classes} probability channels, the "
                f"others {num_classes}. All members must predict the same classes."
            )
    box = union_box([mb.box for mb in members])
    sizes = tuple(hi - lo for lo, hi in box)
    # float16 when every soft member stores float16 (v1 folders), else float32; hard members fit either
    soft = [mb.dtype for mb in members if not mb.is_hard]
    dtype = np.float16 if all(d == np.float16 for d in soft) else np.float32
    stack = np.empty((len(members), num_classes, *sizes), dtype=dtype)
    origin = [lo for lo, _ in box]
    for m, member in enumerate(members):
        _fill(stack[m], member, box, origin, case=case.name, model=models[m])
    return LoadedCase(case.name, index, case.fold, np.ascontiguousarray(ref, dtype=np.uint8), case.spacing_mm,
                      box, stack)


def _fill(out: NDArray[Any], member: MemberPrediction, box: Box, origin: Sequence[int], *, case: str,
          model: str) -> None:
    inner = _box_slices(member.box, origin)
    whole = member.box == box
    if not whole:
        out[...] = 0
        out[0] = 1
    n_classes = out.shape[0]
    if member.is_hard:
        labels = np.asarray(member.read_labels())
        if labels.shape != tuple(hi - lo for lo, hi in member.box):
            labels = labels[_box_slices(member.box)]  # a full-size map of a member whose box is the image
        if labels.size and int(labels.max()) >= n_classes:
            raise ValidationError(
                f"case {case!r}: model {model!r}'s label map has label {int(labels.max())} but there are only "
                f"{n_classes} classes; pass `num_classes=`."
            )
        for c in range(n_classes):
            out[c][inner] = labels == c
        return
    seen = np.zeros(n_classes, bool)
    # the checks of fuse_probabilities: every value, class sums on a sample (errors name case and file)
    who = f"member {member.source!r} (model {model!r})" if member.source else f"model {model!r}"
    checks = ChannelChecks(n_classes, f"case {case!r}: {who}")
    for c, channel in member.iter_channels():
        if not 0 <= c < n_classes:
            raise ValidationError(f"case {case!r}: model {model!r} yields channel {c} of {n_classes}.")
        out[c][inner] = channel
        checks.feed(c, np.asarray(channel))
        seen[c] = True
    if not seen.all():
        raise ValidationError(f"case {case!r}: model {model!r} lacks channels {np.flatnonzero(~seen).tolist()}.")


def _pack(a: NDArray[Any]) -> bytes:
    return zlib.compress(np.ascontiguousarray(a).tobytes(), 1)


def _unpack(data: bytes, shape: tuple[int, ...], dtype: Any) -> NDArray[Any]:
    out: NDArray[Any] = np.frombuffer(zlib.decompress(data), dtype=dtype).reshape(shape).copy()
    return out


@dataclass(frozen=True)
class CaseMemo:
    """What the postprocessing stage needs of a case without reading its members again."""

    name: str
    shape: tuple[int, ...]
    box: Box
    spacing_mm: tuple[float, ...]
    reference: bytes  # zlib, uint8, full shape
    safe_labels: bytes  # zlib, uint8, box shape; CONTESTED (255) at the contested voxels

    def reference_map(self) -> NDArray[np.uint8]:
        return _unpack(self.reference, self.shape, np.uint8)

    def label_map(self, contested_labels: NDArray[Any]) -> NDArray[np.uint8]:
        """Full label map given the labels of the contested voxels (in flat order)."""
        sizes = tuple(hi - lo for lo, hi in self.box)
        inner = _unpack(self.safe_labels, sizes, np.uint8).reshape(-1)
        inner[inner == CONTESTED] = contested_labels
        out = np.zeros(self.shape, np.uint8)
        out[_box_slices(self.box)] = inner.reshape(sizes)
        return out


@dataclass(frozen=True)
class ProcessedCase:
    """The counts one case contributes, and its contested voxels."""

    subset_counts: NDArray[np.int64]  # (3, S, C)
    fixed_counts: NDArray[np.int64]  # (3, C)
    contested_probabilities: NDArray[Any]  # (n, M, C)
    contested_reference: NDArray[np.uint8]  # (n,)
    result: CasePass


def process_case(loaded: LoadedCase, *, models: Sequence[str], threads: int | None = None) -> ProcessedCase:
    """Run the subset pass on a loaded case; counts include the voxels outside the members' box."""
    from .stats import counts_from_confusion

    n_members, n_classes = loaded.stack.shape[:2]
    inner = loaded.reference[_box_slices(loaded.box)]
    flat_ref = np.ascontiguousarray(inner).reshape(-1)
    flat = loaded.stack.reshape(n_members, n_classes, -1)
    result = run_case_pass(flat, flat_ref, threads=threads)
    if result.n_invalid:
        bad = [models[m] for m in range(n_members) if not _valid(flat[m])]
        raise ValidationError(
            f"case {loaded.name!r}: {', '.join(repr(b) for b in bad) or 'some member'} has probabilities that "
            "are NaN, negative or above 1 (logits, or a corrupt file). The search needs softmax "
            "probabilities; apply medfuse.softmax to logits first."
        )
    outside = _outside_counts(loaded.reference, loaded.box, n_classes)
    cm_out = np.zeros((n_classes, n_classes), np.int64)
    cm_out[:, 0] = outside
    subset_counts = np.stack(counts_from_confusion(result.subset_confusion + cm_out))
    fixed_counts = np.stack(counts_from_confusion(result.safe_confusion + cm_out))
    rows = result.contested
    return ProcessedCase(subset_counts, fixed_counts, result.contested_values, flat_ref[rows], result)


def _outside_counts(reference: NDArray[np.uint8], box: Box, n_classes: int) -> NDArray[np.int64]:
    """Voxels of each reference label outside ``box`` (counted on the slabs around it, not the whole map)."""
    counts = np.zeros(n_classes, np.int64)
    inner: list[slice] = []
    for axis, (lo, hi) in enumerate(box):
        for part in (slice(0, lo), slice(hi, reference.shape[axis])):
            where = (*inner, part)
            slab = reference[where]
            if slab.size:
                counts += np.bincount(slab.reshape(-1), minlength=n_classes)[:n_classes]
        inner.append(slice(lo, hi))
    return counts


def _valid(member: NDArray[Any]) -> bool:
    with np.errstate(invalid="ignore"):
        return bool(np.all((member >= 0) & (member <= 1.001)))


def memo_of(loaded: LoadedCase, processed: ProcessedCase) -> CaseMemo:
    return CaseMemo(
        name=loaded.name, shape=tuple(loaded.reference.shape), box=loaded.box, spacing_mm=loaded.spacing_mm,
        reference=_pack(loaded.reference), safe_labels=_pack(processed.result.safe_labels),
    )


def labels_with_weights(loaded: LoadedCase, processed: ProcessedCase, weights: NDArray[np.float64]
                        ) -> NDArray[np.uint8]:
    """Full label map of the ``weights`` (M, C) fusion of a loaded case (used when memos are not kept)."""
    from .weights import ContestedSet

    data = ContestedSet(processed.contested_probabilities, processed.contested_reference,
                        np.zeros(processed.contested_reference.size, np.int64),
                        np.ones(processed.contested_reference.size), np.zeros((3, 1, weights.shape[1])))
    inner = processed.result.safe_labels.copy()
    inner[processed.result.contested] = data.labels(weights)
    out = np.zeros(loaded.reference.shape, np.uint8)
    out[_box_slices(loaded.box)] = inner.reshape(tuple(hi - lo for lo, hi in loaded.box))
    return out
