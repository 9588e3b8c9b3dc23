"""Fusion alone against fusion + uncertainty maps in the same pass (issue 13).

    python benchmarks/bench_uncertainty.py [--members 5] [--classes 14] [--shape 96 192 192] [--repeat 5]

Members are float16 probabilities (C, Z, Y, X), peaked like softmax outputs. Prints, per space, the best of
``--repeat`` runs of ``fuse_probabilities`` and of ``fuse_probabilities(..., return_uncertainty=True)`` (labels
and the three maps and counts from one pass), their read throughput, and the ratio.

Measured (2-core shared VM, 2 threads, AMD EPYC Zen 5, best of 5):

| kernel | probability: fusion / + uncertainty | log: fusion / + uncertainty |
|---|---|---|
| before (p ln p table, member-major loops, scattered counts) | 0.018 s / 0.321 s (17.7x) | 0.237 s / 0.669 s (2.8x) |
| now (see ``medfuse._kernels.uncertainty``) | 0.019 s / 0.127 s (6.8x) | 0.230 s / 0.209 s (0.9x) |

Fusion alone runs at memory speed; the maps add per value a ``p ln p`` (a short polynomial), the member argmax
and the class sum, and per voxel C more logs and the counts: compute, not memory, is what is left.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

import medfuse as mf


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def members_like_softmax(n_members: int, n_classes: int, shape: tuple[int, ...], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.random((n_classes, *shape), dtype=np.float32)
    out = []
    for _ in range(n_members):
        x = base + np.float32(0.3) * rng.random((n_classes, *shape), dtype=np.float32)
        x **= 8  # peaked: most voxels have one dominant class
        x /= x.sum(axis=0, dtype=np.float32)
        out.append(x.astype(np.float16))
        del x
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--classes", type=int, default=14)
    parser.add_argument("--shape", type=int, nargs="+", default=[96, 192, 192])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    shape = tuple(args.shape)
    members = members_like_softmax(args.members, args.classes, shape)
    nbytes = sum(m.nbytes for m in members)
    print(f"{args.members} float16 members {args.classes}x{'x'.join(map(str, shape))} "
          f"({nbytes / 1e9:.2f} GB), {numba.get_num_threads()} threads")
    print("| space | fusion s | GB/s | fusion + uncertainty s | GB/s | ratio |")
    print("|---|---|---|---|---|---|")
    for space in ("probability", "log"):
        labels = mf.fuse_probabilities(members, space=space)  # compile / warm up
        both, maps = mf.fuse_probabilities(members, space=space, return_uncertainty=True)
        if not np.array_equal(labels, both):
            raise SystemExit("labels differ between the two passes")
        t_fuse = best_of(lambda s=space: mf.fuse_probabilities(members, space=s), args.repeat)
        t_both = best_of(lambda s=space: mf.fuse_probabilities(members, space=s, return_uncertainty=True),
                         args.repeat)
        print(f"| {space} | {t_fuse:.3f} | {nbytes / t_fuse / 1e9:.1f} | {t_both:.3f} | {nbytes / t_both / 1e9:.1f} "
              f"| {t_both / t_fuse:.2f}x |")
    print(f"mean entropy {float(maps.entropy.mean()):.4f} nats, "
          f"mean disagreement {float(maps.disagreement.mean()):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
