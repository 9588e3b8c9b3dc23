"""Out-of-fold (OOF) predictions: every training case predicted by the fold model that did not train on it.

A model trained with 5-fold cross-validation leaves, per fold, the validation predictions of that fold's
held-out cases (nnU-Net v1 / PaddleSeg MedicalSeg: ``<root>/fold_<k>/validation_raw/``, nnU-Net v2:
``<root>/fold_<k>/validation/``) and the references in ``<root>/gt_niftis/``. Put together, the folds give
one honest prediction per training case: :func:`assemble_oof` collects them for several models and checks
that they fit together (each case in exactly one fold, every model the same cases, a reference for each).

:class:`OutOfFold` is what :func:`medfuse.search.search_ensembles` reads, one case at a time; build one
from folders with :func:`assemble_oof` or from arrays with :meth:`OutOfFold.from_arrays`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from .._core.validation import as_int, as_label_map, as_spacing
from ..errors import CaseMismatchError, FormatError, ValidationError
from ..geometry import Box, validate_box

__all__ = ["MemberPrediction", "OOFCase", "OutOfFold", "assemble_oof"]

_FOLD = re.compile(r"^fold_(\d+)$")
#: prediction sub-folder of a fold, by layout: PaddleSeg MedicalSeg / nnU-Net v1, nnU-Net v2
_VALIDATION_DIRS = ("validation_raw", "validation")


def _summary(names: Sequence[str], limit: int = 5) -> str:
    items = sorted(names)
    shown = ", ".join(repr(n) for n in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


class MemberPrediction:
    """One model's prediction of one case, read on demand.

    Attributes
    ----------
    box : tuple of (int, int)
        Where the prediction lives in the full image (half-open, array order); outside it the model
        predicts background.
    num_classes : int or None
        Probability channels C; ``None`` for a hard member (a label map).
    dtype : numpy.dtype or None
        Stored dtype of the probabilities (float16 for v1 folders).
    source : str
        The file the prediction is read from (``""`` for arrays in memory); error messages name it.
    """

    def __init__(self, *, box: Box, num_classes: int | None,
                 channels: Callable[[], Iterator[tuple[int, NDArray[Any]]]] | None = None,
                 labels: Callable[[], NDArray[Any]] | None = None, dtype: Any = None,
                 description: str = "", source: str = "") -> None:
        self.box = box
        self.num_classes = num_classes
        self.dtype = None if dtype is None else np.dtype(dtype)
        self._channels = channels
        self._labels = labels
        self.description = description
        self.source = source

    @property
    def is_hard(self) -> bool:
        return self.num_classes is None

    def iter_channels(self) -> Iterator[tuple[int, NDArray[Any]]]:
        """``(c, probabilities of class c over the box)``; the buffer may be reused between channels."""
        if self._channels is None:
            raise ValidationError(f"{self.description or 'this member'} is a label map, not probabilities.")
        return self._channels()

    def read_labels(self) -> NDArray[Any]:
        """Label map over :attr:`box` (hard members)."""
        if self._labels is None:
            raise ValidationError(f"{self.description or 'this member'} has probabilities, not a label map.")
        return self._labels()

    def __repr__(self) -> str:
        return f"MemberPrediction({self.description!r}, box={self.box}, num_classes={self.num_classes})"


@dataclass(frozen=True)
class OOFCase:
    """One case: its reference, spacing, fold, and each model's prediction.

    Attributes
    ----------
    name : str
    fold : int
        The cross-validation fold the case was held out in.
    reference : ndarray of shape (Z, Y, X), integer
    spacing_mm : tuple of float
        Voxel size, array order.
    members : tuple of MemberPrediction
        In the order of :attr:`OutOfFold.models`.
    """

    name: str
    fold: int
    reference: NDArray[Any]
    spacing_mm: tuple[float, ...]
    members: tuple[MemberPrediction, ...]


class OutOfFold:
    """Out-of-fold predictions of M models on the same N cases, read one case at a time.

    Attributes
    ----------
    models : tuple of str
        Model names (the model folders' names, or the mapping keys of :meth:`from_arrays`).
    cases : tuple of str
        Case names, sorted.
    folds : dict of str to int
        Fold of each case.
    num_classes : int or None
        Probability channels of the soft members (``None`` when every member is a label map).
    sources : tuple of str
        Where each model's predictions come from (for reports).
    notes : tuple of str
        Things worth knowing that are not errors (e.g. models with different fold assignments).
    """

    def __init__(self, models: Sequence[str], cases: Sequence[str], folds: Mapping[str, int], *,
                 loader: Callable[[str], OOFCase], num_classes: int | None, sources: Sequence[str] = (),
                 notes: Sequence[str] = ()) -> None:
        self.models = tuple(models)
        self.cases = tuple(cases)
        self.folds = dict(folds)
        self.num_classes = num_classes
        self.sources = tuple(sources) or self.models
        self.notes = tuple(notes)
        self._loader = loader
        if len(set(self.models)) != len(self.models):
            dup = sorted({m for m in self.models if self.models.count(m) > 1})
            raise ValidationError(
                f"model names must be unique (they name the members in reports and weights); got {dup} "
                "more than once. Rename the folders or pass `names=`."
            )

    def __len__(self) -> int:
        return len(self.cases)

    def __repr__(self) -> str:
        return (f"OutOfFold(models={list(self.models)}, cases={len(self.cases)}, "
                f"folds={sorted(set(self.folds.values()))})")

    def load(self, case: str) -> OOFCase:
        """Reference and members of ``case`` (reads the reference; members are read when iterated)."""
        if case not in self.folds:
            raise CaseMismatchError(f"`case` {case!r} is not one of the {len(self.cases)} out-of-fold cases.")
        return self._loader(case)

    @classmethod
    def from_arrays(
        cls,
        references: Mapping[str, NDArray[Any]],
        predictions: Mapping[str, Mapping[str, NDArray[Any]]],
        *,
        folds: Mapping[str, int] | None = None,
        boxes: Mapping[str, Mapping[str, Sequence[Sequence[int]]]] | None = None,
        spacing_mm: float | Sequence[float] | Mapping[str, Sequence[float]] | None = None,
        n_folds: int = 5,
        seed: int = 0,
    ) -> OutOfFold:
        """Out-of-fold predictions held in memory.

        Reference first, predictions second (as everywhere in medfuse).

        Parameters
        ----------
        references : mapping of case name to ndarray of shape (Z, Y, X)
        predictions : mapping of model name to mapping of case name to ndarray
            Each model's prediction of each case: ``(C, *box sizes)`` float16/float32 probabilities, or a
            ``(*box sizes)`` integer label map (a hard member).
        folds : mapping of case name to int, optional
            The fold each case was held out in; when omitted the cases are split into ``n_folds`` folds
            at random (``seed``).
        boxes : mapping of model name to mapping of case name to box, optional
            Where a cropped prediction lives in the reference's grid (full extent when omitted).
        spacing_mm : float, sequence, or mapping of case name to sequence, optional
            Voxel spacing (1 mm when omitted).
        """
        _check_order(references, predictions)
        models = list(predictions)
        if not models:
            raise ValidationError("`predictions` must hold at least one model; got none.")
        cases = sorted(references)
        _check_same_cases({m: list(predictions[m]) for m in models}, cases, what="models")
        fold_of = _as_folds(folds, cases, n_folds=n_folds, seed=seed)
        n_classes = None
        for m in models:
            for case in cases:
                a = predictions[m][case]
                if np.asarray(a).dtype.kind == "f":
                    n_classes = int(np.shape(a)[0])
                    break
            if n_classes is not None:
                break

        def loader(case: str) -> OOFCase:
            ref = as_label_map(references[case], name=f"references[{case!r}]")
            spacing = spacing_mm.get(case) if isinstance(spacing_mm, Mapping) else spacing_mm
            members = []
            for m in models:
                a = np.asarray(predictions[m][case])
                box_given = (boxes or {}).get(m, {}).get(case)
                soft = a.dtype.kind == "f"
                spatial = a.shape[1:] if soft else a.shape
                box = validate_box(box_given, ref.shape, name=f"boxes[{m!r}][{case!r}]") if box_given \
                    is not None else tuple((0, int(s)) for s in ref.shape)
                if tuple(hi - lo for lo, hi in box) != tuple(spatial):
                    raise ValidationError(
                        f"`predictions[{m!r}][{case!r}]` has spatial shape {tuple(spatial)} but its box "
                        f"{[list(b) for b in box]} in the reference of shape {ref.shape} has size "
                        f"{tuple(hi - lo for lo, hi in box)}; pass the crop box in `boxes` or a full-size array."
                    )
                if soft:
                    members.append(MemberPrediction(
                        box=box, num_classes=int(a.shape[0]), dtype=a.dtype, description=f"{m}/{case}",
                        channels=_channels_of(a),
                    ))
                else:
                    members.append(MemberPrediction(
                        box=box, num_classes=None, description=f"{m}/{case}",
                        labels=_labels_of(a, name=f"predictions[{m!r}][{case!r}]"),
                    ))
            return OOFCase(case, fold_of[case], ref, as_spacing(spacing, ndim=ref.ndim), tuple(members))

        return cls(models, cases, fold_of, loader=loader, num_classes=n_classes)


def _channels_of(a: NDArray[Any]) -> Callable[[], Iterator[tuple[int, NDArray[Any]]]]:
    def channels() -> Iterator[tuple[int, NDArray[Any]]]:
        return iter(enumerate(a))
    return channels


def _labels_of(a: NDArray[Any], *, name: str) -> Callable[[], NDArray[Any]]:
    def labels() -> NDArray[Any]:
        return as_label_map(a, name=name)
    return labels


def _as_folds(folds: Mapping[str, int] | None, cases: Sequence[str], *, n_folds: int, seed: int
              ) -> dict[str, int]:
    if folds is None:
        k = max(1, min(as_int(n_folds, name="n_folds", minimum=1), len(cases)))
        order = np.random.default_rng(seed).permutation(len(cases))
        return {cases[int(i)]: int(j % k) for j, i in enumerate(order)}
    missing = [c for c in cases if c not in folds]
    if missing:
        raise CaseMismatchError(f"`folds` has no fold for {len(missing)} cases ({_summary(missing)}).")
    return {c: as_int(folds[c], name=f"folds[{c!r}]", minimum=0) for c in cases}


def _check_order(references: Any, predictions: Any) -> None:
    """Refuse swapped arguments: references map cases to arrays, predictions map models to such mappings."""
    ref_nested = isinstance(references, Mapping) and any(isinstance(v, Mapping) for v in references.values())
    pred_flat = isinstance(predictions, Mapping) and any(not isinstance(v, Mapping) for v in predictions.values())
    if ref_nested or pred_flat:
        raise ValidationError(
            "`references` must map case names to reference label maps and `predictions` model names to "
            "mappings of case names to arrays; got them the other way round? The order is reference first: "
            "OutOfFold.from_arrays(references, predictions, ...)."
        )


def _check_same_cases(per_model: Mapping[str, Sequence[str]], expected: Sequence[str], *, what: str) -> None:
    want = set(expected)
    problems = []
    for model, cases in per_model.items():
        have = set(cases)
        missing, extra = sorted(want - have), sorted(have - want)
        if missing:
            problems.append(f"{model!r} lacks {len(missing)} cases ({_summary(missing)})")
        if extra:
            problems.append(f"{model!r} has {len(extra)} cases without a reference ({_summary(extra)})")
    if problems:
        raise CaseMismatchError(
            f"all {what} must cover the same cases as the references ({len(want)} cases): "
            + "; ".join(problems) + ". Predict the missing cases (or remove the extra ones) so that every "
            "model has one prediction per reference case."
        )


# ------------------------------------------------------------------------------------------------------
# folders
# ------------------------------------------------------------------------------------------------------


def _fold_dirs(root: Path) -> dict[int, Path]:
    folds: dict[int, Path] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        match = _FOLD.match(entry.name)
        if match and entry.is_dir():
            folds[int(match.group(1))] = Path(entry.path)
    return folds


def _validation_dir(fold_dir: Path, *, model: str) -> Path:
    for name in _VALIDATION_DIRS:
        if (fold_dir / name).is_dir():
            return fold_dir / name
    raise FormatError(
        f"model {model!r}: {fold_dir} has no validation predictions (expected a sub-folder "
        f"{' or '.join(_VALIDATION_DIRS)}/); was this fold's validation run with --npz / --save_npz?"
    )


def assemble_oof(
    models: Sequence[str | os.PathLike[str]],
    *,
    references: str | os.PathLike[str] | None = None,
    names: Sequence[str] | None = None,
    n_folds: int = 5,
    seed: int = 0,
) -> OutOfFold:
    """Collect the out-of-fold validation predictions of several cross-validated models.

    Parameters
    ----------
    models : sequence of path-like
        One folder per model. Either a cross-validation root holding ``fold_0`` ... ``fold_<K-1>``, each
        with ``validation_raw/`` (PaddleSeg MedicalSeg / nnU-Net v1: ``.npz`` + ``.pkl`` + ``.nii.gz``) or
        ``validation/`` (nnU-Net v2); or a folder of already assembled predictions (then the cases are
        split into ``n_folds`` folds at random for the honest estimates, seeded by ``seed``).
    references : path-like, optional
        Folder of reference label maps ``<case>.nii.gz``; default: ``gt_niftis/`` of the first model
        root that has one.
    names : sequence of str, optional
        Model names for reports and weights; default the folders' names.

    Returns
    -------
    OutOfFold

    Raises
    ------
    FormatError
        A folder is missing or unreadable, a fold has no validation folder, fold numbers have a gap.
    CaseMismatchError
        A case is in two folds; models cover different cases; a case has no reference (or a reference
        no prediction). Messages list the offending cases and folds.
    """
    from .. import io

    roots, model_names = _model_roots(models, names)
    collected = [_collect_model(root, name) for root, name in zip(roots, model_names, strict=True)]
    folders = [where for where, _ in collected]
    _check_same_folds({n: f for n, (_, f) in zip(model_names, collected, strict=True) if f is not None})
    ref_folder = io.open_folder(_reference_dir(references, roots))
    cases = sorted(ref_folder.cases)
    _check_same_cases({n: list(w) for n, w in zip(model_names, folders, strict=True)}, cases,
                      what="models")
    fold_of, notes = _fold_assignment(folders, model_names, cases, n_folds=n_folds, seed=seed)
    num_classes = next((w[cases[0]][1].case(cases[0]).num_classes for w in folders
                        if w[cases[0]][1].layout != "labels"), None) if cases else None

    def loader(case: str) -> OOFCase:
        ref_src = ref_folder.case(case)
        srcs = [w[case][1].case(case) for w in folders]
        geometry = io.check_same_geometry([ref_src, *srcs])
        reference = ref_src.read_labels()
        members = tuple(_folder_member(src, name) for src, name in zip(srcs, model_names, strict=True))
        return OOFCase(case, fold_of[case], reference, geometry.spacing, members)

    sources = [str(r) for r in roots]
    return OutOfFold(model_names, cases, fold_of, loader=loader, num_classes=num_classes, sources=sources,
                     notes=notes)


#: per model: case -> (its fold, or None for an assembled folder; the PredictionFolder holding it)
_Where = dict[str, tuple[int | None, Any]]


def _model_roots(models: Sequence[str | os.PathLike[str]], names: Sequence[str] | None
                 ) -> tuple[list[Path], list[str]]:
    roots = [Path(m) for m in models]
    if not roots:
        raise ValidationError("`models` must name at least one model folder; got none.")
    model_names = [str(n) for n in names] if names is not None else [r.resolve().name for r in roots]
    if len(model_names) != len(roots):
        raise ValidationError(f"`names` must have one entry per model ({len(roots)}); got {len(model_names)}.")
    return roots, model_names


def _collect_model(root: Path, name: str) -> tuple[_Where, list[int] | None]:
    """Where each case of one model is (fold, folder), and the model's fold numbers (None: no folds)."""
    from .. import io

    if not root.is_dir():
        raise FormatError(f"model folder {root} does not exist or is not a folder.")
    fold_dirs = _fold_dirs(root)
    if not fold_dirs:
        folder = io.open_folder(root)
        _check_softmax(folder, name)
        return {case: (None, folder) for case in folder.cases}, None
    numbers = sorted(fold_dirs)
    gaps = sorted(set(range(numbers[-1] + 1)) - set(numbers))
    if gaps:
        raise FormatError(
            f"model {name!r} ({root}) has folds {numbers} but no "
            f"{', '.join(f'fold_{g}' for g in gaps)}: a fold is missing. Run its training/validation, "
            "or assemble the out-of-fold predictions without the gap."
        )
    where: _Where = {}
    seen: dict[str, list[int]] = {}
    for k in numbers:
        folder = io.open_folder(_validation_dir(fold_dirs[k], model=name))
        _check_softmax(folder, name)
        for case in folder.cases:
            seen.setdefault(case, []).append(k)
            where[case] = (k, folder)
    twice = {c: ks for c, ks in seen.items() if len(ks) > 1}
    if twice:
        shown = "; ".join(f"{c!r} in folds {ks}" for c, ks in sorted(twice.items())[:5])
        raise CaseMismatchError(
            f"model {name!r} ({root}): {len(twice)} cases are in more than one fold's validation set "
            f"({shown}{', ...' if len(twice) > 5 else ''}); each case must be held out in exactly one "
            "fold. Remove the stray copies."
        )
    return where, numbers


def _check_same_folds(fold_sets: dict[str, list[int]]) -> None:
    if len({tuple(v) for v in fold_sets.values()}) > 1:
        raise FormatError(
            "the models have different folds: " + "; ".join(f"{m!r}: {v}" for m, v in fold_sets.items())
            + ". A fold is missing in some model; complete it or leave the incomplete model out."
        )


def _reference_dir(references: str | os.PathLike[str] | None, roots: Sequence[Path]) -> Path:
    ref_dir = Path(references) if references is not None else next(
        (r / "gt_niftis" for r in roots if (r / "gt_niftis").is_dir()), None)
    if ref_dir is None:
        raise FormatError(
            f"no references: none of the model folders ({', '.join(str(r) for r in roots)}) has a gt_niftis/ "
            "folder; pass `references=` (the folder of <case>.nii.gz reference label maps)."
        )
    return ref_dir


def _fold_assignment(folders: Sequence[_Where], model_names: Sequence[str], cases: Sequence[str], *,
                     n_folds: int, seed: int) -> tuple[dict[str, int], list[str]]:
    """The fold of each case (the first cross-validated model's, else a seeded random split) and notes."""
    notes: list[str] = []
    first_with_folds = next((w for w in folders if any(f is not None for f, _ in w.values())), None)
    if first_with_folds is None:
        fold_of = _as_folds(None, cases, n_folds=n_folds, seed=seed)
        notes.append(f"no fold_<k> folders: cases split at random into {len(set(fold_of.values()))} folds "
                     "for the honest estimates.")
        return fold_of, notes
    # a cross-validated model has a fold for every case
    fold_of = {c: int(cast(int, first_with_folds[c][0])) for c in cases}
    for name, w in zip(model_names, folders, strict=True):
        differ = [c for c in cases if w[c][0] is not None and w[c][0] != fold_of[c]]
        if differ:
            notes.append(f"model {name!r} holds out {len(differ)} cases in other folds than "
                         f"{model_names[0]!r}; the honest estimates use {model_names[0]!r}'s folds.")
    return fold_of, notes


def _check_softmax(folder: Any, model: str) -> None:
    if getattr(folder, "regions_class_order", None) is not None:
        raise FormatError(
            f"model {model!r} ({folder.path}) is region-based (sigmoid region channels, regions_class_order "
            f"{list(folder.regions_class_order)}); the search fuses softmax class probabilities only."
        )


def _folder_member(src: Any, model: str) -> MemberPrediction:
    desc = f"{model}/{src.name}"
    if src.has_probabilities:
        src.check()
        return MemberPrediction(box=tuple(src.crop_bbox), num_classes=int(src.num_classes),
                                channels=src.iter_channels, dtype=src.npz_member().dtype, description=desc,
                                source=str(src.npz_path))
    shape = src.geometry.shape
    return MemberPrediction(box=tuple((0, int(s)) for s in shape), num_classes=None,
                            labels=src.read_labels, description=desc, source=str(src.label_path))
