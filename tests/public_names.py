"""The public names of release 0.x before the package layout (issue 10), per module: each must keep working.

Taken from ``git show <before>:src/medfuse/__init__.py`` (the lazy table and the errors) and the ``__all__`` of
each documented module. Never edit a list to make a test pass: a name that goes away breaks user code.
"""

from __future__ import annotations

PUBLIC_NAMES: dict[str, tuple[str, ...]] = {
    "medfuse": (
        "Candidate", "CaseMismatchError", "CaseSummary", "Evaluation", "FormatError", "FusionReport", "Geometry",
        "GeometryMismatchError", "LabelOverlap", "MedfuseError", "MissingDependencyError", "OutOfFold",
        "OverlapResult", "Postprocessing", "Predictor", "ProbabilityAccumulator", "SearchResult",
        "UnsafePickleError", "ValidationError", "VoteAccumulator", "__version__", "aggregate_cases",
        "apply_postprocessing", "assemble_oof", "average_probabilities", "check_same_geometry", "confusion_matrix",
        "determine_postprocessing", "dice", "evaluate_folder", "fuse_folders", "fuse_probabilities",
        "keep_largest_component", "majority_vote", "make_submission", "open_folder", "overlap",
        "overlap_from_confusion", "read_nifti", "search_ensembles", "softmax", "staple", "staple_binary",
        "validate_submission", "write_nifti", "write_v1_case",
    ),
    "medfuse.io": (
        "CaseSource", "InflateBackend", "Layout", "NpzMember", "PredictionFolder", "WrittenCase", "atomic_write",
        "check_same_geometry", "inflate_backend", "is_temporary", "iter_npz_channels", "label_map_files",
        "load_pickle", "loads_pickle", "npz_keys", "npz_member", "open_folder", "read_geometry", "read_nifti",
        "read_npz", "save_pickle", "v1_properties", "v2_properties", "write_nifti", "write_v1_case",
        "write_v2_case",
    ),
    "medfuse.inference": (
        "CasePrediction", "ConfigPlan", "InferenceReport", "IntensityProperties", "LoadedModel", "ModelFiles",
        "ModelSignature", "PaddleEnvironment", "Plans", "Predictor", "PreprocessedCase", "StagePlan", "Timings",
        "apply_config", "cascade_channels", "find_cases", "find_model", "find_models", "gaussian_importance_map",
        "load_model", "load_plans", "mirror_combinations", "nonzero_bbox", "normalize", "plan_config",
        "predict_sliding_window", "preprocess", "read_signature", "resample_volume", "resize_labels",
        "separate_z_axis", "tile_starts",
    ),
    "medfuse.synthetic": (
        "ORGAN_NAMES", "Phantom", "phantom", "simulate_labels", "simulate_members", "simulate_probabilities",
    ),
    "medfuse.search": (
        "Candidate", "CandidateKind", "SearchResult", "search_ensembles",
    ),
    "medfuse.metrics": (
        "CaseSummary", "LabelOverlap", "MAX_CLASSES", "METRIC_NAMES", "MetricName", "OverlapResult",
        "aggregate_cases", "confusion_matrix", "dice", "overlap", "overlap_from_confusion",
    ),
    "medfuse.fusion": (
        "ProbabilityAccumulator", "RANGE_TOLERANCE", "SUM_TOLERANCE", "TieRule", "VoteAccumulator",
        "average_probabilities", "fuse_probabilities", "majority_vote", "softmax",
    ),
    "medfuse.postprocess": (
        "JsonLayout", "Postprocessing", "apply_postprocessing", "determine_postprocessing",
        "keep_largest_component",
    ),
}
