"""Builders of synthetic cross-validation sets whose best ensemble is known by construction.

A set is N phantom cases split into folds, and M simulated models, each a function
``(phantom, seed) -> (C, Z, Y, X) float16 probabilities`` in the full geometry. :func:`make_cv_set` keeps
everything in memory (as an :class:`~medfuse.search.oof.OutOfFold`); :func:`write_cv_folders` lays it out on disk
the way PaddleSeg MedicalSeg / nnU-Net v1 (or v2) cross-validation does, with
:func:`medfuse.synthetic.write_fold_tree` (the public helper; :func:`medfuse.synthetic.make_fold_tree` is the
ready-made tree).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medfuse import synthetic
from medfuse.geometry import crop_to_box
from medfuse.search import OutOfFold
from medfuse.synthetic import write_fold_tree
from medfuse.synthetic.folds import Layout, background_outside

Model = Callable[[synthetic.Phantom, int], NDArray[Any]]


@dataclass
class CVSet:
    phantoms: dict[str, synthetic.Phantom]
    predictions: dict[str, dict[str, NDArray[Any]]]  # model -> case -> full (C, Z, Y, X)
    folds: dict[str, int]

    @property
    def models(self) -> list[str]:
        return list(self.predictions)

    @property
    def cases(self) -> list[str]:
        return sorted(self.phantoms)

    def oof(self, *, crop: bool = True, hard: Sequence[str] = ()) -> OutOfFold:
        """In memory; ``crop`` stores each prediction in the phantom's crop box (as v1 does)."""
        preds: dict[str, dict[str, NDArray[Any]]] = {}
        boxes: dict[str, dict[str, Any]] = {}
        for m, per_case in self.predictions.items():
            preds[m], boxes[m] = {}, {}
            for c, p in per_case.items():
                box = self.phantoms[c].crop_bbox if crop else tuple((0, s) for s in p.shape[1:])
                a = crop_to_box(p, box)
                preds[m][c] = a.argmax(axis=0).astype(np.uint8) if m in hard else np.ascontiguousarray(a)
                boxes[m][c] = box
        return OutOfFold.from_arrays(
            {c: ph.labels for c, ph in self.phantoms.items()}, preds, folds=self.folds, boxes=boxes,
            spacing_mm={c: ph.spacing for c, ph in self.phantoms.items()},
        )


def quality(q: float, **knobs: Any) -> Model:
    """A model of the given :func:`medfuse.synthetic.simulate_probabilities` quality."""

    def model(ph: synthetic.Phantom, seed: int) -> NDArray[Any]:
        return synthetic.simulate_probabilities(ph, quality=q, seed=seed, **knobs)

    return model


def expert(good: Sequence[int], *, num_labels: int = 11, bad_shift_mm: float = 5.0) -> Model:
    """Accurate on the ``good`` labels, and over-segments every other label by ``bad_shift_mm``."""
    dilation = {c: (0.0 if c in good else bad_shift_mm) for c in range(1, num_labels + 1)}
    noise = {c: (0.3 if c in good else 3.0) for c in range(1, num_labels + 1)}
    return quality(0.95, dilation=dilation, boundary_noise=noise)


def with_fragments(base: Model, labels: Sequence[int], *, radius: int = 2) -> Model:
    """``base`` plus, for each of ``labels``, a small confident sphere of that label in free body space,
    far from the label's organ (a fragment the largest-component postprocessing should remove). The spot
    depends on the phantom only: every such model makes the same systematic error, so fusion keeps it."""

    def model(ph: synthetic.Phantom, seed: int) -> NDArray[Any]:
        p = base(ph, seed).astype(np.float32)
        placed = np.zeros(ph.labels.shape, bool)
        for k, label in enumerate(labels):
            center = _far_spot(ph, label, avoid=placed, seed=ph.seed * 31 + k)  # same spot in every model
            zz, yy, xx = np.ogrid[tuple(slice(0, s) for s in ph.labels.shape)]
            ball = ((zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2) <= radius**2
            placed |= ball
            p[:, ball] = 0.0
            p[label, ball] = 1.0
        return p.astype(np.float16)

    return model


def _far_spot(ph: synthetic.Phantom, label: int, *, avoid: NDArray[np.bool_], seed: int) -> tuple[int, ...]:
    """A background voxel of the body, at least 6 voxels from every organ, as far as possible from ``label``."""
    from scipy import ndimage

    body = np.zeros(ph.labels.shape, bool)
    body[tuple(slice(lo + 3, hi - 3) for lo, hi in ph.crop_bbox)] = True
    free = body & (ndimage.distance_transform_edt(ph.labels == 0) >= 6) & ~ndimage.binary_dilation(avoid, iterations=6)
    dist = ndimage.distance_transform_edt(ph.labels != label)
    score = np.where(free, dist, -1.0)
    rng = np.random.default_rng(seed)
    top = np.flatnonzero(score >= np.quantile(score[free], 0.9)) if free.any() else np.flatnonzero(score == score.max())
    return tuple(int(v) for v in np.unravel_index(int(rng.choice(top)), ph.labels.shape))


def make_cv_set(models: Mapping[str, Model], *, n_cases: int = 10, n_folds: int = 5,
                shape: tuple[int, int, int] = (32, 64, 64), seed: int = 0) -> CVSet:
    """N phantoms (``case_000`` ...), folds ``i % n_folds``, and every model's prediction of every case
    (background outside the phantom's crop box)."""
    phantoms = {f"case_{i:03d}": synthetic.phantom(shape, seed=seed * 1000 + i) for i in range(n_cases)}
    predictions: dict[str, dict[str, NDArray[Any]]] = {}
    for j, (name, model) in enumerate(models.items()):
        predictions[name] = {c: background_outside(model(ph, seed * 1000 + 100 * j + i), ph.crop_bbox)
                             for i, (c, ph) in enumerate(sorted(phantoms.items()))}
    folds = {c: i % n_folds for i, c in enumerate(sorted(phantoms))}
    return CVSet(phantoms, predictions, folds)


def identical(cv: CVSet, source: str, copies: Sequence[str]) -> CVSet:
    """``cv`` with models ``copies`` whose predictions are exactly those of ``source``."""
    preds = dict(cv.predictions)
    for name in copies:
        preds[name] = {c: p.copy() for c, p in cv.predictions[source].items()}
    return CVSet(cv.phantoms, preds, cv.folds)


def write_cv_folders(cv: CVSet, root: Path, *, layout: Layout = "v1", hard: Sequence[str] = (),
                     gt: bool = True) -> list[Path]:
    """One folder per model (see :func:`medfuse.synthetic.write_fold_tree`)."""
    return list(write_fold_tree(root, cv.phantoms, cv.predictions, cv.folds, layout=layout,
                                hard=hard, references=gt).values())
