"""Head-to-head timing of two versions of the fusion and vote kernels, in one process, on `medfuse bench` data.

When a kernel in ``medfuse._kernels`` is rewritten, keep the previous module in a scratch directory (its
relative imports made absolute: ``from medfuse._kernels import jit`` ...) and run

    python benchmarks/bench_kernel_ab.py --old /tmp/kernels_old            # old_fusion.py, old_vote.py there
    python benchmarks/bench_kernel_ab.py --old /tmp/kernels_old --quick    # tiny sizes, a smoke test
    python benchmarks/bench_kernel_ab.py --old /tmp/a --new /tmp/b         # two scratch versions

Speed: the public ``fuse_probabilities`` / ``majority_vote`` run with the kernel swapped in and out
(``medfuse._kernels.fusion._fuse_chunks`` and ``medfuse._kernels.vote._vote_chunks`` are looked up at
each call), alternating old and new ``--repeat`` times each on the rows of ``medfuse bench`` (fusion
float16 and float32, 5 x 14 x 128 x 256 x 256; vote 5 x 256 x 512 x 512 uint8); the minimum of each is
kept and outputs must be bit-identical. Compile time: first call minus a warm call on tiny inputs, each
in a fresh process (numba's cache off), alternating old and new ``--compile-runs`` times, minimum kept.
Compare the ratios, which come from one run: absolute times drift on a shared machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

KERNELS = {"fusion": ("medfuse._kernels.fusion", "_fuse_chunks"), "vote": ("medfuse._kernels.vote", "_vote_chunks")}


def _load(folder: Path, version: str, name: str) -> ModuleType:
    path = folder / f"{version}_{name}.py"
    if not path.is_file():
        raise SystemExit(f"--{version}: expected {path} (a {name} kernel module); not found")
    spec = importlib.util.spec_from_file_location(f"{version}_{name}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--{version}: cannot import {path} as a module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _swap(name: str, kernel: Any) -> None:
    module_name, attr = KERNELS[name]
    setattr(importlib.import_module(module_name), attr, kernel)


def _kernels(folder: Path, name: str, new: Path | None = None) -> dict[str, Any]:
    """The old kernel from ``folder``; the new one from ``new`` (``new_<name>.py``) or medfuse itself."""
    module_name, attr = KERNELS[name]
    new_module = importlib.import_module(module_name) if new is None else _load(new, "new", name)
    return {"old": getattr(_load(folder, "old", name), attr), "new": getattr(new_module, attr)}


def _time(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def head_to_head(name: str, kernels: dict[str, Any], fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    """Minimum time of old and new, alternating; raises when their outputs differ."""
    best = {"old": float("inf"), "new": float("inf")}
    outputs: dict[str, Any] = {}
    for version in ("old", "new"):  # warm-up: compile, first touch of the output pages
        _swap(name, kernels[version])
        outputs[version] = fn()
        fn()
    if not np.array_equal(outputs["old"], outputs["new"]):
        raise SystemExit(f"{name}: old and new kernels give different outputs")
    for r in range(repeat):
        for version in (("old", "new") if r % 2 == 0 else ("new", "old")):
            _swap(name, kernels[version])
            best[version] = min(best[version], _time(fn)[0])
    _swap(name, kernels["new"])
    return best


def speed(folder: Path, new: Path | None, quick: bool, repeat: int) -> None:
    from medfuse import fuse_probabilities, majority_vote
    from medfuse.bench.report import Sizes
    from medfuse.bench.runner import _label_members, _probability_members

    sizes = Sizes.quick() if quick else Sizes()
    members16 = _probability_members(sizes, print)
    fusion = _kernels(folder, "fusion", new)
    rows: list[tuple[str, dict[str, float]]] = []
    for dtype in (np.float16, np.float32):
        members = members16 if dtype == np.float16 else [m.astype(np.float32) for m in members16]
        rows.append((f"fusion {np.dtype(dtype).name}",
                     head_to_head("fusion", fusion, lambda ms=members: fuse_probabilities(ms), repeat)))
        del members
    del members16
    _, maps = _label_members(sizes, print)
    vote = _kernels(folder, "vote", new)
    rows.append(("vote uint8", head_to_head("vote", vote, lambda: majority_vote(maps), repeat)))
    print(f"min of {repeat} alternating runs each; outputs bit-identical")
    for label, best in rows:
        print(f"  {label:15s} old {best['old'] * 1e3:8.2f} ms  new {best['new'] * 1e3:8.2f} ms  "
              f"new/old {best['new'] / best['old']:.3f}")


def compile_once(folder: Path, new: Path | None, version: str) -> dict[str, float]:
    """First-call minus warm-call time of both kernels on tiny inputs (run in a fresh process)."""
    from medfuse import fuse_probabilities, majority_vote

    rng = np.random.default_rng(0)
    probs = [rng.random((3, 1, 2, 3)).astype(np.float16) for _ in range(2)]
    probs = [(p / p.astype(np.float32).sum(0)).astype(np.float16) for p in probs]
    maps = [rng.integers(0, 3, (1, 2, 3)).astype(np.uint8) for _ in range(3)]
    out = {}
    for name, fn in (("fusion", lambda: fuse_probabilities(probs)), ("vote", lambda: majority_vote(maps))):
        _swap(name, _kernels(folder, name, new)[version])
        first = _time(fn)[0]
        out[name] = max(0.0, first - _time(fn)[0])
    return out


def compile_times(folder: Path, new: Path | None, runs: int) -> None:
    best: dict[str, dict[str, float]] = {"old": {}, "new": {}}
    for r in range(runs):
        for version in (("old", "new") if r % 2 == 0 else ("new", "old")):
            cmd = [sys.executable, __file__, "--old", str(folder), "--compile-only", version]
            cmd += [] if new is None else ["--new", str(new)]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            for name, sec in res.items():
                best[version][name] = min(best[version].get(name, float("inf")), sec)
    print(f"first-call compile time, min of {runs} fresh processes each")
    for name in KERNELS:
        old, new = best["old"][name], best["new"][name]
        print(f"  {name:15s} old {old:6.2f} s  new {new:6.2f} s  new/old {new / old:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, required=True, help="folder holding old_fusion.py and old_vote.py")
    parser.add_argument("--new", type=Path, help="folder holding new_fusion.py and new_vote.py (default: medfuse's)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--repeat", type=int, default=9, help="timed runs of each version (default 9)")
    parser.add_argument("--compile-runs", type=int, default=3, help="fresh processes per version (default 3)")
    parser.add_argument("--skip", choices=["speed", "compile"], help="leave one part out")
    parser.add_argument("--compile-only", choices=["old", "new"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compile_only:
        print(json.dumps(compile_once(args.old, args.new, args.compile_only)))
        return 0
    if args.skip != "speed":
        speed(args.old, args.new, args.quick, args.repeat)
    if args.skip != "compile":
        compile_times(args.old, args.new, args.compile_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
