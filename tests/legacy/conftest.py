"""The legacy CI leg (``.ci/legacy``): Paddle 2.6 + numpy 1 + PaddleSeg 2.8 in their own virtualenv.

These tests need that environment, so they are collected only with ``--legacy``
(``pytest tests/legacy --legacy``); the main test run skips this folder without importing it.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--legacy", action="store_true", default=False,
                     help="run the legacy-environment tests in tests/legacy (see .ci/legacy)")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name == "conftest.py":
        return None
    return None if config.getoption("--legacy", default=False) else True
