"""``medfuse submit``: zip a prediction folder into a validated competition submission."""

from __future__ import annotations

import argparse
import sys

NAME = "submit"
HELP = "zip <case>.nii.gz predictions into a flat, validated competition submission"
#: API spellings in messages -> this command's arguments
FLAG_NAMES = {"`zip_path`": "ZIP", "`folder`": "FOLDER", "`images`": "`--images`",
              "`num_classes`": "`--num-classes`"}
EPILOG = """examples:
  medfuse submit fused/ submission.zip --images imagesTs/
  medfuse submit fused/ submission.zip --num-classes 12
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", metavar="FOLDER", help="folder of <case>.nii.gz label maps")
    parser.add_argument("zip", metavar="ZIP", help="submission zip to write")
    parser.add_argument("--images", metavar="DIR",
                        help="test images (<case>_0000.nii.gz): every case present, with its image's geometry")
    parser.add_argument("--num-classes", type=int, help="labels must lie in 0..K-1")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide the progress bars (shown only when stderr is a terminal)")


def run(args: argparse.Namespace) -> int:
    from ..folders import make_submission
    from ._common import check_output_file

    check_output_file(args.zip, flag="ZIP")
    report = make_submission(args.folder, args.zip, images=args.images, num_classes=args.num_classes,
                             progress=args.progress and sys.stderr.isatty())
    checked = "checked against the test images" if report.checked_against_images else "not checked against images"
    converted = f"; re-encoded as uint8: {len(report.converted)}" if report.converted else ""
    print(f"wrote {report.path}: {len(report.cases)} cases, {checked}{converted}")
    return 0
