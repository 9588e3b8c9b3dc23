"""Core-kernel benchmark: a thin script over :func:`medfuse.bench.runner.run_benchmark` (same as ``medfuse bench``).

    python benchmarks/bench_core.py                 # full sizes, a few minutes
    python benchmarks/bench_core.py --quick         # tiny sizes
    python benchmarks/bench_core.py --only vote,bandwidth --json out.json

Under pytest (``pytest benchmarks/bench_core.py``) it runs the quick suite as a smoke test.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from medfuse.cli import bench

    parser = argparse.ArgumentParser(description=bench.HELP, epilog=bench.EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.configure(parser)
    return bench.run(parser.parse_args(argv))


def test_quick_suite_runs() -> None:
    from medfuse.bench import run_benchmark

    report = run_benchmark(quick=True)
    assert report.medfuse("fusion-float16") is not None
    assert report.bandwidth_gb_per_s is not None and report.bandwidth_gb_per_s > 0


if __name__ == "__main__":
    sys.exit(main())
