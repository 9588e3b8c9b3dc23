"""Numba's on-disk cache of medfuse's kernels: where it goes, how it is turned off, and that several processes
compiling the same kernels at once into one fresh cache folder all get correct results (numba issue #4807).

Every test here uses its own temporary NUMBA_CACHE_DIR: nothing depends on a warm cache of the machine.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _reference import twin_fusion as ref, twin_metrics as ref_metrics
from medfuse import _kernels
from medfuse._kernels import cache


def _plain(a: np.ndarray) -> np.ndarray:
    return a + 1


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    monkeypatch.delenv("MEDFUSE_NUMBA_CACHE", raising=False)
    return tmp_path / "numba"


def test_cache_root_honours_numba_cache_dir_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import numba

    from medfuse import __version__

    tag = f"{__version__}-{numba.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert cache.cache_root() == tmp_path / "a" / "medfuse" / tag
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    if sys.platform.startswith("linux"):
        assert cache.cache_root() == tmp_path / "b" / "medfuse" / "numba" / tag


@pytest.mark.parametrize("value", ["0", "false", "off", " No "])
def test_medfuse_numba_cache_0_turns_the_cache_off(cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                   value: str) -> None:
    from numba.core.caching import NullCache

    monkeypatch.setenv("MEDFUSE_NUMBA_CACHE", value)
    kernel = _kernels.jit(_plain)
    assert isinstance(kernel._cache, NullCache)
    assert kernel(np.arange(3)).tolist() == [1, 2, 3]
    assert not cache_dir.exists()


def test_a_kernel_is_saved_then_loaded_from_the_cache(cache_dir: Path) -> None:
    first = _kernels.jit(_plain)
    assert isinstance(first._cache, cache._LockedFunctionCache)
    assert first(np.arange(3)).tolist() == [1, 2, 3]
    assert sum(first.stats.cache_misses.values()) == 1 and not first.stats.cache_hits
    files = sorted(p.suffix for p in cache_dir.rglob("test_numba_cache._plain-*"))
    assert files == [".lock", ".nbc", ".nbi"]
    again = _kernels.jit(_plain)  # a new dispatcher, as in a new process
    assert again(np.arange(3)).tolist() == [1, 2, 3]
    assert sum(again.stats.cache_hits.values()) == 1 and not again.stats.cache_misses


def test_numba_outside_the_tested_range_compiles_without_cache_and_warns_once(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from numba.core.caching import NullCache

    monkeypatch.setattr(cache, "_state", {"warned": False, "usable": None})
    monkeypatch.setattr(cache, "_TESTED", ((0, 1), (0, 2)))
    with pytest.warns(RuntimeWarning, match=r"outside the tested range.*MEDFUSE_NUMBA_CACHE=0"):
        first = _kernels.jit(_plain)
    second = _kernels.jit(_plain)  # no second warning (filterwarnings would turn it into an error)
    assert isinstance(first._cache, NullCache) and isinstance(second._cache, NullCache)
    assert second(np.arange(2)).tolist() == [1, 2]


def test_an_unwritable_cache_folder_compiles_without_cache(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from numba.core.caching import NullCache

    cache_dir.parent.mkdir(exist_ok=True)
    cache_dir.write_text("a file where the folder should be")
    monkeypatch.setattr(cache, "_state", {"warned": False, "usable": None})
    with pytest.warns(RuntimeWarning, match="cannot be used"):
        kernel = _kernels.jit(_plain)
    assert isinstance(kernel._cache, NullCache)
    assert kernel(np.arange(2)).tolist() == [1, 2]


def test_a_cache_folder_that_turns_read_only_costs_a_compile_not_a_result(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "_state", {"warned": False, "usable": None})
    kernel = _kernels.jit(_plain)

    def refuse(path: str, *, exclusive: bool) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(cache, "_locked", refuse)
    with pytest.warns(RuntimeWarning, match="saving to .* failed"):
        assert kernel(np.arange(3)).tolist() == [1, 2, 3]
    assert not list(cache_dir.rglob("*.nbi"))


# -- the race of numba #4807, on the index + data files directly -------------------------------------------

def _save_many(args: tuple[str, int, int]) -> None:
    folder, worker, n = args
    f = cache._LockedIndexDataCacheFile(folder, "kernel-1.py311", source_stamp="s")
    for i in range(n):
        f.save(("sig", worker, i), {"worker": worker, "i": i})


def test_concurrent_saves_of_one_kernel_keep_every_entry_and_its_own_data(tmp_path: Path) -> None:
    """Without the lock, two processes pick the same data file number: entries vanish from the index and
    an entry can point at the other process's data. With it, every entry loads exactly what was saved."""
    workers, n = 4, 25
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        pool.map(_save_many, [(str(tmp_path), w, n) for w in range(workers)])
    f = cache._LockedIndexDataCacheFile(str(tmp_path), "kernel-1.py311", source_stamp="s")
    for w in range(workers):
        for i in range(n):
            assert f.load(("sig", w, i)) == {"worker": w, "i": i}
    assert len(list(tmp_path.glob("*.nbc"))) == workers * n


# -- whole processes compiling the same kernels at once ----------------------------------------------------

_CHILD = r"""
import json, sys
import numpy as np
import medfuse
from medfuse._kernels import fusion, metrics, vote

seed = int(sys.argv[1])
rng = np.random.default_rng(seed)
dtype = (np.float16, np.float32)[seed % 2]
shape = (4, 5 + seed, 17, 9)
members = []
for _ in range(3):
    p = rng.random(shape).astype(np.float32) + 0.05
    members.append((p / p.sum(0)).astype(dtype))
reference = rng.integers(0, 4, shape[1:]).astype(np.uint8)
maps = [m.argmax(0).astype((np.uint8, np.uint16)[seed % 2]) for m in members]
fused = medfuse.fuse_probabilities(members)
dice = medfuse.dice(reference, fused)
voted = medfuse.majority_vote(maps)
np.savez(sys.argv[2], fused=fused, voted=voted)
hits = misses = 0
for module in (fusion, metrics, vote):
    for value in vars(module).values():
        stats = getattr(value, "stats", None)
        if stats is not None and hasattr(stats, "cache_hits"):
            hits += sum(stats.cache_hits.values())
            misses += sum(stats.cache_misses.values())
print(json.dumps({"dice": {str(k): v for k, v in dice.items()}, "hits": hits, "misses": misses}))
"""


def _inputs(seed: int) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    dtype = (np.float16, np.float32)[seed % 2]
    shape = (4, 5 + seed, 17, 9)
    members = []
    for _ in range(3):
        p = rng.random(shape).astype(np.float32) + 0.05
        members.append((p / p.sum(0)).astype(dtype))
    reference = rng.integers(0, 4, shape[1:]).astype(np.uint8)
    return members, reference, [m.argmax(0) for m in members]


def _run_together(seeds: list[int], tmp: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(s), str(tmp / f"out{s}.npz")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in seeds]
    results = []
    for s, p in zip(seeds, procs, strict=True):
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, f"process {s} failed ({p.returncode}): {err[-2000:]}"
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _check(seed: int, result: dict[str, Any], tmp: Path) -> None:
    members, reference, maps = _inputs(seed)
    saved = np.load(tmp / f"out{seed}.npz")
    np.testing.assert_array_equal(saved["fused"], ref.fuse_probabilities(members))
    np.testing.assert_array_equal(saved["voted"], ref.majority_vote(maps))
    fused = saved["fused"]
    dice = result["dice"]
    assert isinstance(dice, dict)
    assert sorted(dice) == ["1", "2", "3"]
    for label, value in dice.items():
        tp, fp, fn, _ = ref_metrics.counts(reference, fused, int(label))
        assert value == pytest.approx(ref_metrics.metrics(tp, fp, fn)["dice"], nan_ok=True)


@pytest.mark.slow
def test_processes_compiling_the_same_kernels_at_once_all_get_correct_results(tmp_path: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    env.pop("MEDFUSE_NUMBA_CACHE", None)
    seeds = [0, 1, 2]  # float16 and float32 members: different signatures saved at the same time
    cold = _run_together(seeds, tmp_path, env)
    for s, r in zip(seeds, cold, strict=True):
        _check(s, r, tmp_path)
    assert sum(int(r["misses"]) for r in cold) > 0
    assert list((tmp_path / "numba").rglob("fusion.*.nbi")), "no cache files were written"
    warm = _run_together(seeds, tmp_path, env)  # the same again: everything now comes from the cache
    for s, r in zip(seeds, warm, strict=True):
        _check(s, r, tmp_path)
        assert int(r["hits"]) > 0 and int(r["misses"]) == 0, r
