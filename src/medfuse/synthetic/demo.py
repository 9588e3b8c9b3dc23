"""The built-in synthetic demo: the main job of medfuse, end to end, on data it makes itself.

:func:`run_demo` writes, for a few synthetic abdominal-CT cases, the prediction folders that four
PaddleSeg MedicalSeg models would write (v1 layout: ``.npz`` softmax cropped to the crop box, ``.pkl``
properties with a non-identity direction, ``.nii.gz`` labels), the references and the test images; fuses
them three ways (mean, weighted mean, vote); evaluates members and fusions; and zips a validated
submission. ``medfuse demo`` runs it and prints the Dice table.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._core.formatting import format_table
from ..errors import ValidationError

__all__ = ["DEMO_MEMBERS", "DemoResult", "run_demo"]

#: The simulated models: name -> knobs of :func:`medfuse.synthetic.simulate_probabilities`.
DEMO_MEMBERS: Mapping[str, Mapping[str, Any]] = {
    "2d": {"quality": 0.9, "boundary_noise": 0.9, "dilation": 0.0},
    "3d_fullres": {"quality": 0.9, "boundary_noise": 0.8, "dilation": 0.0},
    "cascade_fullres": {"quality": 0.9, "boundary_noise": 0.8, "dilation": 0.1},
    "weak": {"quality": 0.8, "boundary_noise": 1.5, "dilation": -0.3, "missed_labels": (8,), "false_positive_blobs": 3},
}
#: Weights of the weighted mean: the weak model counts a quarter as much as the good 3D ones.
DEMO_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 2.0, 0.5)
#: The competition's images have a flipped y axis; so do the demo's.
DEMO_DIRECTION = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote everything, and the scores it measured.

    Attributes
    ----------
    root : Path
        Folder holding ``members/``, ``references/``, ``imagesTs/``, ``fused_*/``, summaries and the zip.
    members, fusions : dict of str to Path
        Prediction folders of the simulated models and of the three fusions.
    dice : dict of str to dict of int to float
        Mean Dice per label (over cases) of each member and fusion.
    foreground_mean : dict of str to float
        Mean foreground Dice of each member and fusion.
    submission : Path
        The validated submission zip (of the weighted mean).
    labels : tuple of int
        The foreground labels scored.
    search_report : Path or None
        ``report.md`` of the ensemble search on the synthetic fold tree (None when ``search=False``).
    search_best : str
        Name of the ensemble the search chose ("" when it did not run).
    """

    root: Path
    members: dict[str, Path]
    fusions: dict[str, Path]
    dice: dict[str, dict[int, float]]
    foreground_mean: dict[str, float]
    submission: Path
    labels: tuple[int, ...] = field(default=())
    search_report: Path | None = None
    search_best: str = ""

    def table(self) -> str:
        """The Dice table: one row per member and fusion, one column per label, then the foreground mean."""
        headers = ["prediction", *[str(k) for k in self.labels], "mean"]
        rows = [[name, *[self.dice[name][k] for k in self.labels], self.foreground_mean[name]]
                for name in self.dice]
        return format_table(headers, rows, digits=3)


def _write_inputs(root: Path, *, cases: int, shape: Sequence[int], seed: int, num_labels: int,
                  log: Callable[[str], None]) -> tuple[dict[str, Path], int]:
    from .. import io, synthetic

    members = {name: root / "members" / name for name in DEMO_MEMBERS}
    for c in range(cases):
        case = f"case_{c:03d}"
        ph = synthetic.phantom(shape, num_labels=num_labels, seed=seed + c, direction=DEMO_DIRECTION)
        io.write_nifti(root / "references" / f"{case}.nii.gz", ph.labels, ph.geometry)
        io.write_nifti(root / "imagesTs" / f"{case}_0000.nii.gz", np.round(ph.image).astype(np.int16), ph.geometry)
        in_box = (slice(None), *(slice(lo, hi) for lo, hi in ph.crop_bbox))
        for m, (name, knobs) in enumerate(DEMO_MEMBERS.items()):
            # models trained on the same data make partly the same mistakes: share 30% of the error
            probs = synthetic.simulate_probabilities(
                ph, dtype=np.float16, seed=np.random.SeedSequence([seed, c, m]), error_correlation=0.3,
                shared_seed=np.random.SeedSequence([seed, c]), **knobs)
            io.write_v1_case(members[name], case, probabilities=probs[in_box],
                             geometry=ph.geometry, crop_bbox=ph.crop_bbox)
        log(f"  wrote {case}: {ph.geometry.shape} voxels, spacing {ph.geometry.spacing} mm, "
            f"crop box {[list(b) for b in ph.crop_bbox]}")
    return members, num_labels + 1


def run_demo(
    out: str | os.PathLike[str] | None = None, *, cases: int = 3, shape: Sequence[int] = (40, 112, 112),
    num_labels: int = 11, seed: int = 0, progress: bool = False, log: Callable[[str], None] | None = None,
    search: bool = True,
) -> DemoResult:
    """Run medfuse's main job on synthetic data: write model folders, fuse, evaluate, submit, search.

    Parameters
    ----------
    out : path, optional
        Folder to write into (created; must be empty or absent). A new temporary folder when omitted.
    cases : int
        Number of synthetic cases.
    shape : sequence of 3 int
        Image shape ``(Z, Y, X)`` of every case.
    num_labels : int
        Foreground labels per case (11 abdominal organs by default, as in the competition).
    seed : int
        Seed of the phantoms and simulated models.
    progress : bool
        Show progress bars.
    log : callable, optional
        Receives one line per step (``print`` for the command line); silent when omitted.
    search : bool
        Also write a small cross-validation tree (``cv/``, :func:`medfuse.synthetic.make_fold_tree`), search
        the best ensemble on it and write ``search/report.md`` (with its plots when matplotlib is installed).

    Returns
    -------
    DemoResult
    """
    from ..folders import evaluate_folder, fuse_folders, make_submission

    say = log or (lambda _msg: None)
    if cases < 1:
        raise ValidationError(f"`cases` must be at least 1; got {cases}.")
    root = Path(tempfile.mkdtemp(prefix="medfuse-demo-")) if out is None else Path(out)
    if root.exists() and any(root.iterdir()):
        raise ValidationError(f"`out` {str(root)!r} is not empty; give a new or empty folder for the demo.")
    root.mkdir(parents=True, exist_ok=True)
    say(f"writing {cases} synthetic cases and the v1-layout folders of {len(DEMO_MEMBERS)} models into {root}")
    members, num_classes = _write_inputs(root, cases=cases, shape=shape, seed=seed, num_labels=num_labels, log=say)
    folders = list(members.values())
    fusions = {"mean": root / "fused_mean", "weighted_mean": root / "fused_weighted_mean", "vote": root / "fused_vote"}
    say("fusing: mean, weighted mean (weights " + ", ".join(f"{n}={w:g}" for n, w in
                                                             zip(members, DEMO_WEIGHTS, strict=True)) + "), vote")
    fuse_folders(folders, fusions["mean"], method="mean", progress=progress)
    fuse_folders(folders, fusions["weighted_mean"], method="mean", weights=DEMO_WEIGHTS, progress=progress)
    fuse_folders(folders, fusions["vote"], method="vote", progress=progress)
    say("evaluating every member and fusion against the references")
    dice: dict[str, dict[int, float]] = {}
    fg: dict[str, float] = {}
    labels: tuple[int, ...] = tuple(range(1, num_classes))
    for name, folder in {**members, **fusions}.items():
        ev = evaluate_folder(root / "references", folder, labels=labels, progress=progress,
                             json_path=root / "summaries" / f"{name}.json")
        dice[name] = {k: float(ev.summary.mean[k]["dice"]) for k in labels}
        fg[name] = float(ev.summary.foreground_mean["dice"])
    submission = make_submission(fusions["weighted_mean"], root / "submission.zip", images=root / "imagesTs",
                                 num_classes=num_classes)
    say(f"submission: {submission.path} ({len(submission.cases)} cases, validated against the test images)")
    report, best = _run_search(root, seed=seed, progress=progress, say=say) if search else (None, "")
    return DemoResult(root=root, members=members, fusions=fusions, dice=dice, foreground_mean=fg,
                      submission=submission.path, labels=labels, search_report=report, search_best=best)


def _run_search(root: Path, *, seed: int, progress: bool, say: Callable[[str], None]) -> tuple[Path, str]:
    """Search the best ensemble on a synthetic fold tree in ``root/cv``; the report goes to ``root/search``."""
    from .._core.optional import has_module
    from ..search import search_ensembles
    from ..search.report import write_search_outputs
    from .folds import make_fold_tree

    tree = make_fold_tree(root / "cv", seed=seed)
    say(f"searching the best ensemble of {len(tree.models)} cross-validated models on {len(tree.cases)} "
        f"out-of-fold cases ({tree.root})")
    result = search_ensembles(list(tree.models.values()), n_bootstrap=200, seed=seed, progress=progress)
    plots = has_module("matplotlib")
    write_search_outputs(result, root / "search", plots=plots)
    say(f"search: best {result.best.name} (OOF Dice {result.best.score:.4f}); report {root / 'search' / 'report.md'}"
        + ("" if plots else " (install the 'plot' extra for its figures)"))
    return root / "search" / "report.md", result.best.name
