"""Slow, obvious numpy twins of the STAPLE kernels: EM over every voxel (no histogram), as ITK loops.

Also :func:`real_raters`: five raters built from a real label map (3 good, 2 poor), shared by the
real-data test and ``benchmarks/bench_staple.py``.
"""

from __future__ import annotations

import numpy as np


def tuple_histogram(maps):
    """Distinct (M,) label tuples of the voxels, sorted, and how many voxels hold each."""
    rows = np.stack([np.asarray(m).reshape(-1).astype(np.int64) for m in maps], axis=1)
    return np.unique(rows, axis=0, return_counts=True)


def _flat(maps):
    return np.stack([np.asarray(m).reshape(-1).astype(np.int64) for m in maps])  # (M, N)


def staple(maps, *, undecided=None, prior=None, max_iterations=None, threshold=1e-5):
    """Multi-label STAPLE voxel by voxel, float64. Returns (labels, margin): ``margin`` is the gap between
    the best and the second-best normalised posterior of each voxel (ties: 0)."""
    d = _flat(maps)
    n_members, n = d.shape
    n_labels = int(d.max()) + 1
    votes = np.stack([(d == c).sum(axis=0) for c in range(n_labels)])
    vote = votes.argmax(axis=0)
    vote[(votes == votes.max(axis=0)).sum(axis=0) > 1] = n_labels
    conf = np.zeros((n_members, (n_labels + 1) * n_labels))
    for m in range(n_members):
        np.add.at(conf[m], d[m] * n_labels + vote, 1.0)  # ITK's flat index: an undecided vote lands on row j + 1
    conf = conf.reshape(n_members, n_labels + 1, n_labels)
    sums = conf.sum(axis=2, keepdims=True)
    conf = np.where(sums > 0, conf / np.where(sums > 0, sums, 1), conf)
    if prior is None:
        prior = np.bincount(d.reshape(-1), minlength=n_labels) / d.size
    prior = np.asarray(prior, dtype=np.float64)[:n_labels]

    def posterior(conf):
        w = np.repeat(prior[:, None], n, axis=1)
        for m in range(n_members):
            w = w * conf[m][d[m], :].T
        return w

    iteration = 0
    while max_iterations is None or iteration < max_iterations:
        iteration += 1
        w = posterior(conf)
        s = w.sum(axis=0)
        w = np.where(s > 0, w / np.where(s > 0, s, 1), w)
        new = np.zeros_like(conf)
        for m in range(n_members):
            np.add.at(new[m], d[m], w.T)
        col = new.sum(axis=1, keepdims=True)
        new = np.where(col != 0, new / np.where(col != 0, col, 1), new)
        change = np.abs(new - conf).max()
        conf = new
        if change < threshold:
            break
    w = posterior(conf)
    top = w.max(axis=0)
    tied = ((w == top).sum(axis=0) > 1) | (top == 0)
    labels = w.argmax(axis=0)
    if undecided is not None:
        labels[tied] = undecided
    else:
        labels[tied] = votes.argmax(axis=0)[tied]
    s = w.sum(axis=0)
    normal = w / np.where(s > 0, s, 1)
    ordered = np.sort(normal, axis=0)
    margin = ordered[-1] - ordered[-2] if n_labels > 1 else np.ones(n)
    shape = np.asarray(maps[0]).shape
    return labels.reshape(shape), margin.reshape(shape)


def staple_binary(masks, *, max_iterations=None, confidence_weight=1.0):
    """Binary STAPLE voxel by voxel (ITK ``STAPLEImageFilter``), float64; 0 / 1 where ITK gives NaN."""
    d = _flat(masks).astype(bool)
    n_members = d.shape[0]
    w = d.mean(axis=0)
    if not d.any() or d.all():
        return np.full(np.asarray(masks[0]).shape, 1.0 if d.all() else 0.0)
    prior = w.mean() * confidence_weight
    last_p = np.full(n_members, -10.0)
    last_q = np.full(n_members, -10.0)
    iteration = 0
    while max_iterations is None or iteration < max_iterations:
        p = np.array([w[d[m]].sum() / w.sum() for m in range(n_members)])
        q = np.array([(1 - w[~d[m]]).sum() / (1 - w).sum() for m in range(n_members)])
        a = np.prod(np.where(d, p[:, None], 1 - p[:, None]), axis=0)
        b = np.prod(np.where(d, 1 - q[:, None], q[:, None]), axis=0)
        w = prior * a / (prior * a + (1 - prior) * b)
        done = iteration != 0 and np.all((p - last_p) ** 2 <= 1e-14) and np.all((q - last_q) ** 2 <= 1e-14)
        last_p, last_q = p, q
        iteration += 1
        if done:
            break
    return w.reshape(np.asarray(masks[0]).shape)


def _eroded(labels):
    """Labels kept where all 6 neighbours hold the same label; background elsewhere."""
    keep = np.ones(labels.shape, bool)
    for axis in range(labels.ndim):
        for step in (1, -1):
            keep &= np.roll(labels, step, axis=axis) == labels
    return np.where(keep, labels, 0).astype(labels.dtype)


def real_raters(labels):
    """Five raters of a (Z, Y, X) label map: 3 good (1-voxel shifts, an erosion), 2 poor (an 8-voxel shift;
    three organs missing and a 3-voxel shift)."""
    good = [np.roll(labels, (0, 1, 1), axis=(0, 1, 2)), _eroded(labels), np.roll(labels, (1, 0, -1), axis=(0, 1, 2))]
    missing = np.where(np.isin(labels, (2, 5, 8)), 0, labels).astype(labels.dtype)
    poor = [np.roll(labels, (0, 8, 8), axis=(0, 1, 2)), np.roll(missing, (0, -3, 3), axis=(0, 1, 2))]
    return good + poor
