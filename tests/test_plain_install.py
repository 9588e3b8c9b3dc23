"""A plain ``pip install medfuse`` does the main job: what reading and writing ``.nii.gz`` needs is a core
dependency, not an extra (checked on pyproject.toml, cheaply, without installing anything)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from medfuse._core import optional
from medfuse.errors import MissingDependencyError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_nifti_readers_are_core_dependencies() -> None:
    core = _names(PROJECT["dependencies"])
    assert {"numpy", "numba", "scipy", "simpleitk", "nibabel"} <= core


def test_the_nifti_extra_still_exists_and_brings_nothing_more() -> None:
    extras = PROJECT["optional-dependencies"]
    assert extras["nifti"] == []
    assert "medfuse[nifti" in extras["all"][0]


def test_every_module_the_lazy_importer_knows_is_core_or_an_existing_extra() -> None:
    extras = PROJECT["optional-dependencies"]
    core = _names(PROJECT["dependencies"])
    for module, (extra, dist) in optional._EXTRAS.items():
        assert extra in extras, module
        assert _names([dist]) <= _names(extras[extra]), (module, extra)
    for dist in optional._CORE.values():
        assert dist.lower() in core


def test_a_missing_core_dependency_says_to_install_it_not_an_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(MissingDependencyError, match=r"pip install nibabel") as info:
        optional.import_optional("nibabel", purpose="reading .nii.gz")
    assert "medfuse[" not in str(info.value)


def test_docs_extra_builds_the_site() -> None:
    docs = _names(PROJECT["optional-dependencies"]["docs"])
    assert {"mkdocs", "mkdocs-material", "mkdocstrings", "mkdocs-jupyter"} <= docs
    assert (ROOT / "mkdocs.yml").is_file() and (ROOT / "LICENSE").read_text().count("Apache License") >= 1
