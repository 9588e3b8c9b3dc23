"""medfuse's core kernels against the usual ways of doing the same work, measured in one run.

:func:`run_benchmark` times, on the same data in one process,

* **fusion** (mean of 5 members then argmax, 5 x 14 x 128 x 256 x 256, float16 and float32):
  :func:`medfuse.fusion.fuse_probabilities` vs nnU-Net v2's approach (float32 running sum, then argmax),
  ``np.mean(np.stack(members), 0).argmax(0)`` and MONAI's ``MeanEnsemble`` (when installed);
* **vote** (5 x 256 x 512 x 512 uint8, 14 labels): :func:`medfuse.fusion.majority_vote` vs numpy one-hot
  counting and SimpleITK's ``LabelVotingImageFilter``, then against SimpleITK at ~100%, ~75% and ~45%
  unanimous voxels (:mod:`medfuse.bench.agreement`); the fusion sections add log-space fusion
  (``space="log"``) next to the linear row;
* **dice** (14 labels, 256 x 512 x 512): :func:`medfuse.metrics.dice` vs ``np.bincount(ref * K + pred)``
  and SimpleITK's ``LabelOverlapMeasuresImageFilter``;
* **surface** (HD, HD95, ASD, NSD at 1 and 2 mm of every label, 256 x 512 x 512 at 2.5 x 0.8 x 0.8 mm):
  :func:`medfuse.surface_metrics` vs DeepMind's ``surface-distance`` per label (when installed);
* **bandwidth**: a parallel numba sum over 1 GiB on every thread, the floor for a kernel that reads its
  input once; each medfuse kernel's throughput is reported as a share of it.

Protocol: one warm-up call (for medfuse it compiles the kernel; its duration minus a warm call is the
compile time reported), then timed runs: ``repeat`` (>= 3) for the peers; for medfuse's kernels, which
take milliseconds and use every thread (so a neighbour's job on a shared machine slows them most), as
many as fit in 1.5 s (3 to 30). The table reports the fastest run. Before every timed run the bandwidth
probe runs, and each method's *share of bandwidth* is its throughput over the best probe of its own time
window. *Extra peak memory* is measured in ``repeat`` further runs, the smallest kept: the larger of
tracemalloc's peak (numpy's allocations and numba's, both traced) and the growth of the process's peak
resident set (reset before each run through ``/proc/self/clear_refs`` on Linux; this catches
SimpleITK's C++ allocations). Inputs are prepared before timing (SimpleITK images too). Data are the
project's synthetic abdominal phantoms (:mod:`medfuse.synthetic`): members with realistic boundary
disagreement, ~94% background.

Absolute times drift between runs on shared machines; compare the ratios, which come from one run.
"""

from __future__ import annotations

import gc
import os
import platform
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._core.optional import has_module, import_optional
from ..errors import ValidationError
from . import agreement
from .peers import (
    _bincount_dice,
    _confusion_dice,
    _deepmind_surface,
    _monai_mean,
    _nnunet_v2_style,
    _numpy_mean_stack,
    _numpy_onehot_vote,
    _same_dice,
    _same_surface,
)
from .report import BenchmarkReport, Measurement, Sizes, Target, fmt_bytes, fmt_time

__all__ = [
    "SECTIONS",
    "BenchmarkReport",
    "Measurement",
    "Sizes",
    "Target",
    "run_benchmark",
]

#: what :func:`run_benchmark` can run (``only=``)
SECTIONS: tuple[str, ...] = ("fusion", "vote", "dice", "surface", "bandwidth")


# ------------------------------------------------------------------------------------------ measuring
def _rss_bytes(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _run_once(fn: Callable[[], Any], *, trace: bool) -> tuple[float, int, Any]:
    """(seconds, extra peak bytes, result) of one call; tracemalloc only when ``trace``."""
    gc.collect()
    rss_ok = _reset_peak_rss()
    rss0 = _rss_bytes("VmRSS")
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - t0
    traced = 0
    if trace:
        _, traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    hwm = _rss_bytes("VmHWM") if rss_ok else None
    rss_extra = max(0, hwm - rss0) if hwm is not None and rss0 is not None else 0
    return elapsed, max(traced, rss_extra), result


def _timed_first_call(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fn()
    return max(0.0, first - (time.perf_counter() - t0))


# ------------------------------------------------------------------------------------------ data
def _resident(a: NDArray[Any]) -> NDArray[Any]:
    """``a`` copied into memory written page by page, like members loaded from disk.

    The simulators start from ``np.zeros``, whose pages stay unmapped until written: a class channel
    that is 0 outside its organ's box then reads as the kernel's shared zero page, from cache, far
    faster than RAM (see docs/performance.md, *Noise*).
    """
    out = np.empty_like(a)
    np.copyto(out, a)
    return out


def _phantom(shape: Sequence[int], seed: int = 0) -> Any:
    from .. import synthetic

    return synthetic.phantom(tuple(shape), num_labels=13, seed=seed)


def _probability_members(sizes: Sizes, log: Callable[[str], None]) -> list[NDArray[np.float16]]:
    from .. import synthetic

    m, c, *spatial = sizes.fusion
    log(f"  simulating {m} probability members {tuple(sizes.fusion[1:])} ...")
    ph = _phantom(spatial, seed=1)
    qualities = np.linspace(0.9, 0.7, m)
    return [_resident(synthetic.simulate_probabilities(ph, num_classes=c, quality=float(q), seed=10 + i,
                                                       dtype=np.float16, error_correlation=0.6, shared_seed=1))
            for i, q in enumerate(qualities)]


def _label_members(sizes: Sizes, log: Callable[[str], None]) -> tuple[NDArray[np.uint8], list[NDArray[np.uint8]]]:
    from .. import synthetic

    m, *spatial = sizes.vote
    log(f"  simulating {m} label maps {tuple(spatial)} ...")
    ph = _phantom(spatial, seed=2)
    qualities = np.linspace(0.9, 0.7, m)
    maps = [_resident(np.ascontiguousarray(synthetic.simulate_labels(ph, num_classes=sizes.labels, quality=float(q),
                                                                     seed=20 + i, error_correlation=0.6,
                                                                     shared_seed=2), dtype=np.uint8))
            for i, q in enumerate(qualities)]
    return _resident(np.ascontiguousarray(ph.labels, dtype=np.uint8)), maps


# ------------------------------------------------------------------------------------------ sections
class _Run:
    def __init__(self, sizes: Sizes, repeat: int, log: Callable[[str], None]) -> None:
        self.sizes = sizes
        self.repeat = repeat
        self.log = log
        self.measurements: list[Measurement] = []
        self.compile: dict[str, float] = {}
        self.skipped: list[str] = []
        self.checks: list[str] = []
        self.bandwidth: float | None = None
        self._probe: tuple[NDArray[np.uint64], Callable[[], int]] | None = None
        self._probe_best = float("inf")

    def measure(self, section: str, method: str, fn: Callable[[], Any], input_bytes: int, note: str = "") -> Any:
        """Warm up, then time ``fn`` (with a bandwidth probe before each run) and trace its memory.

        medfuse's kernels take tens of milliseconds and use every thread, so a neighbour's job on a shared
        machine slows them more than the single-threaded peers: they are run until 1.5 s have passed
        (at most 30 runs, at least ``repeat``), the peers ``repeat`` times. Best time, smallest memory.
        """
        fn()  # warm-up (and compilation)
        many = method.startswith("medfuse")
        times: list[float] = []
        probes: list[float] = []
        result = None
        start = time.perf_counter()
        while len(times) < self.repeat or (many and len(times) < 30 and time.perf_counter() - start < 1.5):
            if self._probe is not None:
                probes.append(self._time_probe())
            result = None
            elapsed, _, result = _run_once(fn, trace=False)
            times.append(elapsed)
        extra = min(_run_once(fn, trace=True)[1] for _ in range(self.repeat))
        window = self._probe[0].nbytes / min(probes) / 1e9 if probes and self._probe is not None else None
        m = Measurement(section, method, min(times), input_bytes, int(extra), len(times), note, window)
        self.measurements.append(m)
        share = f" ({m.share_of_bandwidth:.0%} of {window:.1f} GB/s)" if window else ""
        self.log(f"  {method:<34} {fmt_time(m.seconds):>10}  {m.gb_per_s:7.2f} GB/s{share}  "
                 f"extra {fmt_bytes(extra)}  [{len(times)} runs]")
        return result

    def _time_probe(self) -> float:
        if self._probe is None:  # pragma: no cover - callers check
            raise RuntimeError("no bandwidth probe")
        t0 = time.perf_counter()
        self._probe[1]()
        elapsed = time.perf_counter() - t0
        self._probe_best = min(self._probe_best, elapsed)
        self.bandwidth = self._probe[0].nbytes / self._probe_best / 1e9
        return elapsed

    def check(self, what: str, ok: bool) -> None:
        self.checks.append(f"{what}: {'ok' if ok else 'DIFFERENT'}")
        if not ok:
            self.log(f"  WARNING: {what} differ")

    # ---------------------------------------------------------------- fusion
    def fusion(self) -> None:
        from ..fusion import fuse_probabilities

        members16 = _probability_members(self.sizes, self.log)
        tiny = [m[:, :1, :2, :3].copy() for m in members16[:2]]
        self.compile["fusion kernel"] = _timed_first_call(lambda: fuse_probabilities(tiny))
        for dtype in (np.float16, np.float32):
            members = members16 if dtype == np.float16 else [m.astype(np.float32) for m in members16]
            nbytes = sum(m.nbytes for m in members)
            section = f"fusion-{np.dtype(dtype).name}"
            self.log(f"fusion, {len(members)} x {members[0].shape} {np.dtype(dtype).name} "
                     f"({fmt_bytes(nbytes)}):")
            def ours_fn(ms: list[NDArray[Any]] = members) -> Any:
                return fuse_probabilities(ms)

            def nnunet_fn(ms: list[NDArray[Any]] = members) -> Any:
                return _nnunet_v2_style(ms)

            def stack_fn(ms: list[NDArray[Any]] = members) -> Any:
                return _numpy_mean_stack(ms)

            def monai_fn(ms: list[NDArray[Any]] = members) -> Any:
                return _monai_mean(ms)

            ours = self.measure(section, "medfuse fuse_probabilities", ours_fn, nbytes)
            agreement.log_fusion_row(self, section, members, nbytes, ours)
            theirs = self.measure(section, "nnU-Net v2 style (running sum)", nnunet_fn, nbytes)
            self.check(f"{section}: medfuse == nnU-Net v2 style labels (share equal)",
                       bool(np.mean(ours == theirs) > 0.9999))
            self.measure(section, "np.mean(np.stack(m)).argmax(0)", stack_fn, nbytes)
            if has_module("monai") and has_module("torch"):
                self.measure(section, "MONAI MeanEnsemble + argmax", monai_fn, nbytes)
            elif dtype == np.float16:
                self.skipped.append("MONAI MeanEnsemble: monai/torch not installed")
            del members

    # ---------------------------------------------------------------- vote
    def vote(self) -> None:
        from ..fusion import majority_vote

        reference, maps = _label_members(self.sizes, self.log)
        k = self.sizes.labels
        nbytes = sum(m.nbytes for m in maps)
        tiny = [m[:1, :2, :3].copy() for m in maps[:3]]
        self.compile["vote kernel"] = _timed_first_call(lambda: majority_vote(tiny))
        stack = np.stack(maps)
        unanimous = float(np.mean((stack == stack[0]).all(axis=0)))
        del stack
        self.log(f"vote, {len(maps)} x {maps[0].shape} uint8, {k} labels ({unanimous:.1%} of voxels unanimous):")
        note = f"{unanimous:.1%} unanimous voxels"
        ours = self.measure("vote", "medfuse majority_vote", lambda: majority_vote(maps), nbytes, note)
        onehot = self.measure("vote", "numpy one-hot counting", lambda: _numpy_onehot_vote(maps, k), nbytes)
        self.check("vote: medfuse == numpy one-hot counting (ties: lowest)", bool(np.array_equal(ours, onehot)))
        del onehot
        if has_module("SimpleITK"):
            sitk = import_optional("SimpleITK")
            images = [sitk.GetImageFromArray(m) for m in maps]
            voted = self.measure("vote", "SimpleITK LabelVoting", lambda: sitk.LabelVoting(images, k), nbytes,
                                 "images converted before timing")
            sitk_out = sitk.GetArrayFromImage(voted)
            ours_u = majority_vote(maps, tie="undecided", undecided_label=k)
            self.check("vote: medfuse tie='undecided' == SimpleITK LabelVoting",
                       bool(np.array_equal(ours_u, sitk_out)))
            del images
        else:
            self.skipped.append("SimpleITK LabelVoting: SimpleITK not installed")
        maps.clear()  # free the members before the agreement rows build theirs
        agreement.vote_levels(self, reference, self.sizes.vote[0], k)

    # ---------------------------------------------------------------- dice
    def dice(self) -> None:
        try:
            from ..metrics import dice as medfuse_dice
        except ImportError as exc:
            self.skipped.append(f"Dice: medfuse.metrics is not available yet ({exc})")
            return
        sizes = self.sizes
        k = sizes.labels
        ref, maps = _label_members(Sizes(vote=(1, *sizes.dice), labels=k), self.log)
        pred = maps[0]
        labels = list(range(1, k))
        nbytes = ref.nbytes + pred.nbytes
        self.compile["confusion kernel (metrics)"] = _timed_first_call(
            lambda: medfuse_dice(ref[:1, :2, :3].copy(), pred[:1, :2, :3].copy(), labels=labels))
        self.log(f"Dice, {ref.shape} uint8, {k} labels:")
        ours = self.measure("dice", "medfuse dice", lambda: medfuse_dice(ref, pred, labels=labels), nbytes)
        self.measure("dice", "medfuse confusion_matrix + Dice", lambda: _confusion_dice(ref, pred, k), nbytes,
                     "num_classes given; Dice from the matrix")
        bc = self.measure("dice", "np.bincount(ref * K + pred)", lambda: _bincount_dice(ref, pred, k), nbytes)
        self.check("dice: medfuse == bincount", _same_dice(ours, bc))
        if has_module("SimpleITK"):
            sitk = import_optional("SimpleITK")
            r_img, p_img = sitk.GetImageFromArray(ref), sitk.GetImageFromArray(pred)

            # which labels the reference holds is the caller's business: found before timing
            present = set(np.flatnonzero(np.bincount(ref.ravel(), minlength=k)[:k]).tolist())

            def sitk_only() -> dict[int, float]:
                f = sitk.LabelOverlapMeasuresImageFilter()
                f.Execute(r_img, p_img)
                return {c: float(f.GetDiceCoefficient(c)) for c in labels if c in present}

            st = self.measure("dice", "SimpleITK LabelOverlapMeasures", sitk_only, nbytes,
                              "images converted before timing")
            self.check("dice: medfuse == SimpleITK", _same_dice(ours, st))
        else:
            self.skipped.append("SimpleITK LabelOverlapMeasures: SimpleITK not installed")

    # ---------------------------------------------------------------- surface
    def surface(self) -> None:
        from ..metrics.surface import surface_metrics

        if not has_module("surface_distance"):
            self.skipped.append("surface metrics: surface-distance (the peer) not installed; pip install medfuse[test]")
            return
        ref, maps = _label_members(Sizes(vote=(1, *self.sizes.dice), labels=self.sizes.labels), self.log)
        pred, spacing, tol = maps[0], (2.5, 0.8, 0.8), (1.0, 2.0)
        nbytes = ref.nbytes + pred.nbytes
        self.compile["surface kernels (metrics)"] = _timed_first_call(
            lambda: surface_metrics(ref[:3, :5, :7].copy(), pred[:3, :5, :7].copy(), spacing_mm=spacing))
        self.log(f"surface metrics, {ref.shape} uint8, spacing {spacing} mm:")
        ours = self.measure("surface", "medfuse surface_metrics",
                            lambda: surface_metrics(ref, pred, spacing_mm=spacing, tolerance_mm=tol), nbytes,
                            "every label in one call")
        theirs = self.measure("surface", "surface-distance (DeepMind)",
                              lambda: _deepmind_surface(ref, pred, spacing, tol), nbytes,
                              "per label: masks, compute_surface_distances, reductions")
        self.check("surface: medfuse == surface-distance", _same_surface(ours, theirs))

    # ---------------------------------------------------------------- bandwidth
    def read_bandwidth(self) -> None:
        """Set up the bandwidth probe. It runs again before every timed run of every method: a shared
        machine delivers 20-80 GB/s depending on its neighbours, so each method's share is computed
        against the best probe of its own time window; the report's bandwidth is the best of all."""
        from .._kernels.bandwidth import _sum_chunks
        from .._kernels.threads import n_threads, run_ranges, split

        n = self.sizes.bandwidth_bytes // 8
        data = np.arange(n, dtype=np.uint64)  # written: every page touched (and distinct) before timing
        threads = n_threads()
        chunk = max(1 << 16, -(-n // (4 * threads)))
        n_chunks = -(-n // chunk)
        ranges = split(n_chunks, threads, per_thread=4)
        out = np.zeros(len(ranges), dtype=np.uint64)

        def run() -> int:
            run_ranges(_sum_chunks, ranges, threads, data.ctypes.data, n, chunk, out)
            return int(out.sum())

        if run() != (n * (n - 1) // 2) % (1 << 64):  # pragma: no cover - a kernel bug
            raise RuntimeError("bandwidth probe summed wrongly")
        self._probe = (data, run)
        self.log(f"read bandwidth, parallel sum over {fmt_bytes(data.nbytes)} on {threads} threads "
                 "(probed again before every timed run below)")
        for _ in range(self.repeat):
            self._time_probe()

    def finish_bandwidth(self) -> None:
        if self._probe is None:
            return
        data, _ = self._probe
        self.measurements.insert(0, Measurement("bandwidth", "numba parallel sum (best probe)", self._probe_best,
                                                data.nbytes, 0, self.repeat, "", self.bandwidth))
        self.log(f"  best read bandwidth {self.bandwidth:.1f} GB/s")
        self._probe = None


def _targets(run: _Run) -> list[Target]:
    out: list[Target] = []

    def row(section: str, method: str) -> Measurement | None:
        """The first measurement of ``section`` whose method starts with ``method``."""
        return next((m for m in run.measurements if m.section == section and m.method.startswith(method)), None)

    def add(name: str, goal: float, value: float, unit: str = "x", higher: bool = True,
            ceiling: float | None = None) -> None:
        out.append(Target(name, goal, value, unit, higher, ceiling))

    def speedup(name: str, goal: float, section: str, peer: str) -> None:
        ours, theirs = row(section, "medfuse"), row(section, peer)
        if ours is None or theirs is None:
            return
        ratio = theirs.seconds / ours.seconds
        share = ours.share_of_bandwidth  # reading at 100% of the probed bandwidth would divide ours by this
        add(name, goal, ratio, ceiling=ratio / share if share else None)

    speedup("fusion float16 vs nnU-Net v2 style", 20, "fusion-float16", "nnU-Net")
    speedup("fusion float32 vs nnU-Net v2 style", 6, "fusion-float32", "nnU-Net")
    for dt in ("float16", "float32"):
        ours = row(f"fusion-{dt}", "medfuse")
        if ours is None:
            continue
        if ours.share_of_bandwidth is not None:
            add(f"fusion {dt}: share of read bandwidth", 60, 100 * ours.share_of_bandwidth, "%")
        add(f"fusion {dt}: extra peak memory", 64, ours.extra_bytes / (1 << 20), " MiB", higher=False)
    speedup("vote vs SimpleITK", 25, "vote", "SimpleITK")
    speedup("vote vs numpy one-hot", 80, "vote", "numpy")
    speedup("Dice vs bincount", 25, "dice", "np.bincount")
    speedup("Dice vs SimpleITK", 40, "dice", "SimpleITK")
    speedup("surface metrics vs DeepMind surface-distance", 10, "surface", "surface-distance")
    agreement.targets(run.measurements, add)
    return out


def run_benchmark(*, quick: bool = False, only: Iterable[str] | None = None, repeat: int = 3,
                  sizes: Sizes | None = None, log: Callable[[str], None] | None = None) -> BenchmarkReport:
    """Run the benchmark suite and return what it measured.

    Parameters
    ----------
    quick : bool, default False
        Small sizes (:meth:`Sizes.quick`), for smoke tests; the ratios then mean little.
    only : iterable of str, optional
        Sections to run, from :data:`SECTIONS` ("fusion", "vote", "dice", "surface", "bandwidth"); all by default.
    repeat : int, default 3
        Timed runs per method (at least 3), after one warm-up run.
    sizes : Sizes, optional
        Explicit problem sizes (overrides ``quick``).
    log : callable, optional
        Receives progress lines (e.g. ``print``); silent by default.

    Returns
    -------
    BenchmarkReport
        Measurements, read bandwidth, compile times, targets; ``.table()`` renders them.
    """
    chosen = list(SECTIONS) if only is None else [s.strip() for s in only if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown or not chosen:
        raise ValidationError(f"`only` must name sections among {list(SECTIONS)}; got {chosen}.")
    if repeat < 3:
        raise ValidationError(f"`repeat` must be at least 3 (the table reports the best of them); got {repeat}.")
    sz = sizes if sizes is not None else (Sizes.quick() if quick else Sizes())
    run = _Run(sz, repeat, log or (lambda _line: None))
    import numba

    # bandwidth first: the share of it is what every kernel is judged by
    for section in sorted(chosen, key=lambda s: s != "bandwidth"):
        if section == "bandwidth":
            run.read_bandwidth()
        else:
            getattr(run, section)()
        gc.collect()
    run.finish_bandwidth()
    machine = {
        "cpu_count": os.cpu_count(),
        "threads": numba.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "quick": sizes is None and quick,
    }
    return BenchmarkReport(tuple(run.measurements), run.bandwidth, dict(run.compile), sz, machine,
                           tuple(run.skipped), tuple(run.checks), tuple(_targets(run)))
