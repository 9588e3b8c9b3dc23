# The one export list of ``medfuse``: what type checkers and IDEs see. ``__init__.py`` resolves the same
# names lazily (its ``_LAZY`` table); tests/test_package.py checks the two agree and that each name resolves.
from . import (
    errors as errors,
    fusion as fusion,
    geometry as geometry,
    inference as inference,
    io as io,
    metrics as metrics,
    postprocess as postprocess,
    quality as quality,
    search as search,
    synthetic as synthetic,
)
from ._version import __version__ as __version__
from .errors import (
    CaseMismatchError as CaseMismatchError,
    FormatError as FormatError,
    GeometryMismatchError as GeometryMismatchError,
    MedfuseError as MedfuseError,
    MissingDependencyError as MissingDependencyError,
    UnsafePickleError as UnsafePickleError,
    ValidationError as ValidationError,
)
from .folders import (
    Evaluation as Evaluation,
    FusionReport as FusionReport,
    evaluate_folder as evaluate_folder,
    fuse_folders as fuse_folders,
    make_submission as make_submission,
    validate_submission as validate_submission,
)
from .fusion import (
    ProbabilityAccumulator as ProbabilityAccumulator,
    UncertaintyMaps as UncertaintyMaps,
    VoteAccumulator as VoteAccumulator,
    average_probabilities as average_probabilities,
    fuse_probabilities as fuse_probabilities,
    fusion_uncertainty as fusion_uncertainty,
    majority_vote as majority_vote,
    softmax as softmax,
)
from .fusion.staple import staple as staple, staple_binary as staple_binary
from .geometry import Geometry as Geometry
from .inference import Predictor as Predictor
from .io import (
    check_same_geometry as check_same_geometry,
    open_folder as open_folder,
    read_nifti as read_nifti,
    write_nifti as write_nifti,
    write_v1_case as write_v1_case,
)
from .metrics import (
    CaseSummary as CaseSummary,
    LabelOverlap as LabelOverlap,
    LabelSurface as LabelSurface,
    OverlapResult as OverlapResult,
    SurfaceResult as SurfaceResult,
    aggregate_cases as aggregate_cases,
    confusion_matrix as confusion_matrix,
    dice as dice,
    overlap as overlap,
    overlap_from_confusion as overlap_from_confusion,
    surface_metrics as surface_metrics,
)
from .postprocess import (
    Postprocessing as Postprocessing,
    apply_postprocessing as apply_postprocessing,
    determine_postprocessing as determine_postprocessing,
    keep_largest_component as keep_largest_component,
)
from .quality import CaseQA as CaseQA, case_qa as case_qa
from .search import (
    Candidate as Candidate,
    OutOfFold as OutOfFold,
    SearchResult as SearchResult,
    assemble_oof as assemble_oof,
    search_ensembles as search_ensembles,
)

__all__: list[str]
