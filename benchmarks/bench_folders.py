"""Folder fusion: medfuse.fuse_folders vs PaddleSeg MedicalSeg's ensemble algorithm, same data, same run.

The baseline re-implements what PaddleSeg's ``nnunet/ensemble.py`` (nnU-Net v1) does per case: load every
member's ``softmax`` from its ``.npz``, stack them, mean, argmax, paste the crop box into the full image and
write the ``.nii.gz``. Each variant runs in a fresh subprocess so that its peak RSS (VmHWM) is its own.

Default data: 4 members x 6 cases of 14 x ~100 x 256 x 256 float16 compressed v1 npz (what the models
write with ``--save_npz``), made once from synthetic phantoms and kept in ``--data`` for later runs.

    python benchmarks/bench_folders.py                 # full size (first run writes ~1 GB of data)
    python benchmarks/bench_folders.py --quick         # small smoke run
    python benchmarks/bench_folders.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_data(root: Path, *, members: int, cases: int, shape: tuple[int, int, int], num_labels: int,
              noise: float = 0.0) -> list[Path]:
    """v1 folders of ``members`` simulated models; reused when already complete. ``noise > 0`` multiplies
    every probability by ``1 + noise * U(0, 1)``, adds ``0.01 * noise * U(0, 1)`` and renormalises (less
    compressible members)."""
    from medfuse import io, synthetic

    folders = [root / f"model_{m}" for m in range(members)]
    stamp = root / "complete.json"
    spec: dict[str, object] = {"members": members, "cases": cases, "shape": list(shape), "num_labels": num_labels}
    if noise:
        spec["noise"] = noise
    if stamp.is_file() and json.loads(stamp.read_text()) == spec:
        return folders
    shutil.rmtree(root, ignore_errors=True)
    margin = [[3, 3], [12, 12], [12, 12]]
    full = tuple(s + m[0] + m[1] for s, m in zip(shape, margin, strict=True))
    for c in range(cases):
        ph = synthetic.phantom(full, num_labels=num_labels, spacing=(2.0, 0.8, 0.8), seed=c, crop_margin=margin,
                               direction=(1, 0, 0, 0, -1, 0, 0, 0, 1))
        in_box = (slice(None), *(slice(lo, hi) for lo, hi in ph.crop_bbox))
        for m in range(members):
            probs = synthetic.simulate_probabilities(ph, quality=0.9 - 0.05 * m, dtype=np.float16,
                                                     seed=np.random.SeedSequence([c, m]))
            if noise:
                rng = np.random.default_rng([c, m, 7])
                noisy = probs[in_box].astype(np.float32)
                noisy *= 1.0 + np.float32(noise) * rng.random(noisy.shape, dtype=np.float32)
                noisy += np.float32(0.01 * noise) * rng.random(noisy.shape, dtype=np.float32)
                noisy /= noisy.sum(axis=0, keepdims=True)
                probs = probs.copy()
                probs[in_box] = noisy.astype(np.float16)
                del noisy
            io.write_v1_case(folders[m], f"case_{c:02d}", probabilities=np.ascontiguousarray(probs[in_box]),
                             geometry=ph.geometry, crop_bbox=ph.crop_bbox)
            del probs
        print(f"  data: case {c + 1}/{cases} written", flush=True)
    stamp.write_text(json.dumps(spec))
    return folders


def linked_copies(folders: list[Path], n: int, root: Path) -> list[Path]:
    """``n`` distinct member folders (hard links to the given ones, cycled): more members, no more disk."""
    out = []
    for i in range(n):
        dst = root / f"member_{i}"
        if not dst.exists():
            dst.mkdir(parents=True)
            for f in folders[i % len(folders)].iterdir():
                os.link(f, dst / f.name)
        out.append(dst)
    return out


# ----------------------------------------------------------------------------- variants (run in children)
def run_paddleseg_baseline(members: list[str], output: str) -> None:
    """PaddleSeg MedicalSeg ``ensemble.py`` algorithm: stack every member, mean, argmax, paste, write."""
    from medfuse import io
    from medfuse.io.v1 import v1_geometry

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    cases = sorted(p.name[:-4] for p in Path(members[0]).glob("*.npz"))
    for case in cases:
        softmax = np.vstack([np.load(Path(m) / f"{case}.npz")["softmax"][None] for m in members])
        mean = np.mean(softmax, 0)
        props = io.load_pickle(Path(members[0]) / f"{case}.pkl")
        seg_cropped = mean.argmax(0)
        seg = np.zeros(tuple(int(s) for s in props["original_size_of_raw_data"]), dtype=np.uint8)
        (z0, z1), (y0, y1), (x0, x1) = props["crop_bbox"]
        seg[z0:z1, y0:y1, x0:x1] = seg_cropped
        geometry = v1_geometry(props, source=case)
        io.write_nifti(out / f"{case}.nii.gz", seg, geometry)


def run_medfuse(members: list[str], output: str, *, qa: bool = False) -> None:
    from medfuse import fuse_folders

    fuse_folders(members, output, progress=False, qa=qa)


def run_medfuse_qa(members: list[str], output: str) -> None:
    run_medfuse(members, output, qa=True)


def _child(variant: str, members: list[str], output: str) -> None:
    t0 = time.perf_counter()
    {"paddleseg": run_paddleseg_baseline, "medfuse": run_medfuse, "medfuse-qa": run_medfuse_qa}[variant](members,
                                                                                                      output)
    seconds = time.perf_counter() - t0
    hwm = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    print(json.dumps({"seconds": seconds, "peak_rss": hwm}))


def measure(variant: str, members: list[Path], *, repeat: int, warmup: bool) -> dict[str, float]:
    """Min time and max peak RSS over ``repeat`` fresh child processes (after an optional warm-up run)."""
    results = []
    for i in range(repeat + int(warmup)):
        out = Path(tempfile.mkdtemp(prefix=f"bench-{variant}-"))
        try:
            cmd = [sys.executable, __file__, "--child", variant, "--output", str(out / "o"),
                   *[str(m) for m in members]]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise RuntimeError(f"{variant} failed:\n{res.stderr}")
            if i >= int(warmup):
                results.append(json.loads(res.stdout.strip().splitlines()[-1]))
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return {"seconds": min(r["seconds"] for r in results), "peak_rss": max(r["peak_rss"] for r in results)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--data", type=Path, help="where the generated member folders live (reused)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--json", type=Path, help="write the results as JSON")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    p.add_argument("members", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child, args.members, args.output)
        return 0

    if args.quick:
        shape, cases, labels = (24, 64, 64), 2, 13
    else:
        shape, cases, labels = (100, 256, 256), 6, 13
    data = args.data or (HERE / "data" / ("folders-quick" if args.quick else "folders"))
    print(f"data: 4 members x {cases} cases of {labels + 1} x {shape} float16 v1 npz in {data}", flush=True)
    folders = make_data(data, members=4, cases=cases, shape=shape, num_labels=labels)
    with tempfile.TemporaryDirectory(prefix="bench-links-") as tmp:
        two, eight = linked_copies(folders, 2, Path(tmp) / "two"), linked_copies(folders, 8, Path(tmp) / "eight")
        res = {
            "paddleseg_4": measure("paddleseg", folders, repeat=args.repeat, warmup=False),
            "medfuse_4": measure("medfuse", folders, repeat=args.repeat, warmup=False),
            "medfuse_2": measure("medfuse", two, repeat=args.repeat, warmup=False),
            "medfuse_8": measure("medfuse", eight, repeat=args.repeat, warmup=False),
            "medfuse_qa_2": measure("medfuse-qa", two, repeat=args.repeat, warmup=False),
            "medfuse_qa_8": measure("medfuse-qa", eight, repeat=args.repeat, warmup=False),
        }
    base, mf = res["paddleseg_4"], res["medfuse_4"]
    ratios = {
        "speedup_vs_paddleseg": base["seconds"] / mf["seconds"],
        "peak_rss_fraction_of_paddleseg": mf["peak_rss"] / base["peak_rss"],
        "peak_rss_8_over_2_members": res["medfuse_8"]["peak_rss"] / res["medfuse_2"]["peak_rss"],
        "peak_rss_8_over_2_members_qa": res["medfuse_qa_8"]["peak_rss"] / res["medfuse_qa_2"]["peak_rss"],
    }
    print(f"\n{'variant':<28}{'seconds':>10}{'peak RSS MB':>14}")
    for name, r in res.items():
        print(f"{name:<28}{r['seconds']:>10.2f}{r['peak_rss'] / 2**20:>14.0f}")
    print(f"\nfuse_folders is {ratios['speedup_vs_paddleseg']:.1f}x faster than the PaddleSeg algorithm "
          f"(target >= 4x) at {ratios['peak_rss_fraction_of_paddleseg']:.2f} of its peak RSS (target <= 0.25); "
          f"8 members use {ratios['peak_rss_8_over_2_members']:.2f}x the peak RSS of 2 (target <= 1.25), "
          f"{ratios['peak_rss_8_over_2_members_qa']:.2f}x with QA (each member's running argmax over its crop box). "
          "Peak RSS includes the interpreter and imported libraries (numba, SimpleITK) of each process.")
    if args.json:
        args.json.write_text(json.dumps({"results": res, "ratios": ratios, "shape": shape, "cases": cases,
                                         "classes": labels + 1}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
