"""Run exported PaddleSeg MedicalSeg / nnU-Net v1 models (2D, 3D, cascade) on raw images.

The main entry point is :class:`Predictor`::

    from medfuse.inference import Predictor

    with Predictor(["fold_0", "fold_1"], plans="nnUNetPlansv2.1_plans_3D.pkl", stage=1) as p:
        p.predict_folder("imagesTs", "pred_3d_fullres", save_probabilities=True)

The building blocks are public too: :func:`plan_config` (the pure Paddle configuration decision),
:func:`find_models` / :func:`read_signature`, :func:`load_plans`, :func:`preprocess`,
:func:`predict_sliding_window`, :func:`cascade_channels`. Paddle is imported only when a model is loaded.
"""

from __future__ import annotations

from .cascade import cascade_channels
from .casefiles import find_cases
from .config import ConfigPlan, PaddleEnvironment, apply_config, plan_config
from .models import LoadedModel, ModelFiles, ModelSignature, find_model, find_models, load_model, read_signature
from .plans import IntensityProperties, Plans, StagePlan, load_plans
from .preprocess import PreprocessedCase, nonzero_bbox, normalize, preprocess
from .resample import resample_volume, resize_labels, separate_z_axis
from .results import CasePrediction, InferenceReport, Timings
from .runner import Predictor
from .sliding import gaussian_importance_map, mirror_combinations, predict_sliding_window, tile_starts

__all__ = [
    "CasePrediction",
    "ConfigPlan",
    "InferenceReport",
    "IntensityProperties",
    "LoadedModel",
    "ModelFiles",
    "ModelSignature",
    "PaddleEnvironment",
    "Plans",
    "Predictor",
    "PreprocessedCase",
    "StagePlan",
    "Timings",
    "apply_config",
    "cascade_channels",
    "find_cases",
    "find_model",
    "find_models",
    "gaussian_importance_map",
    "load_model",
    "load_plans",
    "mirror_combinations",
    "nonzero_bbox",
    "normalize",
    "plan_config",
    "predict_sliding_window",
    "preprocess",
    "read_signature",
    "resample_volume",
    "resize_labels",
    "separate_z_axis",
    "tile_starts",
]
