"""``medfuse search``: choose the best ensemble of cross-validated models on their out-of-fold predictions."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ValidationError
from ._common import check_output_folder, parse_int_list

NAME = "search"
HELP = "choose the best ensemble (models, weights, postprocessing) on out-of-fold validation predictions"
#: API spellings in messages -> this command's arguments
FLAG_NAMES = {"`strategies`": "`--strategies`",
              "`references`": "`--references`", "`names`": "`--names`", "`labels`": "`--labels`",
              "`learn_weights`": "`--learn-weights`", "`postprocessing`": "`--postprocessing`",
              "`connectivity`": "`--connectivity`", "`min_object_size`": "`--min-object-size`",
              "`n_bootstrap`": "`--bootstrap`", "`confidence`": "`--confidence`",
              "`tie_tolerance`": "`--tie-tolerance`", "`max_members`": "`--max-members`",
              "`memory_limit_mb`": "`--memory-limit-mb`", "`seed`": "`--seed`", "`threads`": "`--threads`",
              "`output`": "`--output`", "`criterion`": "`--criterion`", "`tolerance_mm`": "`--tolerance`"}
EPILOG = """examples:
  medfuse search cv/3d_fullres cv/2d cv/3d_cascade_fullres -o search_out
  medfuse search cv/3d_fullres cv/2d --references cv/gt_niftis -o search_out --html --plots
  medfuse search cv/* -o search_out --learn-weights members --no-class-selection --bootstrap 2000
  medfuse search cv/3d_fullres cv/2d -o search_out --criterion dice+nsd --tolerance 2

References come first in every medfuse command: here they are --references (default MODEL/gt_niftis/).

Each MODEL folder holds fold_0 ... fold_4, each with validation_raw/ (PaddleSeg MedicalSeg / nnU-Net v1,
saved with --save_npz) or validation/ (nnU-Net v2); references default to MODEL/gt_niftis/.
Writes OUT/search.json, OUT/report.md, OUT/postprocessing.json (and OUT/weights.json for per-class
weights); report.md ends with the 'medfuse fuse ...' command that applies the winner to test predictions.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help="cross-validation folder of each model")
    parser.add_argument("-o", "--output", required=True, help="output folder for the report files")
    parser.add_argument("--references", metavar="DIR",
                        help="reference label maps <case>.nii.gz (default: the first MODEL/gt_niftis/)")
    parser.add_argument("--criterion", choices=("dice", "nsd", "dice+nsd"), default="dice",
                        help="rank candidates and decide postprocessing by Dice (default), surface Dice (NSD) or "
                        "their mean; the report shows Dice and NSD for every candidate")
    parser.add_argument("--tolerance", type=float, default=1.0, metavar="MM",
                        help="NSD tolerance in mm for --criterion nsd / dice+nsd (default 1)")
    parser.add_argument("--names", help="comma-separated model names (default: the folders' names)")
    parser.add_argument("--labels", help="comma-separated foreground labels to score (default: all)")
    parser.add_argument("--learn-weights", choices=("classes", "members", "none"), default="classes",
                        help="fit weights per model and class (default), per model only, or none")
    parser.add_argument("--no-class-selection", dest="class_selection", action="store_false",
                        help="do not try per-class model selection")
    parser.add_argument("--postprocessing", default="determine", metavar="determine|none|FILE",
                        help="decide largest-component postprocessing on the winner (default), skip it, or "
                        "score a given postprocessing.json")
    parser.add_argument("--connectivity", type=int, choices=(6, 18, 26), default=6,
                        help="connectivity of components (6: nnU-Net v1 / PaddleSeg, default; 26: nnU-Net v2)")
    parser.add_argument("--min-object-size", choices=("none", "auto"), default="none",
                        help="'auto': remove only objects smaller than the smallest kept one (nnU-Net advanced)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level (default 0.95)")
    parser.add_argument("--tie-tolerance", type=float, default=1e-4,
                        help="scores this close tie; ties go to the simpler candidate (default 1e-4)")
    parser.add_argument("--max-members", type=int, default=8, help="refuse more models than this (default 8)")
    parser.add_argument("--memory-limit-mb", type=float, default=2048.0,
                        help="memory for the contested voxels (default 2048; beyond it: sampled, then re-scored)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and samples (default 0)")
    parser.add_argument("--threads", type=int, help="threads of the kernels (default: all cores)")
    parser.add_argument("--strategies", default="mean", metavar="LIST",
                        help="comma-separated fusion strategies to compare on every equal-weight subset: "
                             "mean,log,vote,staple (default: mean only)")
    parser.add_argument("--no-qa", dest="qa", action="store_false",
                        help="skip the check of the per-case QA score against the OOF Dice (one pass over the cases)")
    parser.add_argument("--html", action="store_true", help="also write report.html")
    parser.add_argument("--plots", action="store_true",
                        help="also write ranking.png and dice_boxplot.png (needs matplotlib, extra 'plot')")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from ..search import search_ensembles
    from ..search.report import write_search_outputs

    out = Path(args.output).resolve()
    for m in args.models:
        root = Path(m).resolve()
        if out == root or root in out.parents:
            raise ValidationError(f"`--output` {args.output!r} must not be inside the model folder {m!r}.")
    check_output_folder(out, flag="-o/--output")  # refuse before the search, not after
    if args.plots:
        from .._core.optional import import_optional

        import_optional("matplotlib", purpose="--plots")  # fail before the long run
    names = [n for n in args.names.split(",") if n] if args.names else None
    labels = parse_int_list(args.labels, name="--labels") if args.labels else None
    result = search_ensembles(
        args.models, references=args.references, names=names, labels=labels, learn_weights=args.learn_weights,
        class_selection=args.class_selection, postprocessing=args.postprocessing, connectivity=args.connectivity,
        min_object_size=args.min_object_size, n_bootstrap=args.bootstrap, confidence=args.confidence,
        tie_tolerance=args.tie_tolerance, max_members=args.max_members, memory_limit_mb=args.memory_limit_mb,
        seed=args.seed, threads=args.threads, progress=args.progress, criterion=args.criterion,
        tolerance_mm=args.tolerance,
        strategies=[x.strip() for x in args.strategies.split(",") if x.strip()], qa=args.qa,
    )
    written = write_search_outputs(result, out, html_report=args.html, plots=args.plots)
    best = result.best
    pp = f", postprocessed {result.postprocessed_score:.4f}" if result.postprocessed_score is not None else ""
    nsd = f", NSD {best.nsd:.4f} (ranked by {args.criterion})" if args.criterion != "dice" else ""
    print(f"best of {len(result.candidates)} candidates: {best.name}: OOF Dice {best.score:.4f} "
          f"(honest {best.honest_score:.4f}{pp}){nsd}")
    print("apply it: " + result.fuse_command(weights_file=str(out / "weights.json"),
                                             postprocessing_file=str(out / "postprocessing.json")))
    if result.strategies is not None:
        print(result.strategies.summary())
    if result.qa is not None:
        print(f"QA score vs OOF Dice: Spearman {result.qa.summary()}")
    print(f"wrote {', '.join(p.name for p in written)} to {out}")
    return 0
