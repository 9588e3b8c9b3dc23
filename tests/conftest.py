"""Shared fixtures: a seeded RNG and the real competition files (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

#: Where the real files from the users' competition live: ``../shared/data/paddleseg-competition``
#: beside the checkout (CI lays it there), or the folder named by MEDFUSE_REAL_DATA.
REAL_DATA_DIR = Path(
    os.environ.get(
        "MEDFUSE_REAL_DATA",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "paddleseg-competition",
    )
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261126)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Folder of the real competition files; the test is skipped (with the folder's name) when absent."""
    if not (REAL_DATA_DIR / "case_properties.pkl").is_file():
        pytest.skip(
            f"real competition data not found at {REAL_DATA_DIR}; lay ../shared/data/paddleseg-competition "
            "beside the checkout or set MEDFUSE_REAL_DATA"
        )
    return REAL_DATA_DIR
