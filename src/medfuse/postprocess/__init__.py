"""Postprocessing of label maps: keep the largest connected component, decide on CV where it helps, and
the ``postprocessing.json`` file that records the decision.

- :mod:`.components`: :func:`keep_largest_component`, :func:`apply_postprocessing`.
- :mod:`.determine`: :func:`determine_postprocessing` (the decision on cross-validation cases).
- :mod:`.jsonfile`: :class:`Postprocessing` and its JSON layouts.
- :mod:`.nnunet2`: :func:`read_nnunet2_postprocessing` (nnU-Net v2's ``postprocessing.pkl``, read safely),
  :func:`read_any_postprocessing` (either file, by ending).
"""

from __future__ import annotations

from .components import apply_postprocessing, keep_largest_component
from .determine import determine_postprocessing
from .jsonfile import JsonLayout, Postprocessing
from .nnunet2 import read_any_postprocessing, read_nnunet2_postprocessing

__all__ = ["JsonLayout", "Postprocessing", "apply_postprocessing", "determine_postprocessing",
           "keep_largest_component", "read_any_postprocessing", "read_nnunet2_postprocessing"]
