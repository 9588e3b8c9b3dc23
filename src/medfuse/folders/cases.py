"""One case of :func:`medfuse.fuse_folders`: read the members, find the domain, fuse, postprocess, write.

:func:`fuse_case` runs in a worker (a process, a thread or a Dask worker): :class:`CaseJob` holds only
paths and numbers. The folder job around it (journal, lock, executor) is :mod:`medfuse.folders.fuse`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import ValidationError
from ..geometry import Box, Geometry, paste_into_box, union_box

Method = Literal["mean", "vote", "staple"]


# --------------------------------------------------------------------------------------------- boxes
def _box_of(source: Any) -> Box:
    return tuple((int(lo), int(hi)) for lo, hi in source.crop_bbox)


def _foreground_box(labels: NDArray[Any]) -> Box | None:
    if labels.size == 0:
        return None
    box = []
    for axis in range(labels.ndim):
        other = tuple(a for a in range(labels.ndim) if a != axis)
        nz = np.flatnonzero(labels.any(axis=other))
        if nz.size == 0:
            return None
        box.append((int(nz[0]), int(nz[-1]) + 1))
    return tuple(box)


def _relative(box: Box, domain: Box) -> Box:
    return tuple((b0 - d0, b1 - d0) for (b0, b1), (d0, _) in zip(box, domain, strict=True))


def _crop(array: NDArray[Any], box: Box) -> NDArray[Any]:
    return array[tuple(slice(b0, b1) for b0, b1 in box)]


# ------------------------------------------------------------------------------------------ per case
@dataclass(frozen=True)
class _CaseJob:
    """Everything a worker needs to fuse one case (picklable: paths and numbers only)."""

    case: str
    members: tuple[Any, ...]  # one-case PredictionFolder subsets: no folder is scanned again per case
    method: Method
    weights: NDArray[np.float64] | None
    output: str
    postprocessing: dict[str, Any] | None
    save_probabilities: bool
    space: str = "probability"  # "mean" in probability or log space (fusion.run.Space)
    eps: float = 1e-6
    qa: bool = False  # also the uncertainty maps and the case's QA row
    save_uncertainty: tuple[str, ...] = ()  # maps written as uncertainty/<case>_<map>.nii.gz


def _member_weight(weights: NDArray[np.float64] | None, m: int, num_classes: int, folder: str) -> NDArray[np.float64]:
    if weights is None:
        return np.ones(num_classes)
    row = weights[m]
    if row.ndim == 0:
        return np.full(num_classes, float(row))
    if row.shape[0] != num_classes:
        raise ValidationError(f"`weights` has {row.shape[0]} per-class columns but member {folder!r} has "
                              f"{num_classes} classes; give one column per class (background included).")
    return np.asarray(row, dtype=np.float64)


def _mean_class_major(sources: Sequence[Any], job: _CaseJob, num_classes: int, domain: Box,
                      domain_shape: tuple[int, ...]) -> tuple[NDArray[Any], NDArray[np.float16] | None, Any]:
    """Weighted mean + argmax, reading every member's class c before any member's class c + 1.

    Every probability member is checked as the in-memory API checks it (values in the adding pass, class
    sums on a sample); the errors name the case and the member's file.
    """
    from ..fusion.classwise import ClassMajorMean, class_major_channels
    from ..fusion.inputs import as_member_weights

    weights = as_member_weights(
        np.stack([_member_weight(job.weights, m, num_classes, str(s.folder.path)) for m, s in enumerate(sources)]),
        n_members=len(sources), n_classes=num_classes)
    names = {m: f"case {job.case!r}: member {str(s.npz_path or s.label_path)!r}" for m, s in enumerate(sources)}
    fuser = ClassMajorMean(num_classes, domain_shape, keep_probabilities=job.save_probabilities, names=names,
                           space="log" if job.space == "log" else "probability", eps=job.eps,
                           uncertainty=job.qa, weights=weights if job.qa else None)
    hard = {m: _crop(s.read_labels(), domain) for m, s in enumerate(sources) if not s.has_probabilities}
    boxes = {m: _relative(_box_of(s), domain) for m, s in enumerate(sources) if s.has_probabilities}
    streams = [s.iter_channels() if s.has_probabilities else None for s in sources]
    channels = class_major_channels(streams, num_classes, names=[names[m] for m in range(len(sources))])
    for c in range(num_classes):
        fuser.begin_class(c)
        for m in range(len(sources)):
            if m in hard:
                fuser.add_labels(hard[m], weight=float(weights[m, c]), member=m)
                continue
            got_c, got_m, channel = next(channels)
            if (got_c, got_m) != (c, m):  # pragma: no cover - class_major_channels keeps the order
                raise RuntimeError("channel order")
            fuser.add_probabilities(channel, weight=float(weights[m, c]), box=boxes[m], member=m)
            del channel
        fuser.end_class(float(weights[:, c].sum()))
    labels = fuser.labels()
    maps = fuser.uncertainty() if job.qa else None
    return labels, (fuser.probabilities() if job.save_probabilities else None), maps


def _staple_case(sources: Sequence[Any], num_classes: int, domain: Box, domain_shape: tuple[int, ...],
                 n_voxels: int, qa: bool) -> tuple[NDArray[Any], int, Any]:
    """STAPLE of the members' labels (argmax of probabilities) in the domain; the all-background voxels
    outside it still count, so the result equals STAPLE of the full maps."""
    from ..fusion.staple import staple_in_box

    members = [paste_into_box(s.argmax_labels(full=False), _relative(_box_of(s), domain), domain_shape, fill=0)
               if s.has_probabilities else _crop(s.read_labels(), domain) for s in sources]
    labels, outside = staple_in_box(members, outside_voxels=n_voxels - int(np.prod(domain_shape)),
                                    num_classes=num_classes)
    maps = None
    if qa:  # STAPLE weighs its members itself: equal shares in the maps
        from .qa import hard_member_maps

        maps = hard_member_maps(members, labels, np.full(len(members), 1.0 / len(members)), num_classes)
    return labels, outside, maps


def _fuse_case(job: _CaseJob) -> tuple[str, float, dict[str, Any] | None]:
    """Fuse one case and write it; returns (case, seconds, its QA record or None). Runs in a worker."""
    from .. import io
    from ..fusion import VoteAccumulator

    t0 = time.perf_counter()
    sources = [io.open_folder(folder).case(job.case) for folder in job.members]  # open_folder: as is
    geometry: Geometry = io.check_same_geometry(sources)
    shape = geometry.shape
    prob_classes = {int(s.num_classes) for s in sources if s.has_probabilities and s.num_classes is not None}
    if len(prob_classes) > 1:
        detail = ", ".join(f"{str(s.folder.path)!r}: {s.num_classes}" for s in sources if s.has_probabilities)
        raise ValidationError(f"case {job.case!r}: probability members disagree on the number of classes ({detail}).")

    # The domain that can hold foreground: crop boxes of probability members, foreground of hard members.
    hard_boxes: list[Box | None] = []
    max_hard_label = 0
    for s in sources:
        if s.has_probabilities:
            continue
        lab = s.read_labels()
        max_hard_label = max(max_hard_label, int(lab.max()) if lab.size else 0)
        hard_boxes.append(_foreground_box(lab))
        del lab
    num_classes = prob_classes.pop() if prob_classes else max(max_hard_label + 1, 2)
    if max_hard_label >= num_classes:
        raise ValidationError(f"case {job.case!r}: a label-map member holds label {max_hard_label}, but the "
                              f"probability members have only {num_classes} classes (0..{num_classes - 1}).")
    full: Box = tuple((0, n) for n in shape)
    boxes = [_box_of(s) for s in sources if s.has_probabilities]
    non_empty = [b for b in (*boxes, *hard_boxes) if b is not None and all(hi > lo for lo, hi in b)]
    domain = union_box(non_empty) if non_empty else full
    domain_shape = tuple(b1 - b0 for b0, b1 in domain)

    fused_probs: NDArray[np.float16] | None = None
    outside_label = 0
    method = job.method if job.method != "mean" or any(s.has_probabilities for s in sources) else "vote"
    maps: Any = None
    if method == "mean":
        labels, fused_probs, maps = _mean_class_major(sources, job, num_classes, domain, domain_shape)
    elif method == "staple":
        labels, outside_label, maps = _staple_case(sources, num_classes, domain, domain_shape, int(np.prod(shape)),
                                                   job.qa)
    else:
        vote = VoteAccumulator(num_classes, domain_shape)
        kept: list[NDArray[Any]] = []  # qa: the members' labels, for the in-memory maps
        shares = np.zeros(len(sources))
        for m, s in enumerate(sources):
            w = _member_weight(job.weights, m, num_classes, str(s.folder.path))
            if np.ptp(w) > 0:
                raise ValidationError("`weights` per class are not defined for method='vote'; give one weight "
                                      "per member.")
            if s.has_probabilities:
                member = paste_into_box(s.argmax_labels(full=False), _relative(_box_of(s), domain),
                                        domain_shape, fill=0)
            else:
                member = _crop(s.read_labels(), domain)
            vote.add(member, weight=float(w[0]))
            shares[m] = w[0]
            if job.qa:
                kept.append(member)
            del member
        labels = vote.labels()
        del vote
        if job.qa:
            from .qa import hard_member_maps

            maps = hard_member_maps(kept, labels, shares / shares.sum(), num_classes)
            del kept
    record = None
    if maps is not None:
        record = _qa_record(job, maps, labels, domain, geometry)
        del maps

    if job.postprocessing is not None:
        from ..postprocess import Postprocessing, apply_postprocessing

        pp = Postprocessing.read(job.postprocessing)
        labels = apply_postprocessing(labels, pp, spacing_mm=geometry.spacing)

    out_labels = paste_into_box(labels, domain, shape, fill=outside_label if method == "staple" else 0)
    out = Path(job.output)
    if fused_probs is not None:
        io.write_v1_case(out, job.case, probabilities=fused_probs, labels=out_labels,
                         geometry=geometry, crop_bbox=[list(b) for b in domain])
    else:
        io.write_nifti(out / f"{job.case}.nii.gz", out_labels, geometry)
    return job.case, time.perf_counter() - t0, record


def _qa_record(job: _CaseJob, maps: Any, labels: NDArray[Any], domain: Box, geometry: Geometry) -> dict[str, Any]:
    """Write the maps asked for and return the case's QA row as journal data (the labels are the fusion's,
    before postprocessing: the ones the maps describe)."""
    from ..quality.qa import case_qa_in_box
    from .qa import record_of, write_maps

    if job.save_uncertainty:
        write_maps(Path(job.output), job.case, maps, job.save_uncertainty, domain, geometry)
    return record_of(case_qa_in_box(labels, maps, domain, geometry.shape, case=job.case, spacing_mm=geometry.spacing))
