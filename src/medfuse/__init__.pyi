# The one export list of ``medfuse``: what type checkers and IDEs see. ``__init__.py`` resolves the same
# names lazily (its ``_LAZY`` table); tests/test_package.py checks the two agree and that each name resolves.
from . import (
    errors as errors,
)
from . import (
    fusion as fusion,
)
from . import (
    geometry as geometry,
)
from . import (
    inference as inference,
)
from . import (
    io as io,
)
from . import (
    metrics as metrics,
)
from . import (
    postprocess as postprocess,
)
from . import (
    search as search,
)
from . import (
    synthetic as synthetic,
)
from ._version import __version__ as __version__
from .errors import (
    CaseMismatchError as CaseMismatchError,
)
from .errors import (
    FormatError as FormatError,
)
from .errors import (
    GeometryMismatchError as GeometryMismatchError,
)
from .errors import (
    MedfuseError as MedfuseError,
)
from .errors import (
    MissingDependencyError as MissingDependencyError,
)
from .errors import (
    UnsafePickleError as UnsafePickleError,
)
from .errors import (
    ValidationError as ValidationError,
)
from .folders import (
    Evaluation as Evaluation,
)
from .folders import (
    FusionReport as FusionReport,
)
from .folders import (
    evaluate_folder as evaluate_folder,
)
from .folders import (
    fuse_folders as fuse_folders,
)
from .folders import (
    make_submission as make_submission,
)
from .folders import (
    validate_submission as validate_submission,
)
from .fusion import (
    ProbabilityAccumulator as ProbabilityAccumulator,
)
from .fusion import (
    VoteAccumulator as VoteAccumulator,
)
from .fusion import (
    average_probabilities as average_probabilities,
)
from .fusion import (
    fuse_probabilities as fuse_probabilities,
)
from .fusion import (
    majority_vote as majority_vote,
)
from .fusion import (
    softmax as softmax,
)
from .fusion.staple import staple as staple
from .fusion.staple import staple_binary as staple_binary
from .geometry import Geometry as Geometry
from .inference import Predictor as Predictor
from .io import (
    check_same_geometry as check_same_geometry,
)
from .io import (
    open_folder as open_folder,
)
from .io import (
    read_nifti as read_nifti,
)
from .io import (
    write_nifti as write_nifti,
)
from .io import (
    write_v1_case as write_v1_case,
)
from .metrics import (
    CaseSummary as CaseSummary,
)
from .metrics import (
    LabelOverlap as LabelOverlap,
)
from .metrics import (
    LabelSurface as LabelSurface,
)
from .metrics import (
    OverlapResult as OverlapResult,
)
from .metrics import (
    SurfaceResult as SurfaceResult,
)
from .metrics import (
    aggregate_cases as aggregate_cases,
)
from .metrics import (
    confusion_matrix as confusion_matrix,
)
from .metrics import (
    dice as dice,
)
from .metrics import (
    overlap as overlap,
)
from .metrics import (
    overlap_from_confusion as overlap_from_confusion,
)
from .metrics import (
    surface_metrics as surface_metrics,
)
from .postprocess import (
    Postprocessing as Postprocessing,
)
from .postprocess import (
    apply_postprocessing as apply_postprocessing,
)
from .postprocess import (
    determine_postprocessing as determine_postprocessing,
)
from .postprocess import (
    keep_largest_component as keep_largest_component,
)
from .search import (
    Candidate as Candidate,
)
from .search import (
    OutOfFold as OutOfFold,
)
from .search import (
    SearchResult as SearchResult,
)
from .search import (
    assemble_oof as assemble_oof,
)
from .search import (
    search_ensembles as search_ensembles,
)

__all__: list[str]
