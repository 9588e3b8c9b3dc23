"""Streamed npz members: header without inflating, channel-by-channel reads, every backend, bad files."""

from __future__ import annotations

import io
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import medfuse.io.npz as npz_module
from medfuse.errors import FormatError, MissingDependencyError, ValidationError
from medfuse.io import inflate_backend, iter_npz_channels, npz_keys, npz_member, read_npz

BACKENDS = ["zlib", "isal", "zlib-ng"]


def _backend(name: str) -> str:
    module = {"isal": "isal.isal_zlib", "zlib-ng": "zlib_ng.zlib_ng"}.get(name)
    if module is not None:
        pytest.importorskip(module)
    return name


def _probabilities(rng: np.random.Generator, shape: tuple[int, ...], dtype: type = np.float16) -> np.ndarray:
    logits = rng.standard_normal(shape).astype(np.float32) * 3
    e = np.exp(logits - logits.max(0, keepdims=True)) if shape[0] else logits
    return (e / e.sum(0, keepdims=True)).astype(dtype) if e.size else e.astype(dtype)


def _save(path, compressed: bool, **arrays: np.ndarray) -> None:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, ">f4", ">f2", np.uint8])
@pytest.mark.parametrize("shape", [(3, 5, 7, 9), (1, 1, 1, 1), (2, 0, 4, 4), (4, 3, 2)])
def test_channels_and_whole_reads_equal_np_load(tmp_path, rng, backend, compressed, dtype, shape):
    backend = _backend(backend)
    array = (rng.random(shape) * 100).astype(dtype)
    path = tmp_path / "case.npz"
    _save(path, compressed, softmax=array)
    member = npz_member(path, "softmax")
    assert member.shape == shape and member.dtype == np.dtype(dtype) and not member.fortran_order
    assert member.compressed is compressed
    whole = member.read(backend=backend)
    assert whole.dtype == np.dtype(dtype).newbyteorder("=") and whole.dtype.isnative
    np.testing.assert_array_equal(whole, array)
    seen = []
    for c, channel in member.iter_channels(backend=backend):
        assert channel.shape == shape[1:] and channel.dtype.isnative
        np.testing.assert_array_equal(channel, array[c])
        seen.append(c)
    assert seen == list(range(shape[0]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiny_chunks_exercise_every_boundary(tmp_path, rng, backend, monkeypatch):
    """Input and output chunks far smaller than a channel (and not dividing it) must not lose bytes."""
    backend = _backend(backend)
    monkeypatch.setattr(npz_module, "_CHUNK_IN", 37)
    monkeypatch.setattr(npz_module, "_CHUNK_OUT", 101)
    array = _probabilities(rng, (5, 6, 7, 11))
    path = tmp_path / "p.npz"
    np.savez_compressed(path, softmax=array)
    for c, channel in iter_npz_channels(path, "softmax", backend=backend):
        np.testing.assert_array_equal(channel, array[c])
    np.testing.assert_array_equal(read_npz(path, "softmax", backend=backend), array)


def test_large_member_crosses_chunk_limits(tmp_path, rng):
    array = _probabilities(rng, (3, 40, 128, 128))  # ~3 MB: several input and output chunks per channel
    path = tmp_path / "big.npz"
    np.savez_compressed(path, softmax=array)
    for backend in ("auto", "zlib"):
        np.testing.assert_array_equal(read_npz(path, "softmax", backend=backend), array)  # type: ignore[arg-type]


def test_channel_buffer_is_reused_and_out_is_honoured(tmp_path, rng):
    array = _probabilities(rng, (3, 4, 5, 6))
    path = tmp_path / "p.npz"
    np.savez_compressed(path, softmax=array)
    kept = list(iter_npz_channels(path, "softmax"))  # without `out`, every channel is its own array
    for c, channel in kept:
        np.testing.assert_array_equal(channel, array[c])
    out = np.empty((4, 5, 6), np.float16)
    for c, channel in iter_npz_channels(path, "softmax", out=out):
        assert channel is out
        np.testing.assert_array_equal(out, array[c])
    whole = np.empty(array.shape, np.float16)
    assert read_npz(path, "softmax", out=whole) is whole
    np.testing.assert_array_equal(whole, array)


@pytest.mark.parametrize(
    "bad_out",
    [np.empty((4, 5, 7), np.float16), np.empty((4, 5, 6), np.float32), np.empty((4, 5, 12), np.float16)[..., ::2],
     np.empty((6, 5, 4), np.float16).T],
)
def test_wrong_out_buffer_is_a_validation_error(tmp_path, rng, bad_out):
    path = tmp_path / "p.npz"
    np.savez_compressed(path, softmax=_probabilities(rng, (3, 4, 5, 6)))
    with pytest.raises(ValidationError, match="`out`"):
        next(iter_npz_channels(path, "softmax", out=bad_out))


def test_read_only_out_is_refused(tmp_path, rng):
    path = tmp_path / "p.npz"
    np.savez_compressed(path, softmax=_probabilities(rng, (2, 3, 3, 3)))
    out = np.empty((2, 3, 3, 3), np.float16)
    out.flags.writeable = False
    with pytest.raises(ValidationError, match="writeable"):
        read_npz(path, "softmax", out=out)


def test_fortran_ordered_member(tmp_path, rng):
    array = np.asfortranarray(_probabilities(rng, (3, 4, 5, 6)))
    path = tmp_path / "f.npz"
    np.savez_compressed(path, softmax=array)
    member = npz_member(path, "softmax")
    assert member.fortran_order
    np.testing.assert_array_equal(member.read(), array)
    for c, channel in member.iter_channels():
        np.testing.assert_array_equal(channel, array[c])


def test_keys_and_member_description(tmp_path, rng):
    path = tmp_path / "two.npz"
    a, b = _probabilities(rng, (2, 3, 4, 5)), np.arange(7, dtype=np.int32)
    np.savez_compressed(path, softmax=a, extra=b)
    assert set(npz_keys(path)) == {"softmax", "extra"}
    m = npz_member(path, "extra")
    assert m.shape == (7,) and m.dtype == np.int32 and m.nbytes == 28 and m.key == "extra"
    np.testing.assert_array_equal(m.read(), b)


def test_missing_key_names_the_keys_present(tmp_path, rng):
    path = tmp_path / "v2.npz"
    np.savez_compressed(path, probabilities=_probabilities(rng, (2, 3, 4, 5)))
    with pytest.raises(FormatError, match=r"no array 'softmax'.*\['probabilities'\]"):
        npz_member(path, "softmax")


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.95, -1])
def test_truncated_npz_is_a_format_error(tmp_path, rng, keep):
    path = tmp_path / "cut.npz"
    np.savez_compressed(path, softmax=_probabilities(rng, (3, 8, 16, 16)))
    data = path.read_bytes()
    n = len(data) - 1 if keep == -1 else int(len(data) * keep)
    path.write_bytes(data[:n])
    with pytest.raises(FormatError, match=r"cut\.npz"):
        read_npz(path, "softmax")


def _damaged_member(path, rng) -> tuple[bytes, int, int]:
    np.savez_compressed(path, softmax=_probabilities(rng, (3, 8, 16, 16)))
    info = zipfile.ZipFile(path).getinfo("softmax.npy")
    data = path.read_bytes()
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    return data, start, info.compress_size


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_deflate_data_is_a_format_error(tmp_path, rng, backend):
    backend = _backend(backend)
    path = tmp_path / "bad.npz"
    data, start, size = _damaged_member(path, rng)
    damaged = bytearray(data)
    for i in range(start + size // 3, start + size // 3 + 200):
        damaged[i] ^= 0x5A
    path.write_bytes(bytes(damaged))
    with pytest.raises(FormatError, match=r"bad\.npz"):
        for _ in iter_npz_channels(path, "softmax", backend=backend):
            pass


def test_flipped_bit_in_stored_member_fails_the_crc(tmp_path, rng):
    path = tmp_path / "stored.npz"
    np.savez(path, softmax=_probabilities(rng, (3, 4, 5, 6)))
    info = zipfile.ZipFile(path).getinfo("softmax.npy")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + 200] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="CRC"):
        read_npz(path, "softmax")
    np.testing.assert_equal(read_npz(path, "softmax", verify=False).shape, (3, 4, 5, 6))


def test_member_longer_than_its_header_is_a_format_error(tmp_path, rng):
    """A .npy whose data is longer than its header declares (hand-made zip) is refused."""
    array = _probabilities(rng, (2, 3, 4, 5))
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array)
    path = tmp_path / "long.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("softmax.npy", buf.getvalue() + b"\x00" * 10)
    with pytest.raises(FormatError, match="holds 250 bytes of data"):
        npz_member(path, "softmax")


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, softmax=np.array([{"a": 1}], dtype=object))
    with pytest.raises(FormatError, match="Python objects"):
        npz_member(path, "softmax")


@pytest.mark.parametrize("content", [b"", b"not a zip file", b"PK\x03\x04" + b"\x00" * 40])
def test_not_a_zip_is_a_format_error(tmp_path, content):
    path = tmp_path / "junk.npz"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=r"junk\.npz"):
        npz_keys(path)
    with pytest.raises(FormatError, match=r"absent\.npz"):
        npz_member(tmp_path / "absent.npz", "softmax")


def test_backend_selection():
    assert inflate_backend("auto") in ("isal", "zlib-ng", "zlib")
    assert inflate_backend("zlib") == "zlib"
    with pytest.raises(ValidationError, match="backend"):
        inflate_backend("lz4")  # type: ignore[arg-type]


def test_missing_backend_names_the_extra(monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name: str, *args: object) -> object:
        if name.startswith("isal"):
            raise ImportError("No module named 'isal'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(MissingDependencyError, match=r"medfuse\[fast\]"):
        inflate_backend("isal")
    assert inflate_backend("auto") in ("zlib-ng", "zlib")


def test_readers_in_threads_give_the_same_arrays(tmp_path, rng):
    arrays = [_probabilities(rng, (3, 16, 32, 32)) for _ in range(4)]
    paths = []
    for i, a in enumerate(arrays):
        paths.append(tmp_path / f"c{i}.npz")
        np.savez_compressed(paths[-1], softmax=a)

    def channel_sums(path):
        return [float(ch.astype(np.float64).sum()) for _, ch in iter_npz_channels(path, "softmax")]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(channel_sums, paths))
    for a, sums in zip(arrays, results, strict=True):
        np.testing.assert_allclose(sums, a.astype(np.float64).sum(axis=(1, 2, 3)))


def test_unsupported_zip_version_is_a_format_error(tmp_path):
    """A central directory asking for a zip version the stdlib cannot extract (found by the hypothesis
    reader test): zipfile raises NotImplementedError, medfuse a FormatError naming the file."""
    import struct

    buf = io.BytesIO()
    np.savez(buf, softmax=np.zeros((2, 3, 4, 5), np.float16))
    data = bytearray(buf.getvalue())
    at = data.index(b"PK\x01\x02")
    data[at + 6:at + 8] = struct.pack("<H", 109)  # "version needed to extract": 10.9
    path = tmp_path / "case.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"case\.npz"):
        read_npz(path, "softmax")
