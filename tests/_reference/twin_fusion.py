"""Slow, obviously-correct numpy twins of medfuse.fusion (for the tests only).

They follow the documented arithmetic to the bit: float32 sums in member order of
``float32(w[m, c] / W_c) * p``, hard members as explicit one-hot, argmax with numpy's lowest-index rule,
votes as explicit per-label score volumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def normalised_weights(weights, n_members: int, n_classes: int) -> np.ndarray:
    """(M, C) float32 weights normalised per class, as medfuse computes them (float64, then rounded)."""
    if weights is None:
        w = np.ones((n_members, n_classes))
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim == 1:
            w = np.repeat(w[:, None], n_classes, axis=1)
    return (w / w.sum(axis=0, keepdims=True)).astype(np.float32)


def n_classes_of(members: Sequence[np.ndarray], num_classes: int | None = None) -> int:
    for m in members:
        if np.asarray(m).dtype.kind == "f":
            return np.asarray(m).shape[0]
    if num_classes is not None:
        return num_classes
    return int(max(np.asarray(m).max(initial=0) for m in members)) + 1


LOG_COEFFS = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
              -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)


def log_f32(x) -> np.ndarray:
    """Cephes logf in float32 numpy, the same operations as medfuse._kernels.logf (positive normal x)."""
    x = np.asarray(x, dtype=np.float32)
    bits = x.view(np.uint32).astype(np.int64)
    mant = bits & 0x007FFFFF
    up = mant > 0x003504F3  # mantissa above sqrt(2): take m / 2, exponent + 1
    e = (bits >> 23) - 127 + up
    m = (mant | np.where(up, 0x3F000000, 0x3F800000)).astype(np.uint32).view(np.float32)
    f = m - np.float32(1)
    z = f * f
    c = [np.float32(v) for v in LOG_COEFFS]
    y = c[0] * f + c[1]
    for k in c[2:]:
        y = y * f + k
    y = y * f * z
    fe = e.astype(np.float32)
    y = y + np.float32(-2.12194440e-4) * fe
    y = y - np.float32(0.5) * z
    r = f + y
    return (r + np.float32(0.693359375) * fe).astype(np.float32)


def log_value(member: np.ndarray, eps: float) -> np.ndarray:
    """What a probability member adds in log space: numpy's float32 log for float16 members (medfuse's
    table), :func:`log32` for float32 members; both of max(p, eps)."""
    clamped = np.maximum(member.astype(np.float32), np.float32(eps))
    return np.log(clamped) if member.dtype == np.float16 else log32(clamped)


def log32(x: np.ndarray) -> np.ndarray:
    """medfuse's float32 log (x >= eps > 0): log of x cut to its top 16 bits, plus log1p of the rest."""
    x = np.asarray(x, dtype=np.float32)
    h = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    log_h = np.log(h.astype(np.float64)).astype(np.float32)
    inv_h = (1.0 / h.astype(np.float64)).astype(np.float32)
    r = (x - h) * inv_h
    one, half, third = np.float32(1.0), np.float32(0.5), np.float32(1.0 / 3.0)
    return (log_h + r * (one - r * (half - r * third))).astype(np.float32)


def product_form(weights: np.ndarray, eps: float):
    """(s, w) when log space takes its product form (every normalised weight equal to w, at most K members),
    else None: factors max(p, eps) * 2**s in [eps 2**s, 2**s], s rounding -log2(eps) / 2, K of them stay
    a normal float32."""
    span = -np.log2(np.float64(np.float32(eps)))
    s = int(np.round(span / 2))
    most = int(126 // max(s, span - s, 1))
    w = float(weights.flat[0])
    if weights.shape[0] > most or not w > 0 or not np.all(weights == weights.flat[0]):
        return None
    return s, w


def log_products(members: Sequence[np.ndarray], s: int, num_classes: int | None = None,
                 eps: float = 1e-6) -> np.ndarray:
    """float32 (C, ...) products in member order of max(p, eps) * 2**s (hard members: 2**s or eps 2**s)."""
    members = [np.asarray(m) for m in members]
    c = n_classes_of(members, num_classes)
    scale, eps32 = np.float32(2.0 ** s), np.float32(eps)
    spatial = next((m.shape[1:] for m in members if m.dtype.kind == "f"), members[0].shape)
    acc = np.ones((c, *spatial), dtype=np.float32)
    for member in members:
        for k in range(c):
            if member.dtype.kind == "f":
                factor = np.maximum(member[k].astype(np.float32), eps32) * scale
            else:
                factor = np.where(member.astype(np.int64) == k, scale, eps32 * scale).astype(np.float32)
            acc[k] *= factor
    return acc


def weighted_mean(members: Sequence[np.ndarray], weights=None, num_classes: int | None = None,
                  space: str = "probability", eps: float = 1e-6) -> np.ndarray:
    """float32 (C, ...) mean, summed in member order; hard members as one-hot.

    ``space="log"``: the weighted mean of log(max(p, eps)) (hard members add w * 0 and w * log(eps)); with
    equal weights (:func:`product_form`) computed as ``w (log P - M s ln 2)`` from :func:`log_products`.
    """
    log = space == "log"
    if log:
        n = len(members)
        form = product_form(normalised_weights(weights, n, n_classes_of(members, num_classes)), eps)
        if form is not None:
            mean = np.log(log_products(members, form[0], num_classes, eps))
            mean -= np.float32(n * form[0] * 0.6931471805599453)
            mean *= np.float32(form[1])
            return mean
    hot, cold = (np.float32(0), log_f32(np.float32(eps))[()]) if log else (np.float32(1), np.float32(0))
    members = [np.asarray(m) for m in members]
    c = n_classes_of(members, num_classes)
    w = normalised_weights(weights, len(members), c)
    spatial = next((m.shape[1:] for m in members if m.dtype.kind == "f"), None)
    if spatial is None:
        spatial = members[0].shape
    acc = np.zeros((c, *spatial), dtype=np.float32)
    for m, member in enumerate(members):
        for k in range(c):
            if member.dtype.kind == "f":
                value = log_value(member[k], eps) if log else member[k].astype(np.float32)
                term = w[m, k] * value
            else:
                term = np.where(member.astype(np.int64) == k, w[m, k] * hot, w[m, k] * cold).astype(np.float32)
            acc[k] += term
    return acc


def fuse_probabilities(members: Sequence[np.ndarray], weights=None, num_classes: int | None = None,
                       space: str = "probability", eps: float = 1e-6) -> np.ndarray:
    """Argmax (lowest class on ties) of the weighted mean; in log space's product form, of the products."""
    if space == "log":
        n = len(members)
        form = product_form(normalised_weights(weights, n, n_classes_of(members, num_classes)), eps)
        if form is not None:
            return log_products(members, form[0], num_classes, eps).argmax(axis=0)
    return weighted_mean(members, weights, num_classes, space, eps).argmax(axis=0)


def normalised_geometric_mean(members: Sequence[np.ndarray], weights=None, eps: float = 1e-6) -> np.ndarray:
    """softmax over classes (float64) of the log-space weighted mean: what average_probabilities returns."""
    logs = weighted_mean(members, weights, space="log", eps=eps).astype(np.float64)
    e = np.exp(logs - logs.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def vote_scores(label_maps: Sequence[np.ndarray], weights=None, n_labels: int | None = None) -> np.ndarray:
    """(L, ...) per-label scores: sums in member order of the weights of the members voting for it."""
    maps = [np.asarray(m).astype(np.int64) for m in label_maps]
    if n_labels is None:
        n_labels = int(max(m.max(initial=0) for m in maps)) + 1
    integer = weights is None
    w = np.ones(len(maps), dtype=np.int64) if integer else np.asarray(weights, dtype=np.float64)
    scores = np.zeros((n_labels, *maps[0].shape), dtype=np.int64 if integer else np.float64)
    for m, lab in enumerate(maps):
        for k in range(n_labels):
            scores[k] += np.where(lab == k, w[m], 0).astype(scores.dtype)
    return scores


def majority_vote(label_maps: Sequence[np.ndarray], weights=None, tie: str = "lowest",
                  undecided_label: int | None = None, scores: np.ndarray | None = None) -> np.ndarray:
    maps = [np.asarray(m).astype(np.int64) for m in label_maps]
    if scores is None:
        scores = vote_scores(maps, weights)
    best = scores.max(axis=0)
    if tie == "lowest":
        return scores.argmax(axis=0)
    if tie == "undecided":
        n_best = (scores == best[None]).sum(axis=0)
        if undecided_label is None:
            undecided_label = scores.shape[0]
        return np.where(n_best > 1, undecided_label, scores.argmax(axis=0))
    if tie == "first":
        out = np.full(maps[0].shape, -1, dtype=np.int64)
        for lab in reversed(maps):  # the earliest member assigned last wins
            mine = np.take_along_axis(scores, lab[None], axis=0)[0]
            out = np.where(mine == best, lab, out)
        return out
    raise ValueError(tie)


def accumulate(members_with_boxes, shape, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 sums and float64 weight totals of ProbabilityAccumulator, member by member.

    ``members_with_boxes``: (member, weight (C,), box or None); outside a box class 0 gets the weight.
    """
    sums = np.zeros((num_classes, *shape), dtype=np.float32)
    totals = np.zeros(num_classes)
    for member, weight, box in members_with_boxes:
        w = np.broadcast_to(np.asarray(weight, dtype=np.float64), (num_classes,))
        box = box if box is not None else [(0, s) for s in shape]
        inside = tuple(slice(lo, hi) for lo, hi in box)
        member = np.asarray(member)
        for k in range(num_classes):
            if member.dtype.kind == "f":
                term = np.float32(w[k]) * member[k].astype(np.float32)
            else:
                term = np.where(member.astype(np.int64) == k, np.float32(w[k]), np.float32(0)).astype(np.float32)
            sums[k][inside] += term
        outside = np.ones(shape, dtype=bool)
        outside[inside] = False
        sums[0][outside] += np.float32(w[0])
        totals += w
    return sums, totals


def accumulated_probabilities(sums: np.ndarray, totals: np.ndarray) -> np.ndarray:
    scale = (1.0 / totals).astype(np.float32)
    return sums * scale.reshape((-1,) + (1,) * (sums.ndim - 1))


# ---------------------------------------------------------------------------------------- member checks
def max_bits(a: np.ndarray) -> int:
    """Largest raw bit pattern of a float16 (uint16) / float32 (uint32) array; 0 when empty."""
    a = np.asarray(a)
    bits = a.view(np.uint16 if a.dtype == np.float16 else np.uint32)
    return int(bits.max()) if bits.size else 0


def add_box(plane: np.ndarray, origin: Sequence[int], member: np.ndarray, w: float) -> tuple[np.ndarray, int]:
    """``plane[box] += float32(w) * member`` in float32 (nothing added when w == 0), and the member's max bits."""
    out = plane.copy()
    if w != 0:
        region = tuple(slice(o, o + s) for o, s in zip(origin, member.shape, strict=True))
        out[region] += np.float32(w) * member.astype(np.float32)
    return out, max_bits(member)


def channel_argmax(channels: Sequence[np.ndarray]) -> np.ndarray:
    """Argmax over class channels in float32, ties to the lowest class (strict >, class after class)."""
    best = channels[0].astype(np.float32)
    labels = np.zeros(best.shape, dtype=np.int64)
    for c, ch in enumerate(channels[1:], start=1):
        v = ch.astype(np.float32)
        better = v > best
        labels[better] = c
        best = np.where(better, v, best)
    return labels


def sampled_sum_failures(member: np.ndarray, positions: np.ndarray, tol: float) -> int:
    """Voxels of the sample whose class sum (float32, class order) is off 1 by more than ``tol``."""
    flat = member.reshape(member.shape[0], -1)[:, positions].astype(np.float32)
    sums = np.zeros(flat.shape[1], dtype=np.float32)
    for row in flat:
        sums += row
    return int(np.count_nonzero(~(np.abs(sums - np.float32(1)) <= np.float32(tol))))
