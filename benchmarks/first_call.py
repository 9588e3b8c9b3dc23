"""Time of the first fuse + dice + vote call of a fresh process, with a cold and with a warm kernel cache.

Run: ``python benchmarks/first_call.py`` (uses a new temporary NUMBA_CACHE_DIR; prints both numbers).
Each measurement is a new Python process: the first one compiles the kernels and fills the cache, the
later ones load them from it. The numbers go to docs/performance.md ("Compile once per machine").
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

_CHILD = """
import time
t0 = time.perf_counter()
import numpy as np
import medfuse
rng = np.random.default_rng(0)
reference = rng.integers(0, 4, (24, 40, 40)).astype(np.uint8)
members = []
for _ in range(3):
    p = rng.random((4, 24, 40, 40)).astype(np.float32)
    members.append((p / p.sum(0)).astype(np.float16))
t1 = time.perf_counter()
fused = medfuse.fuse_probabilities(members)
scores = medfuse.dice(reference, fused)
voted = medfuse.majority_vote([m.argmax(0).astype(np.uint8) for m in members])
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""


def _run(env: dict[str, str]) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, check=True, capture_output=True, text=True)
    imp, first = out.stdout.split()
    return float(imp), float(first)


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        off = {**env, "MEDFUSE_NUMBA_CACHE": "0"}
        rows = [("cache off", _run(off)), ("cold cache (1st process)", _run(env))]
        rows += [(f"warm cache ({i}. process)", _run(env)) for i in (2, 3, 4)]
    for name, (imp, first) in rows:
        print(f"{name:28s} import {imp:6.2f} s   first fuse + dice + vote {first:6.2f} s")


if __name__ == "__main__":
    main()
