"""``medfuse fuse``: fuse the prediction folders of several models."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import add_executor_arguments, align_weights, make_executor, parse_float_list, read_weights_file

NAME = "fuse"

#: API keywords in error messages -> the flags that set them (the CLI speaks in flags).
FLAG_NAMES = {"overwrite=True": "--overwrite", "`weights`": "`--weights`", "`postprocessing`": "`--postprocessing`",
              "`cases`": "`--cases`", "`output`": "`-o/--output`", "`members`": "MEMBER",
              "`method`": "`--method`", "`save_probabilities`": "`--save-probabilities`", "`space`": "`--space`",
              "`eps`": "`--eps`", "space='log'": "--space log", "method='mean'": "--method mean",
              "`save_uncertainty`": "`--save-uncertainty`", "qa=True": "--qa", "`qa`": "`--qa`"}
HELP = "fuse the prediction folders of several models into one folder of label maps"
EPILOG = """examples:
  medfuse fuse pred_2d pred_3d pred_cascade -o fused
  medfuse fuse pred_2d pred_3d pred_cascade -o fused --weights 1,2,2 --postprocessing postprocessing.json
  medfuse fuse pred_3d labels_only -o fused --method vote --jobs 2
  medfuse fuse labels_a labels_b labels_c -o fused --method staple
  medfuse fuse pred_2d pred_3d -o fused --weights-file search_out/search.json
  medfuse fuse fold_0 fold_1 fold_2 fold_3 fold_4 -o fused --space log   # = averaging the folds' logits
  medfuse fuse pred_2d pred_3d pred_cascade -o fused --qa --qa-figures 3   # qa.csv, qa.png, qa_<case>.png
  medfuse fuse pred_2d pred_3d -o fused --qa --save-uncertainty entropy disagreement
"""

#: QA rows printed after a run with --qa
TOP_PRINTED = 5


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("members", nargs="+", metavar="MEMBER",
                        help="prediction folders (v1/PaddleSeg, nnU-Net v2, or label maps only)")
    parser.add_argument("-o", "--output", required=True, help="output folder (never one of the inputs)")
    parser.add_argument("--method", choices=("mean", "vote", "staple"), default="mean",
                        help="mean of probabilities (default), majority vote, or STAPLE of the members' labels "
                             "(argmax of probabilities; no --weights)")
    parser.add_argument("--space", choices=("probability", "log"), default="probability",
                        help="--method mean: average the probabilities (default) or their logs (geometric "
                             "mean; for softmax outputs its argmax is that of the averaged logits)")
    parser.add_argument("--eps", type=float, default=1e-6,
                        help="--space log: probabilities are clamped to EPS before their log (default 1e-6)")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--weights", help="comma-separated weight per member, e.g. 1,2,2")
    weights.add_argument("--weights-file", metavar="FILE",
                         help="JSON weights: per member, per member and class, or medfuse search's search.json")
    parser.add_argument("--postprocessing", metavar="FILE", help="PaddleSeg / nnU-Net postprocessing.json to apply")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write the fused probabilities (v1 layout .npz + .pkl)")
    parser.add_argument("--cases", help="comma-separated case names to fuse (default: all)")
    parser.add_argument("--overwrite", action="store_true",
                        help="recompute every case, even those an earlier run finished; results of other "
                             "settings in OUTPUT are removed")
    qa = parser.add_argument_group("quality assurance")
    qa.add_argument("--qa", action="store_true",
                    help="also compute each case's uncertainty maps in the fusion pass; write qa.csv, qa.json "
                         "(cases ranked by qa_score, most suspicious first) and qa.png; print the top cases")
    qa.add_argument("--save-uncertainty", nargs="*", metavar="MAP", default=None,
                    help="with --qa: also write uncertainty/<case>_<MAP>.nii.gz (float32, original geometry); MAP "
                         f"is one of {', '.join(_map_names())} (default: entropy)")
    qa.add_argument("--qa-figures", type=int, default=0, metavar="K",
                    help="with --qa: also draw qa_<case>.png (the worst slices: fused labels with the entropy "
                         "overlaid, members beside) for the K most suspicious cases (needs the 'plot' extra)")
    add_executor_arguments(parser)


def _map_names() -> tuple[str, ...]:
    from ..fusion.uncertainty import UncertaintyMaps

    return UncertaintyMaps.MAP_NAMES


def _check_qa_flags(args: argparse.Namespace) -> tuple[str, ...]:
    """The maps to save; errors name the flag."""
    from ..errors import ValidationError

    names: tuple[str, ...] = ()
    if args.save_uncertainty is not None:
        names = tuple(args.save_uncertainty) or ("entropy",)
        bad = [n for n in names if n not in _map_names()]
        if bad:
            raise ValidationError(f"`--save-uncertainty` names unknown maps {bad}; choose from "
                                  f"{', '.join(_map_names())}.")
        if not args.qa:
            raise ValidationError("`--save-uncertainty` needs --qa (the maps come from the QA pass); add --qa.")
    if args.qa_figures < 0:
        raise ValidationError(f"`--qa-figures` must be >= 0 (cases with a slice figure); got {args.qa_figures}.")
    if args.qa_figures and not args.qa:
        raise ValidationError("`--qa-figures` needs --qa (figures rank the cases by their QA score); add --qa.")
    return names


def _print_top(rows: Sequence[Any], output: Path) -> None:
    from .._core.formatting import format_table

    names: list[str] = []
    for r in rows:
        names.extend(k for k in r.components if k not in names)
    largest = {k: max((abs(float(r.components.get(k, 0.0))) for r in rows), default=0.0) for k in names}

    def main(r: Any) -> str:
        scaled = sorted(names, key=lambda k: -(abs(float(r.components.get(k, 0.0))) / largest[k]
                                                  if largest[k] > 0 else 0.0))
        return ", ".join(f"{k}={float(r.components[k]):.3g}" for k in scaled[:2] if k in r.components)

    top = rows[:TOP_PRINTED]
    print(f"QA: the {len(top)} most suspicious of {len(rows)} cases (all in {output / 'qa.csv'}):")
    print(format_table(["case", "qa_score", "main components"], [[r.case, r.qa_score, main(r)] for r in top]))


def run(args: argparse.Namespace) -> int:
    from ..folders import fuse_folders

    weights = None
    if args.weights:
        weights = parse_float_list(args.weights, name="--weights")
    elif args.weights_file:
        weights, names = read_weights_file(args.weights_file)
        weights, note = align_weights(weights, names, args.members)
        if note:
            print(note, file=sys.stderr)
    cases = [c for c in args.cases.split(",") if c] if args.cases else None
    maps = _check_qa_flags(args)
    if args.qa_figures:  # fail before fusing when the figures cannot be drawn
        from .._core.optional import import_optional

        import_optional("matplotlib", purpose="--qa-figures")
    executor, close = make_executor(args)
    try:
        report = fuse_folders(args.members, args.output, method=args.method, weights=weights,
                              postprocessing=args.postprocessing, save_probabilities=args.save_probabilities,
                              cases=cases, executor=executor, overwrite=args.overwrite, progress=args.progress,
                              space=args.space, eps=args.eps, qa=args.qa, save_uncertainty=maps)
    finally:
        if close is not None:
            close()
    print(f"fused {len(report.written)} cases into {report.output} ({len(report.skipped)} finished by an "
          f"earlier run with the same settings, checksums verified); settings in {report.output / 'fusion.json'}")
    if args.qa:
        from ..folders import qa_figures

        _print_top(report.qa, report.output)
        figures = qa_figures(report, top=args.qa_figures)
        print(f"figures: {', '.join(str(f) for f in figures)}")
    return 0

