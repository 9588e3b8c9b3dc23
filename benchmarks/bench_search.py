"""Ensemble search cost vs one fusion pass over the same members, measured in one run.

What "the search" costs per case: one read of every member, then ONE kernel pass that scores all 15
subsets of 4 members (confusion counts per subset) and extracts the contested voxels for the weights.
What "one fusion pass" costs: the same read, then medfuse's fused mean + argmax of all 4 members.

Two levels, each in the same process and run:

1. in memory (kernels only): ``process_case`` (the search's per-case work) vs ``fuse_probabilities`` of
   the 4 members, and vs the naive search (15 x fuse + confusion matrix), on 4 x 14 x Z x Y x X float16;
2. folders (end to end): the search's pass over v1 folders (inflate the npz + kernel) vs a fusion pass
   (inflate + fuse + write the .nii.gz), and the whole ``search_ensembles`` (weights, honest folds,
   bootstrap, postprocessing) for reference.

    python benchmarks/bench_search.py            # 4 x 14 x 128 x 256 x 256 in memory; 4 x 4 cases on disk
    python benchmarks/bench_search.py --quick    # small smoke run
    python benchmarks/bench_search.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

QUALITIES = (0.9, 0.85, 0.8, 0.75)


def best_of(fn: Any, repeat: int) -> float:
    """Smallest wall time of ``repeat`` runs."""
    return min(_timed(fn)[0] for _ in range(repeat))


def cpu_of(fn: Any, repeat: int) -> float:
    """Smallest CPU time (all threads) of ``repeat`` runs: steadier than wall time on a shared machine."""
    return min(_timed(fn)[1] for _ in range(repeat))


def _timed(fn: Any) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def members_in_memory(shape: tuple[int, int, int], cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """(4, 14, *shape) float16 members and the (shape) reference; cached as .npy."""
    from medfuse import synthetic

    f_stack, f_ref = cache / f"stack_{'x'.join(map(str, shape))}.npy", cache / f"ref_{'x'.join(map(str, shape))}.npy"
    if f_stack.is_file() and f_ref.is_file():
        return np.load(f_stack), np.load(f_ref)
    ph = synthetic.phantom(shape, num_labels=13, spacing=(2.0, 0.8, 0.8), seed=0, crop_margin=0)
    stack = np.stack([synthetic.simulate_probabilities(ph, quality=q, seed=m) for m, q in enumerate(QUALITIES)])
    cache.mkdir(parents=True, exist_ok=True)
    np.save(f_stack, stack)
    np.save(f_ref, ph.labels)
    return stack, ph.labels


def bench_memory(shape: tuple[int, int, int], cache: Path, repeat: int) -> dict[str, Any]:
    from medfuse.fusion import fuse_probabilities
    from medfuse.metrics import confusion_matrix
    from medfuse.search.engine import LoadedCase, process_case
    from medfuse.search.stats import counts_from_confusion

    stack, ref = members_in_memory(shape, cache)
    n_members, n_classes = stack.shape[:2]
    members = list(stack)
    box = tuple((0, s) for s in shape)
    loaded = LoadedCase("bench", 0, 0, ref, (2.0, 0.8, 0.8), box, stack)
    models = [f"m{m}" for m in range(n_members)]

    def search() -> None:
        process_case(loaded, models=models)

    def fuse() -> None:
        fuse_probabilities(members)

    def naive() -> None:
        for mask in range(1, 1 << n_members):
            chosen = [members[m] for m in range(n_members) if mask >> m & 1]
            counts_from_confusion(confusion_matrix(ref, fuse_probabilities(chosen), num_classes=n_classes))

    def read() -> None:
        stack.view(np.uint16).max()

    for f in (search, fuse, read):  # compile and first-touch
        f()
    naive()
    wall: dict[str, list[float]] = {"search": [], "fuse": [], "read": []}
    cpu: dict[str, list[float]] = {"search": [], "fuse": [], "read": []}
    for _ in range(repeat):  # interleaved, so that a busy moment hits both
        for name, f in (("search", search), ("fuse", fuse), ("read", read)):
            w, c = _timed(f)
            wall[name].append(w)
            cpu[name].append(c)
    t_naive = best_of(naive, 1)
    processed = process_case(loaded, models=models)
    t_search, t_fuse = min(wall["search"]), min(wall["fuse"])
    c_search, c_fuse = min(cpu["search"]), min(cpu["fuse"])
    return {
        "shape": [n_members, n_classes, *shape], "bytes": int(stack.nbytes),
        "search_all_15_subsets_s": t_search, "one_fusion_pass_s": t_fuse, "naive_15_fusions_s": t_naive,
        "numpy_read_s": min(wall["read"]), "search_over_fusion": t_search / t_fuse,
        "search_cpu_s": c_search, "fusion_cpu_s": c_fuse, "search_over_fusion_cpu": c_search / c_fuse,
        "contested_fraction": processed.contested_reference.size / ref.size,
        "naive_over_search": t_naive / t_search,
    }


def write_folders(root: Path, *, cases: int, shape: tuple[int, int, int]) -> list[Path]:
    from medfuse import io, synthetic

    stamp = root / "complete.json"
    spec = {"cases": cases, "shape": list(shape)}
    folders = [root / f"model_{m}" for m in range(len(QUALITIES))]
    if stamp.is_file() and json.loads(stamp.read_text()) == spec:
        return folders
    shutil.rmtree(root, ignore_errors=True)
    margin = [[2, 2], [10, 10], [10, 10]]
    full = tuple(s + a + b for s, (a, b) in zip(shape, margin, strict=True))
    for c in range(cases):
        ph = synthetic.phantom(full, num_labels=13, spacing=(2.0, 0.8, 0.8), seed=c, crop_margin=margin)
        box = tuple(slice(lo, hi) for lo, hi in ph.crop_bbox)
        for m, q in enumerate(QUALITIES):
            probs = synthetic.simulate_probabilities(ph, quality=q, seed=np.random.SeedSequence([c, m]))
            fold = folders[m] / f"fold_{c % 5}" / "validation_raw"
            io.write_v1_case(fold, f"case_{c:02d}", probabilities=np.ascontiguousarray(probs[(slice(None), *box)]),
                             geometry=ph.geometry, crop_bbox=ph.crop_bbox)
            io.write_nifti(folders[m] / "gt_niftis" / f"case_{c:02d}.nii.gz", ph.labels, ph.geometry)
        print(f"  data: case {c + 1}/{cases}", flush=True)
    stamp.write_text(json.dumps(spec))
    return folders


def bench_folders(root: Path, *, cases: int, shape: tuple[int, int, int]) -> dict[str, Any]:
    from medfuse import io
    from medfuse.fusion import fuse_probabilities
    from medfuse.geometry import paste_into_box
    from medfuse.search import assemble_oof, search_ensembles
    from medfuse.search.engine import load_case, process_case

    folders = write_folders(root / "data", cases=cases, shape=shape)
    oof = assemble_oof(folders)
    out = root / "fused"

    def search_pass() -> None:  # what search_ensembles does per case in its one pass over the data
        for i, name in enumerate(oof.cases):
            loaded = load_case(oof.load(name), i, num_classes=14, models=oof.models)
            process_case(loaded, models=oof.models)

    def fusion_pass() -> None:  # read every member, fuse, write the label map
        for name in oof.cases:
            srcs = [io.open_folder(f / f"fold_{int(name[-2:]) % 5}" / "validation_raw").case(name) for f in folders]
            fused = fuse_probabilities([s.read_probabilities() for s in srcs])
            full = paste_into_box(fused, srcs[0].crop_bbox, srcs[0].geometry.shape, fill=0)
            io.write_nifti(out / f"{name}.nii.gz", full, srcs[0].geometry)

    search_pass()  # warm: compile, page cache
    fusion_pass()
    runs = [(_timed(search_pass), _timed(fusion_pass)) for _ in range(2)]
    t_search, t_fuse = min(r[0][0] for r in runs), min(r[1][0] for r in runs)
    c_search, c_fuse = min(r[0][1] for r in runs), min(r[1][1] for r in runs)
    t = time.perf_counter()
    result = search_ensembles(folders, n_bootstrap=1000)
    t_all = time.perf_counter() - t
    return {
        "cases": cases, "members": len(folders), "case_shape": list(shape), "classes": 14,
        "search_pass_s": t_search, "fusion_pass_s": t_fuse, "search_over_fusion": t_search / t_fuse,
        "search_pass_cpu_s": c_search, "fusion_pass_cpu_s": c_fuse, "search_over_fusion_cpu": c_search / c_fuse,
        "search_ensembles_s": t_all, "search_ensembles_over_fusion": t_all / t_fuse,
        "search_ensembles_stages_s": dict(result.timings), "best": result.best.name,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "medfuse-bench-search",
                        help="where the generated data is cached")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args(argv)
    mem_shape = (32, 64, 64) if args.quick else (128, 256, 256)
    disk_shape = (24, 48, 48) if args.quick else (96, 192, 192)
    cases = 2 if args.quick else 4
    import numba

    print(f"threads: {numba.get_num_threads()}", flush=True)
    memory = bench_memory(mem_shape, args.data / "memory", repeat=2 if args.quick else 5)
    print("in memory, 4 members x 14 classes x " + "x".join(map(str, mem_shape)) + " float16 "
          f"({memory['bytes'] / 2**20:.0f} MiB), contested {100 * memory['contested_fraction']:.2f}% of voxels")
    print(f"  numpy read of the members      {memory['numpy_read_s']:8.3f} s")
    print(f"  one fusion pass (fuse_probabilities, 4 members)  {memory['one_fusion_pass_s']:8.3f} s wall, "
          f"{memory['fusion_cpu_s']:.3f} s CPU")
    print(f"  search: all 15 subsets, one pass               {memory['search_all_15_subsets_s']:8.3f} s wall, "
          f"{memory['search_cpu_s']:.3f} s CPU = {memory['search_over_fusion']:.2f} x one fusion pass "
          f"(CPU: {memory['search_over_fusion_cpu']:.2f} x)")
    print(f"  naive search: 15 fusions + confusion matrices  {memory['naive_15_fusions_s']:8.3f} s  "
          f"= {memory['naive_over_search']:.1f} x the search")
    folders = bench_folders(args.data / "folders", cases=cases, shape=disk_shape)
    print(f"folders, {folders['members']} members x {cases} cases of 14 x " + "x".join(map(str, disk_shape))
          + " (v1 npz float16, compressed)")
    print(f"  fusion pass (inflate + fuse + write)          {folders['fusion_pass_s']:8.3f} s wall, "
          f"{folders['fusion_pass_cpu_s']:.3f} s CPU")
    print(f"  search pass (inflate + all 15 subsets)        {folders['search_pass_s']:8.3f} s wall, "
          f"{folders['search_pass_cpu_s']:.3f} s CPU = {folders['search_over_fusion']:.2f} x the fusion pass "
          f"(CPU: {folders['search_over_fusion_cpu']:.2f} x)")
    print(f"  whole search_ensembles (weights, honest CV, bootstrap, postprocessing) "
          f"{folders['search_ensembles_s']:8.3f} s = {folders['search_ensembles_over_fusion']:.2f} x; stages "
          + ", ".join(f"{k} {v:.2f}" for k, v in folders["search_ensembles_stages_s"].items()))
    if args.json:
        args.json.write_text(json.dumps({"memory": memory, "folders": folders}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
