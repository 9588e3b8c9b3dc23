"""Folder-level jobs: fuse the prediction folders of several models, evaluate a folder against references.

These functions sit at the edge: they read folders through :mod:`medfuse.io`, fuse with the streaming
accumulators of :mod:`medfuse.fusion`, score with :mod:`medfuse.metrics` and write atomically. Cases are
the unit of work; ``executor=`` takes any :class:`concurrent.futures.Executor` (a Dask
``distributed.Client.get_executor()`` included) and runs cases on it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.jobs import run_jobs
from .._core.progress import progress_bar
from .._version import __version__
from ..errors import CaseMismatchError, ValidationError
from ..fusion.run import DEFAULT_EPS, Space, check_space
from ..io.journal import FileDigest, digest_files, journaled_run
from ..io.jsonfile import write_json
from ..quality import CaseQA, qa_table, write_qa
from .cases import Method, _CaseJob, _fuse_case
from .evaluate import Evaluation, evaluate_folder  # re-exported: the folder jobs live side by side
from .qa import as_map_names, case_files, row_from_record

__all__ = ["Evaluation", "FusionReport", "evaluate_folder", "fuse_folders"]

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
    method : {"mean", "vote", "staple"}
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
        ``save_probabilities``, medfuse/numpy/numba versions, QA settings) that marks every journal record.
    space : str
    qa : tuple of CaseQA
        With ``qa=True``: every finished case's QA row (this run's and resumed ones), most suspicious first
        (as ``qa.csv``); empty otherwise.
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
    qa: tuple[CaseQA, ...] = ()

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
            **({"qa": [r.to_row() for r in self.qa]} if self.qa else {}),
        }

    def __repr__(self) -> str:
        return (f"FusionReport(output={str(self.output)!r}, method={self.method!r}, members={len(self.members)}, "
                f"cases={len(self.cases)}, written={len(self.written)}, skipped={len(self.skipped)})")

    def _repr_html_(self) -> str:
        from .._core.display import html_table

        w = self.weights or [1.0] * len(self.members)
        rows = [[m, lay, str(wt)] for m, lay, wt in zip(self.members, self.layouts, w, strict=False)]
        return html_table(["member", "layout", "weight"], rows, caption=f"{self.method} fusion of {len(self.cases)} "
                          f"cases into {self.output} ({len(self.written)} written, {len(self.skipped)} resumed)")


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


_Done = tuple[str, float, tuple[FileDigest, ...], dict[str, Any] | None]  # (case, seconds, file digests, QA)


def _fuse_and_digest(job: _CaseJob) -> _Done:
    """Fuse one case, then digest the files it wrote (in the worker, where they are still in the page cache).

    The coordinating process removed every file of the case before the job started (``Journal.begin``),
    so the files found now are exactly the ones this job wrote; it checks their sizes and records them.
    """
    case, seconds, qa = _fuse_case(job)
    names = case_files(job.save_uncertainty)(case)
    return case, seconds, digest_files(job.output, names), qa


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
    qa: bool = False,
    save_uncertainty: Sequence[str] = (),
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
        ``"staple"``: multi-label STAPLE (:func:`medfuse.staple`) of each member's labels (a probability
        member's argmax), over the whole volume; no ``weights``.
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
    qa : bool, default False
        Also compute each case's uncertainty maps in the same pass (:class:`medfuse.UncertaintyMaps`: the
        class-major mean for ``"mean"``, the members' labels for ``"vote"`` and ``"staple"``), and its QA
        row (:func:`medfuse.quality.case_qa`, with the case's spacing; on the fused labels before
        postprocessing, which the maps describe). ``qa.csv`` and ``qa.json`` in ``output`` list every
        finished case, most suspicious first (resumed cases keep the rows their journal records hold);
        :attr:`FusionReport.qa` holds the same rows. Part of the settings (a resume needs the same).
    save_uncertainty : sequence of str, default ()
        With ``qa``: also write these maps (``"entropy"``, ``"mutual_information"``, ``"disagreement"``)
        as ``uncertainty/<case>_<map>.nii.gz`` (float32, original geometry, 0 outside the fused domain, where
        every member is certain background). The subfolder keeps the output a folder of cases:
        ``medfuse submit`` and the folder readers see only the fused label maps.

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
    if method not in ("mean", "vote", "staple"):
        raise ValidationError(f"`method` must be 'mean', 'vote' or 'staple'; got {method!r}.")
    if method == "staple" and weights is not None:
        raise ValidationError("`weights` are not defined for method='staple': STAPLE estimates each member's "
                              "reliability itself. Leave `weights` out, or use method='vote' or 'mean'.")
    w = _as_fusion_weights(weights, len(paths))
    if w is not None and w.ndim == 2 and method == "vote":
        raise ValidationError("`weights` per member and class need method='mean'; give one weight per member "
                              "for 'vote'.")
    if save_probabilities and method != "mean":
        raise ValidationError(f"`save_probabilities` needs method='mean' ({method!r} gives no probabilities).")
    log, eps32 = check_space(space, eps)
    if log and method != "mean":
        raise ValidationError(f"`space` 'log' needs method='mean' (it fuses probabilities); got method={method!r}. "
                              "Drop space='log', or use method='mean'.")
    pp_dict: dict[str, Any] | None = None
    if postprocessing is not None:
        from ..postprocess import Postprocessing

        pp_dict = Postprocessing.read(postprocessing).to_dict()

    if not isinstance(qa, bool):
        raise ValidationError(f"`qa` must be True or False; got {qa!r}.")
    map_names = as_map_names(save_uncertainty)
    if map_names and not qa:
        raise ValidationError("`save_uncertainty` needs qa=True (the maps come from the QA pass); pass qa=True "
                              "or leave `save_uncertainty` out.")
    folders = [io.open_folder(p) for p in paths]
    all_cases = _common_cases(folders, cases)
    settings = _fusion_settings(paths, folders, method, w, pp_dict, save_probabilities)
    if log:  # only then: the fingerprint of a probability-space run is what it was
        settings.update(space="log", eps=float(eps32))
    if qa:  # likewise: a run without QA keeps its fingerprint
        settings.update(qa=True, save_uncertainty=list(map_names))
    seconds: dict[str, float] = {}
    rows: list[CaseQA] = []
    with journaled_run(out, settings, all_cases, overwrite=overwrite, command=_command("fuse_folders"),
                       extra_files=(FUSION_JSON,), case_files=case_files(map_names)) as (journal, plan):
        jobs = [_CaseJob(c, tuple(f.subset([c]) for f in folders), method, w, str(out), pp_dict,
                         save_probabilities, "log" if log else "probability", float(eps32), qa, map_names)
                for c in plan.todo]
        try:
            journal.begin(plan.todo)
            for case, sec, files, record in progress_bar(run_jobs(_fuse_and_digest, jobs, executor),
                                                         enabled=progress, total=len(jobs), desc="fuse"):
                journal.finish(case, files, seconds=round(sec, 3), **({"qa": record} if record else {}))
                seconds[case] = sec
        finally:  # rebuilt from the journal: after a SIGKILL the next run rebuilds it the same way
            write_json(out / FUSION_JSON, {"medfuse_version": __version__, "fingerprint": journal.fingerprint,
                                           **settings, "cases": journal.completed()})
            if qa:
                rows = _qa_rows(journal, journal.completed())
                write_qa(out, rows)
    return FusionReport(
        output=out, members=tuple(str(p) for p in paths), layouts=tuple(f.layout for f in folders),
        method=method, weights=None if w is None else w.tolist(), cases=tuple(all_cases),
        written=tuple(c for c in plan.todo if c in seconds), skipped=plan.done, seconds=seconds,
        postprocessing=pp_dict, fingerprint=journal.fingerprint, space="log" if log else "probability",
        qa=tuple(rows),
    )


def _qa_rows(journal: Any, cases: Sequence[str]) -> list[CaseQA]:
    """The QA rows the journal records of ``cases`` hold, most suspicious first."""
    rows = []
    for case in cases:
        row = row_from_record(journal.info(case))
        if row is None:  # pragma: no cover - a verified record of a QA run holds its row
            raise ValidationError(f"case {case!r}: its journal record holds no QA row; re-run with overwrite=True.")
        rows.append(row)
    return qa_table(rows)
