"""Choosing the best ensemble on out-of-fold predictions.

- :mod:`.api`: :func:`search_ensembles` and its stages; :mod:`.results`: :class:`SearchResult`,
  :class:`Candidate`.
- :mod:`.oof`: :func:`assemble_oof` / :class:`OutOfFold` (the out-of-fold predictions of each member).
- :mod:`.engine` (per-case loading), :mod:`.scoring` (one pass over a case), :mod:`.weights` (fitted
  weights), :mod:`.stats` (bootstrap and means): the machinery :func:`search_ensembles` runs.
- :mod:`.report`: the Markdown / HTML report of a search.
"""

from __future__ import annotations

from .api import search_ensembles
from .oof import OutOfFold, assemble_oof
from .results import Candidate, CandidateKind, SearchResult

__all__ = ["Candidate", "CandidateKind", "OutOfFold", "SearchResult", "assemble_oof", "search_ensembles"]
