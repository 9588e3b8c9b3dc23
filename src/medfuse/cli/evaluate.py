"""``medfuse evaluate REF PRED``: score a prediction folder against references (reference first)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._core.formatting import format_table
from ..errors import ValidationError
from ._common import add_executor_arguments, check_output_file, make_executor, parse_float_list, parse_int_list

NAME = "evaluate"
HELP = "score predictions against references: medfuse evaluate REF PRED (Dice and friends; --surface: HD95, NSD)"
#: API spellings in messages -> this command's arguments
FLAG_NAMES = {"`labels`": "`--labels`", "`regions`": "`--regions`", "`ignore_label`": "`--ignore-label`",
              "`json_path`": "`--json`", "`csv_path`": "`--csv`", "`plot_path`": "`--plot`",
              "`surface=True`": "`--surface`", "`surface`": "`--surface`", "`tolerance_mm`": "`--tolerance`",
              "`percentile`": "`--percentile`", "`references`": "`REF`", "`predictions`": "`PRED`"}
EPILOG = """The reference folder comes FIRST, the predictions second (as nnU-Net's nnUNetv2_evaluate_folder).

examples:
  medfuse evaluate labelsTr/ fused/
  medfuse evaluate labelsTr/ fused/ --json summary.json --csv per_case.csv --plot dice.png
  medfuse evaluate labelsTr/ fused/ --surface --tolerance 1,2      # + HD, HD95, ASSD, MASD, NSD, NSD@2
  medfuse evaluate labelsTr/ fused/ --labels 1,2,3 --ignore-label 255
  medfuse evaluate labelsTr/ fused/ --regions '1,2,3;2,3;3'         # BraTS-style merged regions
  medfuse evaluate labelsTr/ fused/ --json - | jq .foreground_mean   # summary.json to stdout
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("references", metavar="REF", help="folder of <case>.nii.gz reference label maps (FIRST)")
    parser.add_argument("predictions", metavar="PRED", help="folder of <case>.nii.gz predictions (second)")
    parser.add_argument("--labels", help="comma-separated foreground labels to score (default: all in references)")
    parser.add_argument("--regions", help="regions to score, each a comma-separated list of labels merged into one "
                        "foreground, regions separated by ';' (quote it): '1,2,3;2,3;3'")
    parser.add_argument("--ignore-label", type=int, help="reference label whose voxels are left out")
    parser.add_argument("--surface", action="store_true",
                        help="also compute boundary metrics per case and label: HD, HD95, ASSD, MASD, NSD (mm)")
    parser.add_argument("--tolerance", metavar="MM[,MM...]",
                        help="NSD tolerance(s) in mm with --surface (default 1); further ones are reported as NSD@2")
    parser.add_argument("--percentile", type=float, help="percentile of HD95 with --surface (default 95)")
    parser.add_argument("--json", metavar="FILE", help="write nnU-Net's summary.json structure ('-': to stdout)")
    parser.add_argument("--csv", metavar="FILE", help="write per-case, per-label metrics as CSV")
    parser.add_argument("--plot", metavar="FILE", help="write a per-class Dice box plot (PNG; 'plot' extra); "
                        "with --surface also one per boundary metric beside it (dice.png: dice_hd95.png, ...)")
    add_executor_arguments(parser)


def parse_regions(text: str) -> list[tuple[int, ...]]:
    """``"1,2,3;2,3;3"`` -> ``[(1, 2, 3), (2, 3), (3,)]``."""
    groups = [g for g in text.split(";") if g.strip()]
    if not groups:
        raise ValidationError(f"`--regions` must list regions like '1,2,3;2,3;3'; got {text!r}.")
    return [tuple(parse_int_list(g, name="--regions")) for g in groups]


def _tolerance(text: str | None) -> float | list[float] | None:
    if text is None:
        return None
    values = parse_float_list(text, name="--tolerance")
    if not values:
        raise ValidationError(f"`--tolerance` must be comma-separated numbers like 1,2; got {text!r}.")
    return values[0] if len(values) == 1 else values


def summary_table(summary: Any, labels: tuple[Any, ...]) -> str:
    """Per-label mean Dice / IoU / precision / recall and the foreground mean."""
    metrics = ("dice", "iou", "precision", "recall")
    rows: list[list[object]] = [[str(k), *[float(summary.mean[k][m]) for m in metrics]] for k in labels]
    rows.append(["foreground mean", *[float(summary.foreground_mean[m]) for m in metrics]])
    return format_table(["label", *metrics], rows)


def surface_table(surface: Any) -> str:
    """Per-label mean boundary metrics, the foreground mean, and a note on infinite values."""
    names = list(surface.names)
    rows: list[list[object]] = [[str(k), *[float(surface.mean[k][n]) for n in names]] for k in surface.keys]
    rows.append(["foreground mean", *[float(surface.foreground_mean[n]) for n in names]])
    text = format_table(["label", *[f"{n} (mm)" if not n.startswith("NSD") else n for n in names]], rows)
    inf = {k: n for k, n in surface.inf_cases.items() if n}
    if inf:
        text += ("\ninf: the label is absent from exactly one map in "
                 + ", ".join(f"{n} case{'s' if n > 1 else ''} (label {k})" for k, n in inf.items())
                 + "; its mean distance is inf, not a mean of the other cases (docs/metrics.md).")
    return text


def run(args: argparse.Namespace) -> int:
    from ..folders import evaluate_folder

    labels = parse_int_list(args.labels, name="--labels") if args.labels else None
    regions = parse_regions(args.regions) if args.regions else None
    tolerance = _tolerance(args.tolerance)
    to_stdout = args.json == "-"
    for value, flag in ((None if to_stdout else args.json, "--json"), (args.csv, "--csv"), (args.plot, "--plot")):
        check_output_file(value, flag=flag)  # refuse before scoring, not after
    executor, close = make_executor(args)
    try:
        evaluation = evaluate_folder(args.references, args.predictions, labels=labels, regions=regions,
                                     ignore_label=args.ignore_label, surface=args.surface,
                                     tolerance_mm=tolerance, percentile=args.percentile,
                                     json_path=None if to_stdout else args.json,
                                     csv_path=args.csv, plot_path=args.plot, executor=executor,
                                     progress=args.progress and not to_stdout)
    finally:
        if close is not None:
            close()
    out = sys.stderr if to_stdout else sys.stdout  # with --json - stdout holds the JSON only
    print(f"{len(evaluation.files)} cases", file=out)
    print(summary_table(evaluation.summary, evaluation.labels), file=out)
    if evaluation.surface is not None:
        print(surface_table(evaluation.surface), file=out)
    if to_stdout:
        from ..io.jsonfile import json_default

        sys.stdout.write(json.dumps(evaluation.to_dict(), indent=2, default=json_default) + "\n")
    return 0

