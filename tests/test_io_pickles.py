"""Restricted unpickler: properties-like pickles load under every protocol; anything else never runs."""

from __future__ import annotations

import collections
import os
import pickle
import pickletools
import re
import subprocess

import numpy as np
import pytest

from medfuse.errors import FormatError, UnsafePickleError
from medfuse.io import load_pickle, loads_pickle, save_pickle


def _properties() -> collections.OrderedDict[str, object]:
    return collections.OrderedDict(
        original_size_of_raw_data=np.array([7, 9, 11]),
        original_spacing=np.array([5.0, 0.5833, 0.5833]),
        list_of_data_files=["/data/case_0000.nii.gz"],
        seg_file=None,
        itk_origin=(-258.0, 373.4, -383.5),
        itk_direction=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0),
        crop_bbox=[[1, 6], [2, 8], [0, 11]],
        classes=np.array([-1, 0]),
        size_after_cropping=(5, 6, 11),
        scalar=np.float64(2.5),
        int_scalar=np.int32(-3),
        bool_scalar=np.bool_(True),
        fortran=np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        nested={"set": {1, 2}, "frozen": frozenset({3}), "complex": 1 + 2j, "bytes": b"\x00\xff",
                "bytearray": bytearray(b"ab"), "dtype": np.dtype("f2")},
    )


def _assert_same(a: object, b: object) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and type(a) is type(b) and list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert type(a) is type(b) and a == b


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_properties_round_trip_every_protocol(protocol):
    props = _properties()
    _assert_same(props, loads_pickle(pickle.dumps(props, protocol=protocol)))


def test_ensemble_list_of_dicts_loads():
    props = [_properties(), _properties()]
    loaded = loads_pickle(pickle.dumps(props, protocol=3))
    assert isinstance(loaded, list) and len(loaded) == 2
    _assert_same(props[1], loaded[1])


def test_numpy1_global_names_load():
    """Pickles written by numpy 1 name ``numpy.core.multiarray`` (numpy 2 moved it to ``numpy._core``)."""
    data = pickle.dumps({"a": np.arange(3), "s": np.float32(1.5)}, protocol=2)
    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in data
    out = loads_pickle(data)
    np.testing.assert_array_equal(out["a"], np.arange(3))
    assert out["s"] == np.float32(1.5) and out["s"].dtype == np.float32


def test_save_pickle_writes_numpy1_names_and_round_trips(tmp_path):
    path = tmp_path / "case.pkl"
    save_pickle(path, _properties())
    data = path.read_bytes()
    globals_ = {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}
    assert "numpy.core.multiarray _reconstruct" in globals_
    assert not any(g.startswith("numpy._core") for g in globals_)
    _assert_same(_properties(), load_pickle(path))
    _assert_same(_properties(), pickle.loads(data))  # the standard unpickler agrees
    assert os.listdir(tmp_path) == ["case.pkl"]


def test_save_pickle_failure_leaves_nothing(tmp_path):
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save_pickle(tmp_path / "bad.pkl", {"f": lambda: 0})
    assert os.listdir(tmp_path) == []


class _System:
    """Unpickling this calls os.system(command)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (self.command,))


class _Popen:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (subprocess.Popen, (self.argv,))


class _Eval:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_malicious_pickle_is_refused_and_never_executed(tmp_path, protocol):
    marker = tmp_path / "pwned"
    payload = collections.OrderedDict(crop_bbox=[[0, 1]], evil=_System(f"touch {marker}"))
    path = tmp_path / "case.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(UnsafePickleError) as info:
        load_pickle(path)
    message = str(info.value)
    assert str(path) in message
    assert f"{os.system.__module__}.system" in message  # posix.system on Linux
    assert not marker.exists()
    assert isinstance(info.value, FormatError)  # UnsafePickleError is a FormatError


@pytest.mark.parametrize("evil", [_Popen(["touch", "/nonexistent/x"]), _Eval()])
def test_other_globals_are_refused(evil):
    with pytest.raises(UnsafePickleError, match=r"(subprocess\.Popen|builtins\.eval)"):
        loads_pickle(pickle.dumps([1, {"x": evil}], protocol=3), source="x.pkl")


@pytest.mark.parametrize(
    ("module", "name"),
    [("numpy", "load"), ("numpy.testing", "assert_equal"), ("builtins", "getattr"), ("os", "system"),
     ("numpy.core.multiarray", "frombuffer"), ("collections", "namedtuple"), ("copyreg", "_reconstructor")],
)
def test_handwritten_global_opcodes_are_refused(module, name):
    data = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n)R."
    with pytest.raises(UnsafePickleError, match=re.escape(f"`{module}.{name}`")):
        loads_pickle(data)


@pytest.mark.parametrize("cut", [1, 10, 0.5, -1])
def test_truncated_pickle_is_a_format_error(tmp_path, cut):
    data = pickle.dumps(_properties(), protocol=3)
    n = cut if isinstance(cut, int) and cut > 0 else int(len(data) * cut) if cut > 0 else len(data) + cut
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[:n])
    with pytest.raises(FormatError, match=r"cut\.pkl") as info:
        load_pickle(path)
    assert not isinstance(info.value, UnsafePickleError)


@pytest.mark.parametrize("content", [b"", b"not a pickle at all", b"\x80\x03}q\x00(X\x01", b"PK\x03\x04zip"])
def test_garbage_is_a_format_error(tmp_path, content):
    path = tmp_path / "junk.pkl"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=r"junk\.pkl"):
        load_pickle(path)


def test_missing_file_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match=r"missing\.pkl"):
        load_pickle(tmp_path / "missing.pkl")


def test_load_pickle_accepts_str_paths(tmp_path):
    path = tmp_path / "p.pkl"
    save_pickle(str(path), {"a": 1})
    assert load_pickle(str(path)) == {"a": 1}
    # the str path is written where it names, and the atomic write leaves no temporary file beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.pkl"]
