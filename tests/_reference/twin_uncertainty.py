"""Slow, obviously-correct numpy twin of medfuse's uncertainty maps (for the tests only).

Definitions (docs/uncertainty.md):

* ``W[m, c]``: weights normalised per class (as for fusion); ``omega[m] = mean_c W[m, c]`` is member m's
  share (the shares sum to 1; with per-member weights ``omega = w / w.sum()``).
* ``pbar[c] = sum_m W[m, c] p_m[c]``: the weighted mean (always the linear mean, whatever the fusion
  space), divided by its class sum where per-class weights make that differ from 1.
* ``entropy = -sum_c pbar[c] ln pbar[c]`` (nats, 0 ln 0 = 0).
* ``mutual_information = max(entropy - sum_m omega[m] H(p_m), 0)``, ``H(p_m) = -sum_c p_m[c] ln p_m[c]``
  (never negative for a mixture; the clamp removes float32 rounding and per-class-weight cases).
* ``disagreement = sum_m omega[m] [argmax_c p_m[c] != fused]`` (member argmax: lowest class on ties;
  ``fused`` = the labels fusion returns, in its space).
* ``member_volumes[m, c] = #{argmax p_m == c}``, ``member_overlap[m, c] = #{argmax p_m == c and fused == c}``,
  ``fused_volumes[c] = #{fused == c}``.

Hard (integer) members are one-hot. Computed in float64 here; medfuse computes in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_probabilities(member: np.ndarray, n_classes: int) -> np.ndarray:
    a = np.asarray(member)
    if a.dtype.kind == "f":
        return a.astype(np.float64)
    onehot = np.zeros((n_classes, *a.shape))
    for c in range(n_classes):
        onehot[c] = a == c
    return onehot


def uncertainty_twin(members: Sequence[np.ndarray], fused: np.ndarray, weights=None,
                     num_classes: int | None = None) -> dict[str, np.ndarray]:
    """The maps and counts of the module docstring; ``fused`` is the fused label map."""
    n_classes = next((np.asarray(m).shape[0] for m in members if np.asarray(m).dtype.kind == "f"), num_classes)
    if n_classes is None:
        n_classes = int(max(np.asarray(m).max() for m in members)) + 1
    probs = [_as_probabilities(m, n_classes) for m in members]
    n_members = len(probs)
    w = np.ones((n_members, n_classes)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = np.repeat(w[:, None], n_classes, axis=1)
    wn = w / w.sum(axis=0, keepdims=True)
    omega = wn.mean(axis=1)
    pbar = sum(wn[m][(slice(None),) + (None,) * (probs[m].ndim - 1)] * probs[m] for m in range(n_members))
    pbar = pbar / pbar.sum(axis=0, keepdims=True)

    def ent(p: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        return -t.sum(axis=0)

    entropy = ent(pbar)
    member_entropy = sum(omega[m] * ent(probs[m]) for m in range(n_members))
    argmaxes = [p.argmax(axis=0) for p in probs]
    disagreement = sum(omega[m] * (argmaxes[m] != fused) for m in range(n_members))
    member_volumes = np.array([[np.count_nonzero(a == c) for c in range(n_classes)] for a in argmaxes])
    member_overlap = np.array([[np.count_nonzero((a == c) & (fused == c)) for c in range(n_classes)]
                               for a in argmaxes])
    fused_volumes = np.array([np.count_nonzero(fused == c) for c in range(n_classes)])
    return {
        "entropy": entropy, "mutual_information": np.maximum(entropy - member_entropy, 0.0),
        "disagreement": disagreement,
        "member_volumes": member_volumes, "member_overlap": member_overlap, "fused_volumes": fused_volumes,
        "member_shares": omega,
    }
