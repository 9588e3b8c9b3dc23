"""``medfuse bench``: the core kernels against their usual alternatives, in one run on the same data."""

from __future__ import annotations

import argparse

NAME = "bench"
HELP = "benchmark fusion, vote and Dice against nnU-Net-style numpy, SimpleITK (and MONAI when installed)"
EPILOG = """examples:
  medfuse bench                          # full sizes (5 x 14 x 128 x 256 x 256 fusion, ...): a few minutes
  medfuse bench --quick                  # tiny sizes, a smoke test
  medfuse bench --only fusion,bandwidth --json bench.json
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test; ratios mean little)")
    parser.add_argument("--only", metavar="SECTIONS", default=None,
                        help="comma-separated sections among fusion,vote,dice,bandwidth (default: all)")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method, >= 3 (default 3)")


def run(args: argparse.Namespace) -> int:
    from ..bench.runner import run_benchmark
    from ..io import atomic_write

    only = None if args.only is None else [s for s in args.only.split(",") if s.strip()]
    report = run_benchmark(quick=args.quick, only=only, repeat=args.repeat, log=print)
    print()
    print(report.table())
    if args.json:
        with atomic_write(args.json) as tmp:
            tmp.write_text(report.to_json() + "\n")
        print(f"\nwrote {args.json}")
    return 0
