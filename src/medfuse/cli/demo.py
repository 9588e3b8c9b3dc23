"""``medfuse demo``: the main job end to end on built-in synthetic data."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = ("run the whole job on built-in synthetic data: model folders -> fusion -> evaluation -> submission "
        "-> ensemble search with report.md")
EPILOG = """examples:
  medfuse demo
  medfuse demo --out demo_run --cases 5 --seed 3
  medfuse demo --no-search

Writes OUT/members/, OUT/references/, OUT/fused_*/, OUT/summaries/, OUT/submission.zip, and (unless
--no-search) a cross-validation tree OUT/cv/ and the search report OUT/search/report.md (with
ranking.png and dice_boxplot.png when matplotlib is installed).
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="DIR", help="folder to write into (default: a new temporary folder)")
    parser.add_argument("--cases", type=int, default=3, help="number of synthetic cases (default 3)")
    parser.add_argument("--shape", default="40,112,112", help="image shape Z,Y,X (default 40,112,112)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the phantoms and models (default 0)")
    parser.add_argument("--no-search", dest="search", action="store_false",
                        help="skip the ensemble search on the synthetic cross-validation tree")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from ..synthetic.demo import run_demo
    from ._common import parse_int_list

    shape = parse_int_list(args.shape, name="--shape")
    result = run_demo(args.out, cases=args.cases, shape=shape, seed=args.seed, progress=args.progress, log=print,
                      search=args.search)
    print()
    print("mean Dice per label over cases (members, then fusions):")
    print(result.table())
    best = max(result.foreground_mean, key=result.foreground_mean.__getitem__)
    print(f"\nbest: {best} (foreground mean Dice {result.foreground_mean[best]:.4f}); "
          f"everything is in {result.root}")
    if result.search_report is not None:
        print(f"ensemble search: {result.search_best}; report: {result.search_report}")
    return 0
