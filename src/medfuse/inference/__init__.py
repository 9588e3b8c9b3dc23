"""Run exported PaddleSeg MedicalSeg / nnU-Net v1 models (2D, 3D, cascade) on raw images.

The main entry point is :class:`Predictor`::

    from medfuse.inference import Predictor

    with Predictor(["fold_0", "fold_1"], plans="nnUNetPlansv2.1_plans_3D.pkl", stage=1) as p:
        p.predict_folder("imagesTs", "pred_3d_fullres", save_probabilities=True)

The building blocks are public too: :func:`plan_config` (the pure Paddle configuration decision),
:func:`find_models` / :func:`read_signature`, :func:`load_plans`, :func:`preprocess`,
:func:`predict_sliding_window`, :func:`cascade_channels`; smaller helpers (resampling, tiles, mirror axes)
stay importable here and are documented in their modules. Paddle is imported only when a model is loaded.
"""

from __future__ import annotations

# ``name as name``: plumbing kept importable from here for code written against earlier releases, but not
# part of the documented surface (``__all__``).
from .cascade import cascade_channels
from .casefiles import find_cases as find_cases
from .config import ConfigPlan, PaddleEnvironment, plan_config
from .config import apply_config as apply_config
from .models import LoadedModel, ModelSignature, find_model, find_models, load_model, read_signature
from .models import ModelFiles as ModelFiles
from .plans import IntensityProperties as IntensityProperties
from .plans import Plans, load_plans
from .plans import StagePlan as StagePlan
from .preprocess import PreprocessedCase, preprocess
from .preprocess import nonzero_bbox as nonzero_bbox
from .preprocess import normalize as normalize
from .resample import resample_volume as resample_volume
from .resample import resize_labels as resize_labels
from .resample import separate_z_axis as separate_z_axis
from .results import CasePrediction, InferenceReport, Timings
from .runner import Predictor
from .sliding import gaussian_importance_map as gaussian_importance_map
from .sliding import mirror_combinations as mirror_combinations
from .sliding import predict_sliding_window
from .sliding import tile_starts as tile_starts

__all__ = [
    "CasePrediction",
    "ConfigPlan",
    "InferenceReport",
    "LoadedModel",
    "ModelSignature",
    "PaddleEnvironment",
    "Plans",
    "Predictor",
    "PreprocessedCase",
    "Timings",
    "cascade_channels",
    "find_model",
    "find_models",
    "load_model",
    "load_plans",
    "plan_config",
    "predict_sliding_window",
    "preprocess",
    "read_signature",
]
