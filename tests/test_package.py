"""The package's promises: a light import, every public name resolvable, errors that are also builtins."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import medfuse
from medfuse import errors
from public_names import PUBLIC_NAMES

ROOT = Path(medfuse.__file__).parent


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
    from medfuse._core import optional as _optional

    monkeypatch.setitem(sys.modules, "cc3d", None)  # makes `import cc3d` raise ImportError
    with pytest.raises(errors.MissingDependencyError, match=r"medfuse\[cc\]"):
        _optional.import_optional("cc3d", purpose="connected components")
    assert not _optional.has_module("cc3d")


def test_py_typed_is_shipped():
    from importlib.resources import files

    assert files("medfuse").joinpath("py.typed").is_file()


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in PUBLIC_NAMES.items() for n in names])
def test_every_name_of_the_earlier_layout_still_works(module, name):
    mod = importlib.import_module(module)
    assert getattr(mod, name) is not None
    exec(f"from {module} import {name}", {})


def _stub_names() -> set[str]:
    tree = ast.parse((ROOT / "__init__.pyi").read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                assert alias.asname == alias.name, f"__init__.pyi: write `{alias.name} as {alias.name}` (re-export)"
                names.add(alias.name)
    return names


def test_the_stub_is_the_one_export_list():
    stub = _stub_names()
    submodules = {"errors", "fusion", "geometry", "inference", "io", "metrics", "postprocess", "quality", "search",
                  "synthetic"}
    assert stub - submodules == set(medfuse.__all__), "__init__.pyi and __init__.py's lazy table disagree"
    assert set(medfuse.__all__) >= set(PUBLIC_NAMES["medfuse"])
    for name in stub:
        assert getattr(medfuse, name) is not None


def test_the_lazy_table_points_at_the_module_the_stub_names():
    tree = ast.parse((ROOT / "__init__.pyi").read_text(encoding="utf-8"))
    lazy = medfuse._LAZY
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 1:
            room = node.module
            for alias in node.names:
                if alias.name in lazy:
                    assert lazy[alias.name] == room, f"{alias.name}: lazy table says {lazy[alias.name]}, stub {room}"


def test_earlier_module_names_still_resolve_as_attributes():
    assert medfuse.ensemble.fuse_folders is medfuse.fuse_folders
    assert medfuse.evaluation.evaluate_folder is medfuse.evaluate_folder
    assert medfuse.oof.assemble_oof is medfuse.assemble_oof
    assert callable(medfuse.demo.run_demo)


def test_trimmed_plumbing_is_off_the_documented_surface_but_importable():
    import medfuse.inference
    import medfuse.io

    assert len(medfuse.io.__all__) < len(PUBLIC_NAMES["medfuse.io"])
    assert "atomic_write" not in medfuse.io.__all__
    assert "tile_starts" not in medfuse.inference.__all__
    from medfuse._core.atomic import atomic_write
    from medfuse.inference.sliding import tile_starts

    assert medfuse.io.atomic_write is atomic_write
    assert medfuse.inference.tile_starts is tile_starts
