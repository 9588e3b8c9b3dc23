"""What the predictor returns: per-case predictions, folder reports and the time spent per phase."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..geometry import Box, Geometry
from .config import ConfigPlan
from .models import ModelFiles
from .sliding import Stopwatch

__all__ = ["CasePrediction", "InferenceReport", "Timings"]


@dataclass(frozen=True)
class Timings:
    """Seconds spent per phase (summed over cases for a folder).

    ``predictor`` is the time inside Paddle (copy in, run, copy out); ``preprocess``, ``tiling``
    (padding, flips, Gaussian weighting, accumulation) and ``resample`` (back to the original spacing,
    argmax) are medfuse's own work around it; ``load``, ``read`` and ``write`` are model loading and file IO.
    """

    load: float = 0.0
    read: float = 0.0
    preprocess: float = 0.0
    predictor: float = 0.0
    tiling: float = 0.0
    resample: float = 0.0
    write: float = 0.0

    @property
    def compute(self) -> float:
        """Preprocessing, prediction and resampling (no model loading, no file IO)."""
        return self.preprocess + self.predictor + self.tiling + self.resample

    @property
    def outside_predictor_share(self) -> float:
        """Share of :attr:`compute` spent outside the network (0 when nothing was computed)."""
        total = self.compute
        return (total - self.predictor) / total if total > 0 else 0.0

    def __add__(self, other: Timings) -> Timings:
        return Timings(**{k: getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__})

    @classmethod
    def _from(cls, watch: Stopwatch) -> Timings:
        return cls(**{k: watch.seconds.get(k, 0.0) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class CasePrediction:
    """The prediction of one case.

    Attributes
    ----------
    probabilities : ndarray of shape (C, *crop sizes) or None
        Class probabilities (background first) at the original spacing, covering ``crop_bbox`` only (the
        v1 layout's ``.npz``); None when they were streamed elsewhere.
    labels : ndarray of shape (Z, Y, X), uint8, or None
        Argmax (ties to the lower class) in the full original geometry, background outside the crop box.
    crop_bbox : tuple of (int, int)
    geometry : Geometry
        The image's full original geometry.
    size_after_resampling : tuple of int
        Network grid, transposed order.
    spacing_after_resampling : tuple of float
        Network spacing, transposed order.
    timings : Timings
    """

    probabilities: NDArray[np.floating[Any]] | None
    labels: NDArray[np.integer[Any]] | None
    crop_bbox: Box
    geometry: Geometry
    num_classes: int
    size_after_resampling: tuple[int, ...]
    spacing_after_resampling: tuple[float, ...]
    timings: Timings = field(default_factory=Timings)

    def properties(self) -> dict[str, Any]:
        """Extra v1 properties (``size_after_resampling``, ``spacing_after_resampling``, ...)."""
        return {
            "size_after_cropping": tuple(hi - lo for lo, hi in self.crop_bbox),
            "size_after_resampling": tuple(self.size_after_resampling),
            "spacing_after_resampling": np.asarray(self.spacing_after_resampling, dtype=np.float64),
        }


@dataclass(frozen=True)
class InferenceReport:
    """What :meth:`Predictor.predict_folder` did."""

    output: Path
    written: tuple[str, ...]
    skipped: tuple[str, ...]
    timings: Timings
    config: tuple[ConfigPlan, ...]
    models: tuple[ModelFiles, ...]
