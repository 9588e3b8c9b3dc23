"""What the ensemble knows about itself: voxel-wise uncertainty maps of a fusion, and per-member counts.

Definitions (``W[m, c]``: the weights normalised per class, as fusion uses them; ``omega[m] = mean_c W[m, c]``:
member ``m``'s share, the shares summing to 1):

* ``entropy``: ``-sum_c pbar[c] ln pbar[c]`` (nats, ``0 ln 0 = 0``) of the weighted mean distribution
  ``pbar[c] = sum_m W[m, c] p_m[c]`` (the linear mean in either fusion space; renormalised to sum 1 where
  per-class weights make it differ). 0 where every member is certain and agrees; ``ln C`` at most.
* ``mutual_information``: ``entropy - sum_m omega[m] H(p_m)``, the part of the uncertainty that comes from
  members disagreeing rather than from each being unsure (clamped at 0 against float32 rounding).
* ``disagreement``: ``sum_m omega[m] [argmax p_m != fused]``, the weight share of members whose own label
  (lowest class on ties) differs from the fused label.

A hard (label map) member is its one-hot: entropy 0, its label as its argmax. The per-member counts
(``member_volumes``, ``member_overlap``, ``fused_volumes``) come from the same pass and give each member's
Dice against the fused result (:meth:`UncertaintyMaps.member_dice`) without keeping any member's labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from ..errors import ValidationError

__all__ = ["UncertaintyMaps"]


@dataclass(frozen=True)
class UncertaintyMaps:
    """Uncertainty maps of one fusion and the per-member counts behind the QA score.

    Attributes
    ----------
    entropy : ndarray, float32, spatial shape
        Entropy (nats) of the weighted mean distribution.
    mutual_information : ndarray, float32, spatial shape
        ``entropy`` minus the weighted mean of the members' own entropies (>= 0).
    disagreement : ndarray, float32, spatial shape
        Weight share (in [0, 1]) of members whose own argmax differs from the fused label.
    member_volumes : ndarray of shape (M, C), int64
        Voxels whose member argmax is class c.
    member_overlap : ndarray of shape (M, C), int64
        Voxels where the member argmax and the fused label are both class c.
    fused_volumes : ndarray of shape (C,), int64
        Voxels of each fused class.
    member_shares : ndarray of shape (M,), float64
        Each member's share ``omega`` (sums to 1) in the member entropies and the disagreement.
    """

    entropy: NDArray[np.float32]
    mutual_information: NDArray[np.float32]
    disagreement: NDArray[np.float32]
    member_volumes: NDArray[np.int64]
    member_overlap: NDArray[np.int64]
    fused_volumes: NDArray[np.int64]
    member_shares: NDArray[np.float64]

    #: the names of the voxel-wise maps, in the order files and tables list them
    MAP_NAMES: ClassVar[tuple[str, ...]] = ("entropy", "mutual_information", "disagreement")

    @property
    def num_members(self) -> int:
        return int(self.member_volumes.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.fused_volumes.shape[0])

    def map(self, name: str) -> NDArray[np.float32]:
        """The map called ``name`` (one of :attr:`MAP_NAMES`)."""
        if name not in self.MAP_NAMES:
            raise ValidationError(
                f"unknown uncertainty map {name!r}; choose one of {', '.join(self.MAP_NAMES)}."
            )
        value: NDArray[np.float32] = getattr(self, name)
        return value

    def member_dice(self) -> NDArray[np.float64]:
        """``(M, C)`` Dice of each member's labels against the fused labels, per class (NaN where both
        are empty)."""
        denom = (self.member_volumes + self.fused_volumes[None, :]).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out: NDArray[np.float64] = np.where(denom > 0, 2.0 * self.member_overlap / denom, np.nan)
        return out

    def __repr__(self) -> str:
        shape = "x".join(str(n) for n in self.entropy.shape)
        return (f"UncertaintyMaps({shape}, {self.num_members} members, {self.num_classes} classes, "
                f"mean entropy {float(self.entropy.mean()) if self.entropy.size else 0.0:.4f} nats)")
