"""Benchmark rows at controlled agreement (private; used by :mod:`medfuse.bench.runner`).

* the vote at ~100%, ~75% and ~45% unanimous voxels (5 members, 14 labels), medfuse against SimpleITK's
  ``LabelVoting`` at each level, in the same run;
* log-space fusion next to linear fusion on the same members (its time over the linear time).

Hard data are built from the phantom's reference labels: at a voxel drawn with probability
``1 - level``, one member (drawn at random) gets another label, and at half of those voxels a second
drawn member gets a random label: scattered disagreement, the worst case for branch prediction
(realistic disagreement clusters at organ boundaries).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: the fraction of voxels left unanimous at each level of the vote rows
LEVELS = (1.0, 0.75, 0.45)


def disagreeing_members(reference: NDArray[np.uint8], n_members: int, n_labels: int, level: float,
                        seed: int = 0) -> list[NDArray[np.uint8]]:
    """``n_members`` copies of ``reference`` that all agree on about ``level`` of the voxels."""
    rng = np.random.default_rng(seed)
    flat = reference.reshape(-1)
    maps = [np.array(flat, copy=True) for _ in range(n_members)]
    idx = np.flatnonzero(rng.random(flat.size) >= level)
    who = rng.integers(0, n_members, idx.size)
    shift = rng.integers(1, n_labels, idx.size).astype(np.int64)
    for j in range(n_members):
        sel = who == j
        maps[j][idx[sel]] = (flat[idx[sel]].astype(np.int64) + shift[sel]) % n_labels
    second = idx[rng.random(idx.size) < 0.5]
    who2 = rng.integers(0, n_members, second.size)
    for j in range(n_members):
        s2 = second[who2 == j]
        maps[j][s2] = rng.integers(0, n_labels, s2.size)
    return [m.reshape(reference.shape) for m in maps]


def vote_levels(run: Any, reference: NDArray[np.uint8], n_members: int, k: int) -> None:
    """medfuse and SimpleITK at each of :data:`LEVELS` (rows of the ``vote`` section)."""
    from .._core.optional import has_module, import_optional
    from ..fusion import majority_vote

    for level in LEVELS:
        maps = [np.ascontiguousarray(m) for m in disagreeing_members(reference, n_members, k, level, seed=7)]
        stack = np.stack(maps)
        unanimous = float(np.mean((stack == stack[0]).all(axis=0)))
        del stack
        nbytes = sum(m.nbytes for m in maps)
        tag = f"{unanimous:.0%} unanimous"
        run.log(f"vote at {tag} ({n_members} members, {k} labels, scattered disagreement):")
        run.measure("vote", f"medfuse majority_vote, {tag}", lambda maps=maps: majority_vote(maps), nbytes,
                    f"{unanimous:.1%} unanimous voxels")
        if not has_module("SimpleITK"):
            continue
        sitk = import_optional("SimpleITK")
        images = [sitk.GetImageFromArray(m) for m in maps]
        def peer(images: list[Any] = images, sitk: Any = sitk) -> Any:
            return sitk.LabelVoting(images, k)

        voted = run.measure("vote", f"SimpleITK LabelVoting, {tag}", peer, nbytes, "images converted before timing")
        run.check(f"vote at {tag}: medfuse tie='undecided' == SimpleITK LabelVoting",
                  bool(np.array_equal(majority_vote(maps, tie="undecided", undecided_label=k),
                                      sitk.GetArrayFromImage(voted))))
        del images, maps


def log_fusion_row(run: Any, section: str, members: list[NDArray[Any]], nbytes: int,
                   linear: NDArray[Any]) -> None:
    """The log-space row of a fusion section, right after medfuse's linear row."""
    from ..fusion import fuse_probabilities

    fn: Callable[[], Any] = lambda: fuse_probabilities(members, space="log")  # noqa: E731
    got = run.measure(section, "medfuse fuse_probabilities space='log'", fn, nbytes, "geometric mean")
    run.log(f"  log space changes {np.mean(got != linear):.3%} of the labels")


def targets(measurements: Any, add: Callable[..., None]) -> None:
    """The log-space time ratio and the vote speed-ups at each agreement level."""
    def find(section: str, method: str) -> Any:
        return next((m for m in measurements if m.section == section and m.method.startswith(method)), None)

    for dt in ("float16", "float32"):
        lin = find(f"fusion-{dt}", "medfuse fuse_probabilities")
        log = find(f"fusion-{dt}", "medfuse fuse_probabilities space='log'")
        if lin is not None and log is not None and dt == "float16":
            add(f"log fusion {dt}: time / linear time", 1.5, log.seconds / lin.seconds, "x", higher=False)
    for m in measurements:
        if m.section == "vote" and m.method.startswith("medfuse majority_vote, "):
            tag = m.method.split(", ", 1)[1]
            peer = find("vote", f"SimpleITK LabelVoting, {tag}")
            if peer is not None:
                add(f"vote vs SimpleITK at {tag}", 25, peer.seconds / m.seconds)
