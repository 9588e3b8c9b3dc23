"""``medfuse evaluate``: score a prediction folder against references."""

from __future__ import annotations

import argparse
from typing import Any

from .._core.formatting import format_table
from ._common import add_executor_arguments, check_output_file, make_executor, parse_int_list

NAME = "evaluate"
HELP = "score a folder of label maps against reference label maps (Dice and friends per class and case)"
#: API spellings in messages -> this command's arguments
FLAG_NAMES = {"`labels`": "`--labels`", "`ignore_label`": "`--ignore-label`", "`json_path`": "`--json`",
              "`csv_path`": "`--csv`", "`plot_path`": "`--plot`"}
EPILOG = """examples:
  medfuse evaluate fused/ labelsTr/
  medfuse evaluate fused/ labelsTr/ --json summary.json --csv per_case.csv --plot dice.png
  medfuse evaluate fused/ labelsTr/ --labels 1,2,3 --ignore-label 255
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", metavar="PRED", help="folder of <case>.nii.gz predictions")
    parser.add_argument("references", metavar="REF", help="folder of <case>.nii.gz reference label maps")
    parser.add_argument("--labels", help="comma-separated foreground labels to score (default: all in references)")
    parser.add_argument("--ignore-label", type=int, help="reference label whose voxels are left out")
    parser.add_argument("--json", metavar="FILE", help="write nnU-Net's summary.json structure")
    parser.add_argument("--csv", metavar="FILE", help="write per-case, per-label metrics as CSV")
    parser.add_argument("--plot", metavar="FILE", help="write a per-class Dice box plot (PNG; 'plot' extra)")
    add_executor_arguments(parser)


def summary_table(summary: Any, labels: tuple[int, ...]) -> str:
    """Per-label mean Dice / IoU / precision / recall and the foreground mean."""
    metrics = ("dice", "iou", "precision", "recall")
    rows: list[list[object]] = [[str(k), *[float(summary.mean[k][m]) for m in metrics]] for k in labels]
    rows.append(["foreground mean", *[float(summary.foreground_mean[m]) for m in metrics]])
    return format_table(["label", *metrics], rows)


def run(args: argparse.Namespace) -> int:
    from ..folders import evaluate_folder

    labels = parse_int_list(args.labels, name="--labels") if args.labels else None
    for value, flag in ((args.json, "--json"), (args.csv, "--csv"), (args.plot, "--plot")):
        check_output_file(value, flag=flag)  # refuse before scoring, not after
    executor, close = make_executor(args)
    try:
        evaluation = evaluate_folder(args.predictions, args.references, labels=labels,
                                     ignore_label=args.ignore_label, json_path=args.json, csv_path=args.csv,
                                     plot_path=args.plot, executor=executor, progress=args.progress)
    finally:
        if close is not None:
            close()
    print(f"{len(evaluation.files)} cases")
    print(summary_table(evaluation.summary, evaluation.labels))
    return 0
