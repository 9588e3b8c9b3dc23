"""The benchmark suite runs end to end on tiny sizes (a smoke test: no timing is asserted)."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest

from medfuse import ValidationError
from medfuse.bench.runner import SECTIONS, BenchmarkReport, Sizes, _resident, run_benchmark

TINY = Sizes(fusion=(3, 14, 8, 12, 12), vote=(3, 8, 12, 14), labels=14, dice=(8, 12, 14), bandwidth_bytes=1 << 20)


@pytest.fixture(scope="module")
def report() -> BenchmarkReport:
    return run_benchmark(sizes=TINY)


def test_every_section_is_measured(report):
    sections = {m.section for m in report.measurements}
    assert {"fusion-float16", "fusion-float32", "vote", "dice", "bandwidth"} <= sections
    for section in ("fusion-float16", "fusion-float32", "vote", "dice"):
        ours = report.medfuse(section)
        assert ours is not None and ours.seconds > 0 and ours.runs >= 3
        peers = [m for m in report.measurements if m.section == section and m is not ours]
        assert peers, section
    assert report.bandwidth_gb_per_s is not None and report.bandwidth_gb_per_s > 0
    assert set(report.compile_seconds) >= {"fusion kernel", "vote kernel"}


def test_results_agree_with_the_peers(report):
    assert report.checks and all(c.endswith(": ok") for c in report.checks), report.checks


def test_table_and_json(report):
    table = report.table()
    assert "| medfuse fuse_probabilities |" in table and "Read bandwidth" in table
    assert "SimpleITK LabelVoting" in table
    data = json.loads(report.to_json())
    assert data["sizes"]["fusion"] == list(TINY.fusion)
    assert {t["name"] for t in data["targets"]} >= {"vote vs SimpleITK", "fusion float16 vs nnU-Net v2 style"}
    for m in data["measurements"]:
        assert m["seconds"] > 0 and m["extra_bytes"] >= 0 and m["gb_per_s"] > 0
    assert any("MONAI" in s for s in data["skipped"]) or any("MONAI" in m["method"] for m in data["measurements"])


def test_only_and_bad_options():
    r = run_benchmark(sizes=TINY, only=["bandwidth"])
    assert {m.section for m in r.measurements} == {"bandwidth"}
    with pytest.raises(ValidationError, match="`only`"):
        run_benchmark(sizes=TINY, only=["fusoin"])
    with pytest.raises(ValidationError, match="`repeat`"):
        run_benchmark(sizes=TINY, repeat=1)
    assert set(SECTIONS) == {"fusion", "vote", "dice", "surface", "bandwidth"}


def test_bench_command_writes_json(tmp_path, capsys):
    from medfuse.cli import bench

    parser = argparse.ArgumentParser()
    bench.configure(parser)
    out = tmp_path / "bench.json"
    args = parser.parse_args(["--quick", "--only", "vote,bandwidth", "--json", str(out)])
    assert bench.run(args) == 0
    data = json.loads(out.read_text())
    assert {m["section"] for m in data["measurements"]} == {"vote", "bandwidth"}
    assert "| majority vote | medfuse majority_vote |" in capsys.readouterr().out


def test_targets_are_judged_only_at_full_size(report):
    assert not report.judged
    assert "not judged" in report.table() and "MISSED" not in report.table()
    assert all(t["met"] is None for t in report.to_dict()["targets"])
    full = BenchmarkReport(report.measurements, report.bandwidth_gb_per_s, report.compile_seconds, Sizes(),
                           report.machine, targets=report.targets)
    assert full.judged and ("met" in full.table() or "MISSED" in full.table())


def test_speed_up_targets_carry_the_bandwidth_ceiling(report):
    # ceiling = peer time / (medfuse's input bytes / bandwidth probed around medfuse's runs)
    peers = {"fusion float32 vs nnU-Net v2 style": ("fusion-float32", "nnU-Net"),
             "vote vs SimpleITK": ("vote", "SimpleITK"), "Dice vs bincount": ("dice", "np.bincount")}
    targets = {t.name: t for t in report.targets}
    for name, (section, peer) in peers.items():
        ours = report.medfuse(section)
        theirs = next(m for m in report.measurements if m.section == section and m.method.startswith(peer))
        want = theirs.seconds * ours.bandwidth_gb_per_s * 1e9 / ours.input_bytes
        assert targets[name].ceiling == pytest.approx(want, rel=1e-12)
        assert targets[name].measured == pytest.approx(theirs.seconds / ours.seconds, rel=1e-12)
    assert all(t.ceiling is None for t in report.targets if t.unit != "x")
    assert "at 100% of bandwidth" in report.table()
    assert all("ceiling" in t for t in report.to_dict()["targets"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the resident set size from /proc")
def test_benchmark_inputs_are_resident_in_memory():
    # np.zeros pages stay unmapped until written and read as the shared zero page, from cache: inputs
    # that are partly such pages would time faster than any array loaded from disk
    def rss() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

    lazy = np.zeros((64, 1024, 1024), np.uint8)
    lazy[7, 3, 5] = 9
    before = rss()
    resident = _resident(lazy)
    grown = rss() - before
    assert grown > 0.9 * lazy.nbytes, grown
    assert resident.base is None and np.shares_memory(resident, lazy) is False
    np.testing.assert_array_equal(resident, lazy)
