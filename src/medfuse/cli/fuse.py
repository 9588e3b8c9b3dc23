"""``medfuse fuse``: fuse the prediction folders of several models."""

from __future__ import annotations

import argparse
import sys

from ._common import add_executor_arguments, align_weights, make_executor, parse_float_list, read_weights_file

NAME = "fuse"

#: API keywords in error messages -> the flags that set them (the CLI speaks in flags).
FLAG_NAMES = {"overwrite=True": "--overwrite", "`weights`": "`--weights`", "`postprocessing`": "`--postprocessing`",
              "`cases`": "`--cases`", "`output`": "`-o/--output`", "`members`": "MEMBER",
              "`method`": "`--method`", "`save_probabilities`": "`--save-probabilities`", "`space`": "`--space`",
              "`eps`": "`--eps`", "space='log'": "--space log", "method='mean'": "--method mean"}
HELP = "fuse the prediction folders of several models into one folder of label maps"
EPILOG = """examples:
  medfuse fuse pred_2d pred_3d pred_cascade -o fused
  medfuse fuse pred_2d pred_3d pred_cascade -o fused --weights 1,2,2 --postprocessing postprocessing.json
  medfuse fuse pred_3d labels_only -o fused --method vote --jobs 2
  medfuse fuse labels_a labels_b labels_c -o fused --method staple
  medfuse fuse pred_2d pred_3d -o fused --weights-file search_out/search.json
  medfuse fuse fold_0 fold_1 fold_2 fold_3 fold_4 -o fused --space log   # = averaging the folds' logits
"""


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
    add_executor_arguments(parser)


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
    executor, close = make_executor(args)
    try:
        report = fuse_folders(args.members, args.output, method=args.method, weights=weights,
                              postprocessing=args.postprocessing, save_probabilities=args.save_probabilities,
                              cases=cases, executor=executor, overwrite=args.overwrite, progress=args.progress,
                              space=args.space, eps=args.eps)
    finally:
        if close is not None:
            close()
    print(f"fused {len(report.written)} cases into {report.output} ({len(report.skipped)} finished by an "
          f"earlier run with the same settings, checksums verified); settings in {report.output / 'fusion.json'}")
    return 0

