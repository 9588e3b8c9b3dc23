"""Folder-level jobs: fuse the prediction folders of several models, evaluate a folder against references.

These functions sit at the edge: they read folders through :mod:`medfuse.io`, fuse with the streaming
accumulators of :mod:`medfuse.fusion`, score with :mod:`medfuse.metrics` and write atomically. Cases are
the unit of work; ``executor=`` takes any :class:`concurrent.futures.Executor` (a Dask
``distributed.Client.get_executor()`` included) and runs cases on it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, as_completed, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.progress import progress_bar
from .._version import __version__
from ..errors import CaseMismatchError, ValidationError
from ..fusion.run import DEFAULT_EPS, Space, check_space
from ..geometry import Box, Geometry, paste_into_box, union_box
from ..io.journal import FileDigest, digest_files, journaled_run, v1_case_files
from ..io.jsonfile import write_json
from .evaluate import Evaluation, evaluate_folder  # re-exported: the folder jobs live side by side

__all__ = ["Evaluation", "FusionReport", "evaluate_folder", "fuse_folders"]

Method = Literal["mean", "vote"]
PathLike = str | os.PathLike[str]

FUSION_JSON = "fusion.json"


# ----------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class FusionReport:
    """What :func:`fuse_folders` did.

    Attributes
    ----------
    output : Path
        The output folder.
    members : tuple of str
        Member folders, in the order the weights refer to.
    layouts : tuple of str
        Each member's layout (``"v1"``, ``"v2"`` or ``"labels"``).
    method : {"mean", "vote"}
    weights : list or None
        The weights as given: per member, or per member and class.
    cases : tuple of str
        Every case of the ensemble.
    written : tuple of str
        Cases fused in this run.
    skipped : tuple of str
        Cases an earlier run with the same settings finished (journal record and checksums verified).
    seconds : dict of str to float
        Wall time per case fused in this run (kept out of ``fusion.json``, whose bytes do not depend on
        timing; the journal records keep them).
    postprocessing : dict or None
    fingerprint : str
        SHA-256 of the settings (resolved member folders, layouts, method, weights, postprocessing,
        ``save_probabilities``, medfuse/numpy/numba versions) that marks every journal record.
    """

    output: Path
    members: tuple[str, ...]
    layouts: tuple[str, ...]
    method: Method
    weights: list[Any] | None
    cases: tuple[str, ...]
    written: tuple[str, ...]
    skipped: tuple[str, ...]
    seconds: dict[str, float] = field(default_factory=dict)
    postprocessing: dict[str, Any] | None = None
    fingerprint: str = ""
    space: str = "probability"

    def to_dict(self) -> dict[str, Any]:
        """What this run did, as JSON-able data (``fusion.json`` describes the folder instead)."""
        return {
            "output": str(self.output),
            "members": list(self.members),
            "layouts": list(self.layouts),
            "method": self.method,
            "weights": self.weights,
            "postprocessing": self.postprocessing,
            "cases": list(self.cases),
            "written": list(self.written),
            "skipped": list(self.skipped),
            "seconds_per_case": dict(sorted(self.seconds.items())),
            "fingerprint": self.fingerprint,
            "space": self.space,
        }


def _versions() -> dict[str, str]:
    import numba

    return {"medfuse": __version__, "numpy": np.__version__, "numba": numba.__version__}


# ----------------------------------------------------------------------------------------- validation
def _as_member_paths(members: Sequence[PathLike] | PathLike) -> list[Path]:
    if isinstance(members, (str, os.PathLike)):
        raise ValidationError("`members` must be a sequence of folders (one per model); got a single path "
                              f"{str(members)!r}. Wrap it in a list, and give at least two for an ensemble.")
    paths = [Path(m) for m in members]
    if not paths:
        raise ValidationError("`members` must name at least one prediction folder; got an empty sequence.")
    for p in paths:
        if not p.is_dir():
            raise ValidationError(f"`members` must be folders of predictions; {str(p)!r} is not a folder.")
    resolved = [p.resolve() for p in paths]
    dupes = sorted({str(p) for p in resolved if resolved.count(p) > 1})
    if dupes:
        raise ValidationError(f"`members` names the same folder more than once: {dupes}; give each model "
                              "once and use `weights` to count one model more.")
    return paths


def _as_fusion_weights(weights: ArrayLike | None, n_members: int) -> NDArray[np.float64] | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim not in (1, 2) or w.shape[0] != n_members:
        raise ValidationError(
            f"`weights` must have one entry per member ({n_members}), or one row per member and one column "
            f"per class; got shape {w.shape}."
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValidationError(f"`weights` must be finite and non-negative; got {w.tolist()}.")
    if not np.any(w > 0):
        raise ValidationError("`weights` must not all be zero: at least one member must count.")
    if w.ndim == 2:  # refused before any case is read, with the in-memory API's message
        from ..fusion.inputs import raise_for_zero_weight_classes

        raise_for_zero_weight_classes(w.sum(axis=0))
    return w


def _check_output(output: Path, members: Sequence[Path]) -> None:
    out = output.resolve()
    for m in members:
        if out == m.resolve():
            raise ValidationError(f"`output` {str(output)!r} is one of the input folders; medfuse never writes "
                                  "into an input folder. Choose a new folder.")
    if output.exists() and not output.is_dir():
        raise ValidationError(f"`output` {str(output)!r} exists and is not a folder.")


def _common_cases(folders: Sequence[Any], selected: Sequence[str] | None) -> list[str]:
    """The cases to fuse: all of them (every member must hold the same set) or the ``selected`` ones."""
    sets = [set(f.cases) for f in folders]
    union: set[str] = set().union(*sets)
    wanted = union if selected is None else set(selected)
    lacking = []
    for f, s in zip(folders, sets, strict=True):
        missing = sorted(wanted - s)
        if missing:
            more = " ..." if len(missing) > 10 else ""
            lacking.append(f"{str(f.path)!r} lacks {len(missing)}: {missing[:10]}{more}")
    if lacking:
        hint = "" if selected is not None else (
            " Re-run the missing predictions, or pass `cases=` to fuse the common ones.")
        raise CaseMismatchError(
            "member folders do not all hold the cases to fuse: " + "; ".join(lacking) + "." + hint)
    if not wanted:
        raise CaseMismatchError("the member folders hold no case to fuse.")
    return sorted(wanted)


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
                      domain_shape: tuple[int, ...]) -> tuple[NDArray[Any], NDArray[np.float16] | None]:
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
                           space="log" if job.space == "log" else "probability", eps=job.eps)
    hard = {m: _crop(s.read_labels(), domain) for m, s in enumerate(sources) if not s.has_probabilities}
    boxes = {m: _relative(_box_of(s), domain) for m, s in enumerate(sources) if s.has_probabilities}
    streams = [s.iter_channels() if s.has_probabilities else None for s in sources]
    channels = class_major_channels(streams, num_classes, names=[names[m] for m in range(len(sources))])
    for c in range(num_classes):
        fuser.begin_class(c)
        for m in range(len(sources)):
            if m in hard:
                fuser.add_labels(hard[m], weight=float(weights[m, c]))
                continue
            got_c, got_m, channel = next(channels)
            if (got_c, got_m) != (c, m):  # pragma: no cover - class_major_channels keeps the order
                raise RuntimeError("channel order")
            fuser.add_probabilities(channel, weight=float(weights[m, c]), box=boxes[m], member=m)
            del channel
        fuser.end_class(float(weights[:, c].sum()))
    return fuser.labels(), (fuser.probabilities() if job.save_probabilities else None)


def _fuse_case(job: _CaseJob) -> tuple[str, float]:
    """Fuse one case and write it; returns (case, seconds). Runs in a worker."""
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
    method = job.method if any(s.has_probabilities for s in sources) else "vote"
    if method == "mean":
        labels, fused_probs = _mean_class_major(sources, job, num_classes, domain, domain_shape)
    else:
        vote = VoteAccumulator(num_classes, domain_shape)
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
            del member
        labels = vote.labels()
        del vote

    if job.postprocessing is not None:
        from ..postprocess import Postprocessing, apply_postprocessing

        pp = Postprocessing.read(job.postprocessing)
        labels = apply_postprocessing(labels, pp, spacing_mm=geometry.spacing)

    out_labels = paste_into_box(labels, domain, shape, fill=0)
    out = Path(job.output)
    if fused_probs is not None:
        io.write_v1_case(out, job.case, probabilities=fused_probs, labels=out_labels,
                         geometry=geometry, crop_bbox=[list(b) for b in domain])
    else:
        io.write_nifti(out / f"{job.case}.nii.gz", out_labels, geometry)
    return job.case, time.perf_counter() - t0


_Done = tuple[str, float, tuple[FileDigest, ...]]  # (case, seconds, digests of its files)


def _fuse_and_digest(job: _CaseJob) -> _Done:
    """Fuse one case, then digest the files it wrote (in the worker, where they are still in the page cache).

    The coordinating process removed every file of the case before the job started (``Journal.begin``),
    so the files found now are exactly the ones this job wrote; it checks their sizes and records them.
    """
    case, seconds = _fuse_case(job)
    return case, seconds, digest_files(job.output, v1_case_files(case))


def _run_cases(jobs: Sequence[_CaseJob], executor: Executor | None) -> Iterator[_Done]:
    """Results as cases complete. On a failure the cases not started are cancelled and the running ones
    are waited for, so no worker writes into the folder after the run (and its lock) ended."""
    if executor is None:
        yield from map(_fuse_and_digest, jobs)
        return
    futures: list[Future[_Done]] = [executor.submit(_fuse_and_digest, job) for job in jobs]
    try:
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        for fut in futures:
            fut.cancel()
        wait(futures)


def _fusion_settings(paths: Sequence[Path], folders: Sequence[Any], method: Method,
                     weights: NDArray[np.float64] | None, postprocessing: dict[str, Any] | None,
                     save_probabilities: bool) -> dict[str, Any]:
    """What decides the bytes of a fused folder: its fingerprint marks every journal record."""
    return {"job": "fuse_folders", "members": [str(p.resolve()) for p in paths],
            "layouts": [f.layout for f in folders], "method": method,
            "weights": None if weights is None else weights.tolist(), "postprocessing": postprocessing,
            "save_probabilities": bool(save_probabilities), "versions": _versions()}


def _command(name: str) -> str:
    return f"{name} (python {' '.join(sys.argv)})"[:300]


# ------------------------------------------------------------------------------------------- public
def fuse_folders(
    members: Sequence[PathLike],
    output: PathLike,
    *,
    method: Method = "mean",
    weights: ArrayLike | None = None,
    postprocessing: PathLike | Mapping[str, Any] | None = None,
    save_probabilities: bool = False,
    cases: Sequence[str] | None = None,
    executor: Executor | None = None,
    overwrite: bool = False,
    progress: bool = True,
    space: Space = "probability",
    eps: float = DEFAULT_EPS,
) -> FusionReport:
    """Fuse the prediction folders of several models into one folder of label maps.

    Parameters
    ----------
    members : sequence of path
        Prediction folders, one per model, in any mix of layouts: v1 (PaddleSeg MedicalSeg / nnU-Net v1,
        ``<case>.npz`` ``softmax`` + ``<case>.pkl``), v2 (``probabilities``) or label maps only. A label-map
        folder joins a probability ensemble as a hard (one-hot) member with its weight.
    output : path
        Folder to write ``<case>.nii.gz`` (uint8, original geometry) and ``fusion.json`` into. Never one of
        the inputs. Files are written atomically. A re-run skips the cases its journal
        (``output/.medfuse/journal``) records as finished with the same settings and unchanged files, and
        refuses a folder holding results of other settings or files no record accounts for. The folder
        is locked (``output/.medfuse.lock``) for the whole run: a second run on it fails, naming the first.
    method : {"mean", "vote"}
        ``"mean"``: argmax of the (weighted, per class normalised) mean probability; ties go to the lowest
        class. ``"vote"``: (weighted) majority vote of each member's argmax; ties go to the lowest label.
    weights : array_like of shape (M,) or (M, C), optional
        Non-negative weights per member, or per member and class (``"mean"`` only). Equal when omitted.
    postprocessing : path or mapping, optional
        A PaddleSeg / nnU-Net ``postprocessing.json`` (or its content) applied to every fused case.
    save_probabilities : bool
        Also write the fused probabilities (v1 layout: ``<case>.npz`` ``softmax`` float16 over the union
        of the members' crop boxes, plus ``<case>.pkl``), so the output can join another ensemble.
    cases : sequence of str, optional
        Fuse only these cases (all members must hold them). By default every case, and all members must
        hold the same cases.
    executor : concurrent.futures.Executor, optional
        Runs cases in parallel (threads, processes, or a Dask ``Client.get_executor()``). Serial when
        omitted; decoding still overlaps accumulation inside a case.
    overwrite : bool
        Recompute every selected case even when ``output`` holds results of an earlier run: results of
        other settings are removed (with their journal records), files no record accounts for are left
        alone. Without it, other settings or unrecorded files are an error (never a silent mix).
    progress : bool
        Show a progress bar (needs tqdm, extra ``progress``).
    space : {"probability", "log"}, default "probability"
        ``"mean"`` only: average the probabilities, or ``log(max(p, eps))`` (the weighted geometric mean,
        whose argmax for softmax members is that of the averaged logits; see
        :func:`medfuse.fuse_probabilities`). Saved probabilities are then the normalised geometric mean.
    eps : float, default 1e-6
        Log space only: probabilities are clamped to ``eps`` before their log.

    Returns
    -------
    FusionReport

    Raises
    ------
    FolderLockedError
        Another run holds ``output``.
    ValidationError
        ``output`` holds results of other settings, or files no journal record accounts for (pass
        ``overwrite=True``).
    """
    from .. import io

    paths = _as_member_paths(members)
    out = Path(output)
    _check_output(out, paths)
    if method not in ("mean", "vote"):
        raise ValidationError(f"`method` must be 'mean' or 'vote'; got {method!r}.")
    w = _as_fusion_weights(weights, len(paths))
    if w is not None and w.ndim == 2 and method == "vote":
        raise ValidationError("`weights` per member and class need method='mean'; give one weight per member "
                              "for 'vote'.")
    if save_probabilities and method != "mean":
        raise ValidationError("`save_probabilities` needs method='mean' (a vote has no probabilities).")
    log, eps32 = check_space(space, eps)
    if log and method != "mean":
        raise ValidationError(f"`space` 'log' needs method='mean' (it fuses probabilities); got method={method!r}. "
                              "Drop space='log', or use method='mean'.")
    pp_dict: dict[str, Any] | None = None
    if postprocessing is not None:
        from ..postprocess import Postprocessing

        pp_dict = Postprocessing.read(postprocessing).to_dict()

    folders = [io.open_folder(p) for p in paths]
    all_cases = _common_cases(folders, cases)
    settings = _fusion_settings(paths, folders, method, w, pp_dict, save_probabilities)
    if log:  # only then: the fingerprint of a probability-space run is what it was
        settings.update(space="log", eps=float(eps32))
    seconds: dict[str, float] = {}
    with journaled_run(out, settings, all_cases, overwrite=overwrite, command=_command("fuse_folders"),
                       extra_files=(FUSION_JSON,)) as (journal, plan):
        jobs = [_CaseJob(c, tuple(f.subset([c]) for f in folders), method, w, str(out), pp_dict,
                         save_probabilities, "log" if log else "probability", float(eps32)) for c in plan.todo]
        try:
            journal.begin(plan.todo)
            for case, sec, files in progress_bar(_run_cases(jobs, executor), enabled=progress,
                                                 total=len(jobs), desc="fuse"):
                journal.finish(case, files, seconds=round(sec, 3))
                seconds[case] = sec
        finally:  # rebuilt from the journal: after a SIGKILL the next run rebuilds it the same way
            write_json(out / FUSION_JSON, {"medfuse_version": __version__, "fingerprint": journal.fingerprint,
                                           **settings, "cases": journal.completed()})
    return FusionReport(
        output=out, members=tuple(str(p) for p in paths), layouts=tuple(f.layout for f in folders),
        method=method, weights=None if w is None else w.tolist(), cases=tuple(all_cases),
        written=tuple(c for c in plan.todo if c in seconds), skipped=plan.done, seconds=seconds,
        postprocessing=pp_dict, fingerprint=journal.fingerprint, space="log" if log else "probability",
    )
