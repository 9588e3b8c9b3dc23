"""Synthetic cross-validation fold trees: what ``medfuse search`` reads, written from simulated models.

:func:`make_fold_tree` writes, for a few synthetic cases split into folds, the out-of-fold validation
folders that cross-validated PaddleSeg MedicalSeg / nnU-Net v1 (or nnU-Net v2) models write::

    <root>/<model>/fold_<k>/validation_raw/<case>.npz|.pkl|.nii.gz   (v1; ``validation/`` for v2)
    <root>/<model>/gt_niftis/<case>.nii.gz                            (the references)

so that :func:`medfuse.search_ensembles` (or ``medfuse search``) can be tried without real data.
:func:`write_fold_tree` writes such a tree from probabilities you made yourself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from .._core.validation import as_int
from ..errors import ValidationError
from .members import simulate_probabilities
from .shapes import Phantom, phantom

__all__ = ["FOLD_TREE_MODELS", "FoldTree", "Layout", "make_fold_tree", "write_fold_tree"]

#: Folder layout of a fold tree: PaddleSeg MedicalSeg / nnU-Net v1 or nnU-Net v2.
Layout = Literal["v1", "v2"]

#: The simulated models of :func:`make_fold_tree`: name -> knobs of
#: :func:`medfuse.synthetic.simulate_probabilities`. Each is good at some organs and worse at others,
#: so an ensemble (and per-class weights) beats every single model.
FOLD_TREE_MODELS: Mapping[str, Mapping[str, Any]] = {
    "2d": {"quality": 0.9, "boundary_noise": {1: 0.5, 2: 0.5, 3: 2.5, 4: 2.5}, "dilation": {3: 1.0, 4: 1.0}},
    "3d_fullres": {"quality": 0.9, "boundary_noise": {1: 2.5, 2: 2.5, 3: 0.5, 4: 0.5}, "dilation": {1: 1.0}},
    "3d_cascade_fullres": {"quality": 0.85, "boundary_noise": 1.5, "dilation": -0.5},
}


@dataclass(frozen=True)
class FoldTree:
    """Where :func:`make_fold_tree` wrote a cross-validation tree.

    Attributes
    ----------
    root : Path
        The tree's folder.
    models : dict of str to Path
        One cross-validation folder per model (``fold_<k>/`` inside): the ``models`` argument of
        :func:`medfuse.search_ensembles`.
    references : Path
        The reference label maps (the first model's ``gt_niftis/``, where search looks by default).
    folds : dict of str to int
        The validation fold of each case.
    layout : {"v1", "v2"}
    """

    root: Path
    models: dict[str, Path]
    references: Path
    folds: dict[str, int]
    layout: Layout

    @property
    def cases(self) -> tuple[str, ...]:
        """Case names, sorted."""
        return tuple(sorted(self.folds))

    def __repr__(self) -> str:
        return (f"FoldTree(root={str(self.root)!r}, models={list(self.models)}, cases={len(self.folds)}, "
                f"folds={len(set(self.folds.values()))}, layout={self.layout!r})")


def write_fold_tree(
    root: str | os.PathLike[str], phantoms: Mapping[str, Phantom],
    predictions: Mapping[str, Mapping[str, NDArray[Any]]], folds: Mapping[str, int], *,
    layout: Layout = "v1", hard: Sequence[str] = (), references: bool = True,
) -> dict[str, Path]:
    """Write model predictions of phantom cases as cross-validation folders.

    Parameters
    ----------
    root : path-like
        Folder to write into; one sub-folder per model.
    phantoms : mapping of str to Phantom
        The cases (name -> phantom); their labels are the references.
    predictions : mapping of str to mapping of str to ndarray of shape (C, Z, Y, X)
        Model -> case -> class probabilities in the phantom's full geometry (v1 stores the crop box only).
    folds : mapping of str to int
        Validation fold of each case.
    layout : {"v1", "v2"}
        v1: ``fold_<k>/validation_raw/`` with float16 npz cropped to the crop box, pkl and nii.gz; v2:
        ``fold_<k>/validation/`` with full float32 npz.
    hard : sequence of str
        Models written as label maps only (``.nii.gz``, no probabilities).
    references : bool
        Also write ``<model>/gt_niftis/<case>.nii.gz``.

    Returns
    -------
    dict of str to Path
        Each model's folder.
    """
    from .. import io
    from ..geometry import crop_to_box

    if layout not in ("v1", "v2"):
        raise ValidationError(f"`layout` must be 'v1' or 'v2'; got {layout!r}.")
    missing = sorted(set(phantoms) - set(folds))
    if missing:
        raise ValidationError(f"`folds` must give a fold for every case; missing {missing[:5]}.")
    out = Path(root)
    roots: dict[str, Path] = {}
    for model, per_case in predictions.items():
        mroot = out / model
        for case, probs in per_case.items():
            ph = phantoms[case]
            fold_dir = mroot / f"fold_{folds[case]}" / ("validation_raw" if layout == "v1" else "validation")
            if model in hard:
                io.write_nifti(fold_dir / f"{case}.nii.gz", np.asarray(probs).argmax(axis=0).astype(np.uint8),
                               ph.geometry)
            elif layout == "v1":
                io.write_v1_case(fold_dir, case, probabilities=crop_to_box(np.asarray(probs), ph.crop_bbox),
                                 geometry=ph.geometry, crop_bbox=ph.crop_bbox)
            else:
                io.write_v2_case(fold_dir, case, probabilities=np.asarray(probs, dtype=np.float32),
                                 geometry=ph.geometry, crop_bbox=ph.crop_bbox)
            if references:
                io.write_nifti(mroot / "gt_niftis" / f"{case}.nii.gz", ph.labels, ph.geometry)
        roots[model] = mroot
    return roots


def background_outside(probabilities: NDArray[Any], box: Sequence[Sequence[int]]) -> NDArray[Any]:
    """``probabilities`` set to background outside ``box`` (in place), as a v1 model predicts."""
    inside = np.zeros(probabilities.shape[1:], bool)
    inside[tuple(slice(lo, hi) for lo, hi in box)] = True
    probabilities[:, ~inside] = 0
    probabilities[0, ~inside] = 1
    return probabilities


def make_fold_tree(
    root: str | os.PathLike[str], *, models: Mapping[str, Mapping[str, Any]] | None = None,
    n_cases: int = 6, n_folds: int = 3, shape: Sequence[int] = (24, 48, 48), num_labels: int = 4,
    layout: Layout = "v1", seed: int = 0,
) -> FoldTree:
    """Write a small synthetic cross-validation tree of simulated models, ready for ensemble search.

    Parameters
    ----------
    root : path-like
        Folder to write into (created; must be empty or absent).
    models : mapping of str to mapping, optional
        Model name -> knobs of :func:`medfuse.synthetic.simulate_probabilities` (``quality``,
        ``boundary_noise``, ``dilation``, ...). :data:`FOLD_TREE_MODELS` when omitted.
    n_cases : int
        Number of cases ``case_000``, ``case_001``, ...; at least ``n_folds``.
    n_folds : int
        Number of folds, at least 2; case ``i`` is validated in fold ``i % n_folds``.
    shape : sequence of 3 int
        Image shape ``(Z, Y, X)`` of every case, each at least 8.
    num_labels : int
        Foreground labels per case (organs of :data:`medfuse.synthetic.ORGAN_NAMES`).
    layout : {"v1", "v2"}
        PaddleSeg MedicalSeg / nnU-Net v1 (``validation_raw/``, cropped float16 npz) or nnU-Net v2.
    seed : int
        Seed of the phantoms and the models; the same seed writes the same files.

    Returns
    -------
    FoldTree

    Examples
    --------
    >>> import tempfile, medfuse
    >>> tree = make_fold_tree(tempfile.mkdtemp())  # doctest: +SKIP
    >>> result = medfuse.search_ensembles(list(tree.models.values()))  # doctest: +SKIP
    """
    knobs = dict(FOLD_TREE_MODELS if models is None else models)
    if not knobs:
        raise ValidationError("`models` must name at least one model; got an empty mapping.")
    folds_n = as_int(n_folds, name="n_folds", minimum=2)
    cases_n = as_int(n_cases, name="n_cases", minimum=1)
    if cases_n < folds_n:
        raise ValidationError(f"`n_cases` must be at least `n_folds` ({folds_n}) so every fold validates a "
                              f"case; got {cases_n}.")
    seed_ = as_int(seed, name="seed", minimum=0)
    out = Path(root)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValidationError(f"`root` {str(out)!r} is not an empty folder; give a new or empty folder.")
    phantoms = {f"case_{i:03d}": phantom(shape, num_labels=num_labels, seed=seed_ * 1000 + i)
                for i in range(cases_n)}
    predictions: dict[str, dict[str, NDArray[Any]]] = {}
    for m, (name, kw) in enumerate(knobs.items()):
        predictions[name] = {
            case: background_outside(simulate_probabilities(
                ph, seed=np.random.SeedSequence([seed_, m, i]), error_correlation=0.3,
                shared_seed=np.random.SeedSequence([seed_, i]), **kw), ph.crop_bbox)
            for i, (case, ph) in enumerate(phantoms.items())}
    folds = {case: i % folds_n for i, case in enumerate(phantoms)}
    roots = write_fold_tree(out, phantoms, predictions, folds, layout=layout)
    first = next(iter(roots.values()))
    return FoldTree(root=out, models=roots, references=first / "gt_niftis", folds=folds, layout=layout)
