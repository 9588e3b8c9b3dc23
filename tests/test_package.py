"""The package's promises: a light import, every public name resolvable, errors that are also builtins."""

from __future__ import annotations

import subprocess
import sys

import pytest

import medfuse
from medfuse import errors


def test_import_is_light_and_compiles_nothing():
    code = ("import sys, medfuse; heavy = [m for m in ('numba', 'scipy', 'SimpleITK', 'paddle', 'matplotlib', "
            "'dask', 'cc3d') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


@pytest.mark.parametrize("name", medfuse.__all__)
def test_every_public_name_resolves(name):
    assert getattr(medfuse, name) is not None


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute"):
        _ = medfuse.does_not_exist


def test_error_hierarchy():
    assert issubclass(errors.ValidationError, ValueError)
    assert issubclass(errors.FormatError, ValueError)
    assert issubclass(errors.MissingDependencyError, ImportError)
    for cls in (errors.ValidationError, errors.GeometryMismatchError, errors.CaseMismatchError, errors.FormatError,
                errors.UnsafePickleError, errors.MissingDependencyError):
        assert issubclass(cls, errors.MedfuseError)


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    from medfuse import _optional

    monkeypatch.setitem(sys.modules, "cc3d", None)  # makes `import cc3d` raise ImportError
    with pytest.raises(errors.MissingDependencyError, match=r"medfuse\[cc\]"):
        _optional.import_optional("cc3d", purpose="connected components")
    assert not _optional.has_module("cc3d")


def test_py_typed_is_shipped():
    from importlib.resources import files

    assert files("medfuse").joinpath("py.typed").is_file()
