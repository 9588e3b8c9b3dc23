"""Inference benchmark: where the time goes around the network, and memory vs a naive implementation.

    python benchmarks/bench_inference.py                  # 5 folds, 64x128x128 CT phantom, tiny 3D net
    python benchmarks/bench_inference.py --quick          # smaller, 2 folds (a smoke test)

1. Time: medfuse's ``Predictor.predict`` on a synthetic CT with tiny exported networks (CPU, oneDNN), split
   into the network (``predictor``: inside Paddle, copies included) and medfuse's own work around it
   (``preprocess``: crop/resample/normalise, ``tiling``: padding, flips, Gaussian weighting, accumulation,
   ``resample``: back to the original spacing + argmax). The share outside the network is the number that
   matters: the network is tiny here, so this is the worst case for it.
2. Memory: the same case run, in a fresh process each, by medfuse and by a naive implementation written
   the way PaddleSeg MedicalSeg's ``predict.py`` / nnU-Net v1 do it (every fold resident, a C-channel
   float32 aggregator AND a C-channel float32 count map per fold, the fold results stacked in float32,
   all channels resampled at once in float32, then a float16 copy for the ``.npz``). Peaks are the numpy
   allocations (tracemalloc) and the process's maximum resident set (ru_maxrss, Paddle included).

There is no GPU on the machine this was written on: every number is CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the test helpers export tiny networks

from paddle_models import export_models, make_plans  # noqa: E402


def _setup(args: argparse.Namespace, root: Path) -> tuple[list[Path], dict[str, Any]]:
    patch = [int(p) for p in args.patch]
    specs = [{"name": f"fold_{k}", "kind": "conv3d", "in_channels": 1, "num_classes": args.classes,
              "patch": patch, "seed": k} for k in range(args.folds)]
    folders = export_models(specs, root, fmt=args.format)
    stages = ({"patch_size": np.array(patch), "current_spacing": np.array(args.target_spacing)},)
    plans = make_plans(num_classes=args.classes - 1, stages=stages)
    return [folders[s["name"]] for s in specs], plans


def _case(args: argparse.Namespace) -> Any:
    from medfuse.synthetic import phantom

    return phantom(tuple(args.shape), num_labels=args.classes - 1, spacing=tuple(args.spacing), seed=0)


# ----------------------------------------------------------------------------------------------------------
# the naive implementation (PaddleSeg MedicalSeg predict.py / nnU-Net v1 style), for the memory comparison


def naive_predict(folds: list[Any], pre: Any, *, patch: tuple[int, ...], num_classes: int, crop_shape: tuple[int, ...],
                  step: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    import itertools

    from scipy import ndimage

    from medfuse.inference.sliding import gaussian_importance_map, mirror_combinations, pad_widths, tile_starts

    data = pre.data
    pads = pad_widths(data.shape[1:], patch)
    padded = np.pad(data, ((0, 0), *pads))
    g = gaussian_importance_map(patch)
    per_fold = []
    for model in folds:  # all resident
        agg = np.zeros((num_classes, *padded.shape[1:]), np.float32)
        cnt = np.zeros((num_classes, *padded.shape[1:]), np.float32)
        starts = [tile_starts(n, p, step) for n, p in zip(padded.shape[1:], patch, strict=True)]
        for z, y, x in itertools.product(*starts):
            sl = (slice(None), slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
            tile = padded[sl]
            result = np.zeros((num_classes, *patch), np.float32)
            mirrors = mirror_combinations((0, 1, 2))
            for m in mirrors:
                ax = tuple(a + 1 for a in m)
                pred = model(np.ascontiguousarray(np.flip(tile, ax))[None])[0]
                result += 1 / len(mirrors) * np.flip(pred, ax)
            agg[sl] += result * g
            cnt[sl] += g
        fold = agg / cnt
        per_fold.append(fold[(slice(None), *(slice(a, n - b) for (a, b), n in
                                              zip(pads, padded.shape[1:], strict=True)))])
    stacked = np.stack(per_fold)
    mean = stacked.mean(0)
    zoom = [n / o for o, n in zip(mean.shape[1:], crop_shape, strict=True)]
    resampled = np.stack([ndimage.zoom(c, zoom, order=1, mode="nearest", grid_mode=True) for c in mean])
    labels = resampled.argmax(0).astype(np.uint8)
    return resampled.astype(np.float16), labels


# ----------------------------------------------------------------------------------------------------------
# child processes


def _child(args: argparse.Namespace) -> None:
    from medfuse.geometry import paste_into_box
    from medfuse.inference import Predictor, preprocess

    folders = [Path(p) for p in args.child_folders]
    plans = json.loads(Path(args.child_plans).read_text())
    plans = _plans_from_json(plans)
    ph = _case(args)
    out: dict[str, Any] = {}
    predictor = Predictor(folders, plans=plans, stage=0, folds_resident="all", batch_size=args.batch_size)
    if args.child == "time":
        predictor.predict(ph.image, geometry=ph.geometry)  # warm-up: loads the folds, oneDNN kernels
        runs = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            pred = predictor.predict(ph.image, geometry=ph.geometry, probability_dtype=np.float16)
            wall = time.perf_counter() - t0
            runs.append({"wall": wall, **{k: getattr(pred.timings, k) for k in
                                          ("preprocess", "predictor", "tiling", "resample")}})
        out["runs"] = runs
        out["grid"] = list(pred.size_after_resampling)
        out["batch_size"] = predictor.batch_size
        out["config"] = [str(c) for c in predictor.config]
    else:
        models = list(predictor._iter_models())  # load every fold before measuring
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        t0 = time.perf_counter()
        if args.child == "medfuse":
            pred = predictor.predict(ph.image, geometry=ph.geometry, probability_dtype=np.float16)
            labels = pred.labels
        else:
            pre = preprocess(ph.image[None], ph.spacing, plans=predictor.plans, stage=0)
            crop = pre.shape_after_cropping
            _, cropped = naive_predict(models, pre, patch=predictor.patch_size,
                                       num_classes=predictor.num_classes, crop_shape=crop)
            labels = paste_into_box(cropped, pre.crop_bbox, ph.shape)
        out["wall"] = time.perf_counter() - t0
        out["tracemalloc_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out["rss_before"] = rss0 * 1024
        out["rss_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        np.save(args.child_labels, labels)
    print("RESULT " + json.dumps(out))


def _plans_to_json(plans: dict[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, np.generic):
            return v.item()
        return v

    return conv(plans)


def _plans_from_json(d: dict[str, Any]) -> dict[str, Any]:
    def keys_int(m: dict[str, Any]) -> dict[int, Any]:
        return {int(k): v for k, v in m.items()}

    d = dict(d)
    for k in ("modalities", "normalization_schemes", "use_mask_for_norm", "plans_per_stage"):
        d[k] = keys_int(d[k])
    d["dataset_properties"] = {"intensityproperties": keys_int(d["dataset_properties"]["intensityproperties"])}
    return d


def _run_child(kind: str, args: argparse.Namespace, folders: list[Path], plans_file: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, "--child-plans", str(plans_file),
           "--child-labels", str(plans_file.with_name(f"labels_{kind}.npy")),
           "--child-folders", *map(str, folders), *args.passthrough]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"{kind} run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return dict(json.loads(line[len("RESULT "):]))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", type=int, nargs=3, default=[64, 128, 128], help="phantom (Z, Y, X)")
    p.add_argument("--spacing", type=float, nargs=3, default=[2.5, 0.8, 0.8], help="phantom spacing, mm")
    p.add_argument("--target-spacing", type=float, nargs=3, default=[2.5, 1.6, 1.6], help="network spacing, mm")
    p.add_argument("--patch", type=int, nargs=3, default=[32, 64, 64])
    p.add_argument("--classes", type=int, default=4, help="network output channels (background included)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--format", choices=("json", "pdmodel"), default="json")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="2 folds, 48x96x96, 1 repeat")
    p.add_argument("--child", choices=("time", "medfuse", "naive"), help=argparse.SUPPRESS)
    p.add_argument("--child-plans", help=argparse.SUPPRESS)
    p.add_argument("--child-folders", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--child-labels", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.folds, args.shape, args.repeat = 2, [48, 96, 96], 1
    if args.child:
        _child(args)
        return
    args.passthrough = ["--shape", *map(str, args.shape), "--spacing", *map(str, args.spacing),
                        "--classes", str(args.classes), "--repeat", str(args.repeat),
                        *(["--batch-size", str(args.batch_size)] if args.batch_size else [])]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders, plans = _setup(args, root / "models")
        plans_file = root / "plans.json"
        plans_file.write_text(json.dumps(_plans_to_json(plans)))
        t = _run_child("time", args, folders, plans_file)
        mem_ours = _run_child("medfuse", args, folders, plans_file)
        mem_naive = _run_child("naive", args, folders, plans_file)
        agree = float(np.mean(np.load(root / "labels_medfuse.npy") == np.load(root / "labels_naive.npy")))

    import platform

    print(f"# medfuse inference benchmark ({platform.machine()}, {platform.python_version()}, CPU only: no GPU here)")
    print(f"case: phantom {args.shape} at {args.spacing} mm -> network grid {t['grid']} at {args.target_spacing} mm; "
          f"{args.folds} folds of a tiny 3D net ({args.format}), patch {args.patch}, {args.classes} classes, "
          f"8-flip TTA, batch {t['batch_size']}")
    print(f"config: {t['config'][0]}")
    keys = ("preprocess", "predictor", "tiling", "resample")
    med = {k: statistics.median(r[k] for r in t["runs"]) for k in (*keys, "wall")}
    compute = sum(med[k] for k in keys)
    print(f"\n## time per case (median of {len(t['runs'])} runs, seconds)")
    for k in keys:
        print(f"  {k:<11} {med[k]:8.3f}  {100 * med[k] / compute:5.1f}%")
    print(f"  {'wall':<11} {med['wall']:8.3f}")
    share = (compute - med["predictor"]) / compute
    print(f"share outside the network (preprocess + tiling + resample): {100 * share:.1f}%  (target <= 15%)")
    print("\n## memory for one case, fresh process each (MB)")
    mb = 2**20
    for name, m in (("medfuse", mem_ours), ("naive", mem_naive)):
        print(f"  {name:<8} numpy peak {m['tracemalloc_peak'] / mb:8.1f}   process peak {m['rss_peak'] / mb:8.1f} "
              f"(after loading the folds {m['rss_before'] / mb:8.1f})   wall {m['wall']:.2f} s")
    print(f"numpy peak ratio naive / medfuse: {mem_naive['tracemalloc_peak'] / mem_ours['tracemalloc_peak']:.1f}x; "
          f"labels agree on {100 * agree:.4f}% of voxels (float32 summation order decides near-ties)")


if __name__ == "__main__":
    main()
