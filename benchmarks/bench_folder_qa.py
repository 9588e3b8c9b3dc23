"""Folder fusion with and without QA (``fuse_folders(qa=True)``): time per run and their ratio.

QA computes each case's uncertainty maps in the class-major fusion pass (``ClassMajorMean(uncertainty=True)``)
and its QA row; members are still read once. Target (issue 13): fusion with QA <= 1.3x fusion without.
Data: the v1 folders of ``bench_folders.make_data`` (float16 compressed npz, crop boxes), kept in ``--data``.
Runs alternate (plain, qa, plain, qa, ...) in this process after one warm-up of each (numba compiled), and
the median of each is reported.

    python benchmarks/bench_folder_qa.py                      # 4 members x 4 cases of 14 x 64 x 192 x 192
    python benchmarks/bench_folder_qa.py --quick              # small smoke run
    python benchmarks/bench_folder_qa.py --noise 0.5 --data /tmp/qa-noisy   # less compressible members
    python benchmarks/bench_folder_qa.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_folders import make_data  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "medfuse-bench-qa")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 192, 192))
    parser.add_argument("--labels", type=int, default=13)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.0,
                        help="multiply each probability by 1 + NOISE * U(0, 1), add 0.01 NOISE U(0, 1), renormalise "
                             "(less compressible members)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.members, args.cases, args.shape, args.labels, args.repeats = 3, 2, (16, 48, 48), 4, 1
    from medfuse.folders import fuse_folders

    folders = make_data(args.data, members=args.members, cases=args.cases, shape=tuple(args.shape),
                        num_labels=args.labels, noise=args.noise)
    work = Path(tempfile.mkdtemp(prefix="medfuse-bench-qa-"))
    times: dict[str, list[float]] = {"plain": [], "qa": []}
    try:
        for run in range(args.repeats + 1):  # run 0: warm-up (compilation)
            for name in ("plain", "qa"):
                out = work / f"{name}_{run}"
                t0 = time.perf_counter()
                fuse_folders(folders, out, qa=name == "qa", progress=False)
                dt = time.perf_counter() - t0
                shutil.rmtree(out)
                if run:
                    times[name].append(dt)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    plain, qa = statistics.median(times["plain"]), statistics.median(times["qa"])
    result = {"noise": args.noise, "members": args.members, "cases": args.cases, "shape": list(args.shape),
              "classes": args.labels + 1,
              "plain_s": round(plain, 3), "qa_s": round(qa, 3), "ratio": round(qa / plain, 3),
              "runs": {k: [round(v, 3) for v in vs] for k, vs in times.items()}}
    print(f"folder fusion, {args.members} members x {args.cases} cases of {args.labels + 1} x "
          f"{'x'.join(map(str, args.shape))}: without QA {plain:.2f} s, with QA {qa:.2f} s, ratio {qa / plain:.2f} "
          f"(target <= 1.3)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
