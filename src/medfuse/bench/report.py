"""Result types of :mod:`medfuse.bench.runner` (public through it): sizes, measurements, targets, report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BenchmarkReport", "Measurement", "Sizes", "Target", "fmt_bytes", "fmt_time"]


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one benchmark run."""

    fusion: tuple[int, ...] = (5, 14, 128, 256, 256)  # (M, C, Z, Y, X)
    vote: tuple[int, ...] = (5, 256, 512, 512)  # (M, Z, Y, X)
    labels: int = 14  # labels of the vote and Dice data (background included)
    dice: tuple[int, ...] = (256, 512, 512)
    bandwidth_bytes: int = 1 << 30

    @classmethod
    def quick(cls) -> Sizes:
        return cls(fusion=(5, 14, 16, 32, 32), vote=(5, 24, 48, 48), labels=14, dice=(24, 48, 48),
                   bandwidth_bytes=1 << 24)


@dataclass(frozen=True)
class Measurement:
    """One method on one task: best time and smallest extra peak memory over the runs."""

    section: str
    method: str
    seconds: float
    input_bytes: int
    extra_bytes: int
    runs: int
    note: str = ""
    #: best read bandwidth probed between this method's runs (None without the bandwidth section)
    bandwidth_gb_per_s: float | None = None

    @property
    def gb_per_s(self) -> float:
        """Input bytes read per second, in GB/s (10**9 bytes)."""
        return self.input_bytes / self.seconds / 1e9 if self.seconds > 0 else float("inf")

    @property
    def share_of_bandwidth(self) -> float | None:
        """``gb_per_s`` over the bandwidth probed in the same time window."""
        return self.gb_per_s / self.bandwidth_gb_per_s if self.bandwidth_gb_per_s else None


@dataclass(frozen=True)
class Target:
    """A performance goal and whether this run met it."""

    name: str
    goal: float
    measured: float
    unit: str
    higher_is_better: bool = True
    #: for a speed-up: the speed-up a kernel reading its whole input once at the read bandwidth probed
    #: around its runs would reach (what memory allows on this machine in this run); None otherwise
    ceiling: float | None = None

    @property
    def met(self) -> bool:
        return self.measured >= self.goal if self.higher_is_better else self.measured <= self.goal


@dataclass(frozen=True)
class BenchmarkReport:
    """Everything one :func:`run_benchmark` call measured."""

    measurements: tuple[Measurement, ...]
    bandwidth_gb_per_s: float | None
    compile_seconds: dict[str, float]
    sizes: Sizes
    machine: dict[str, Any]
    skipped: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    targets: tuple[Target, ...] = field(default_factory=tuple)

    @property
    def judged(self) -> bool:
        """Whether the targets apply: only at the full problem sizes they were set for."""
        return self.sizes == Sizes()

    def medfuse(self, section: str) -> Measurement | None:
        return next((m for m in self.measurements if m.section == section and m.method.startswith("medfuse")),
                    None)

    def table(self) -> str:
        """The results as a Markdown table (time, GB/s, share of bandwidth, extra memory, speed-up)."""
        lines = ["| task | method | time | input GB/s | share of bandwidth | extra peak memory | medfuse speed-up |",
                 "|---|---|---:|---:|---:|---:|---:|"]
        for m in self.measurements:
            if m.section == "bandwidth":
                continue
            ours = self.medfuse(m.section)
            if m is ours:
                ratio = "-"
            elif ours is not None:
                ratio = f"{m.seconds / ours.seconds:.1f}x"
            else:
                ratio = "?"
            share = f"{m.share_of_bandwidth:.0%}" if m.share_of_bandwidth is not None else "-"
            lines.append(f"| {_TASKS.get(m.section, m.section)} | {m.method} | {fmt_time(m.seconds)} | "
                         f"{m.gb_per_s:.2f} | {share} | {fmt_bytes(m.extra_bytes)} | {ratio} |")
        out = ["\n".join(lines)]
        if self.bandwidth_gb_per_s:
            windows = [m.bandwidth_gb_per_s for m in self.measurements if m.bandwidth_gb_per_s]
            out.append(f"Read bandwidth (parallel numba sum, {self.machine.get('threads')} threads, "
                       f"{fmt_bytes(self.sizes.bandwidth_bytes)}): best {self.bandwidth_gb_per_s:.1f} GB/s; "
                       f"{min(windows):.1f}-{max(windows):.1f} GB/s in the windows of the rows above (each row's "
                       "share is against the bandwidth probed between its own runs).")
        if self.compile_seconds:
            total = sum(self.compile_seconds.values())
            parts = ", ".join(f"{k} {v:.2f} s" for k, v in self.compile_seconds.items())
            out.append(f"First-call compile time: {parts} (total {total:.2f} s).")
        if self.targets:
            rows = ["| target | goal | measured | at 100% of bandwidth | |", "|---|---:|---:|---:|---|"]
            for t in self.targets:
                cmp = ">=" if t.higher_is_better else "<="
                verdict = ("met" if t.met else "MISSED") if self.judged else "not judged"
                ceiling = f"{t.ceiling:.3g}{t.unit}" if t.ceiling is not None else "-"
                rows.append(f"| {t.name} | {cmp} {t.goal:g}{t.unit} | {t.measured:.3g}{t.unit} | {ceiling} | "
                            f"{verdict} |")
            out.append("\n".join(rows))
            if any(t.ceiling is not None for t in self.targets):
                out.append("'At 100% of bandwidth': the speed-up over the same peer of a kernel that would read its "
                           "whole input once at the read bandwidth probed around medfuse's runs; a goal above it "
                           "cannot be met on this machine in this run.")
            if not self.judged:
                out.append("The targets apply to the full problem sizes; this run used smaller ones, so they are "
                           "shown but not judged (run without --quick / custom sizes to judge them).")
        notes = [f"- skipped: {s}" for s in self.skipped] + [f"- check: {c}" for c in self.checks]
        if notes:
            out.append("\n".join(notes))
        return "\n\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "sizes": asdict(self.sizes),
            "bandwidth_gb_per_s": self.bandwidth_gb_per_s,
            "compile_seconds": self.compile_seconds,
            "measurements": [{**asdict(m), "gb_per_s": m.gb_per_s, "share_of_bandwidth": m.share_of_bandwidth}
                             for m in self.measurements],
            "targets": [{**asdict(t), "met": t.met if self.judged else None} for t in self.targets],
            "targets_judged": self.judged,
            "skipped": list(self.skipped),
            "checks": list(self.checks),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


_TASKS = {
    "fusion-float16": "mean + argmax, float16",
    "fusion-float32": "mean + argmax, float32",
    "vote": "majority vote",
    "dice": "Dice, all labels",
}


def fmt_time(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def fmt_bytes(n: float) -> str:
    if n < 1 << 20:
        return f"{n / 1024:.0f} KiB"
    if n < 1 << 30:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n / (1 << 30):.2f} GiB"
