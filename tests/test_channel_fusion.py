"""Class-major folder fusion (kernels in medfuse._kernels.channelwise) against a float64 numpy twin."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse.errors import FormatError, ValidationError
from medfuse.fusion.classwise import ClassMajorMean, class_major_channels
from medfuse.geometry import outside_box


def _twin(shape, members, weights, c_count):
    """Obvious version: paste every member into the full region, weighted mean per class, argmax (lowest)."""
    sums = np.zeros((c_count, *shape))
    totals = np.zeros(c_count)
    for (kind, data, box), w in zip(members, weights, strict=True):
        if kind == "labels":
            onehot = (data[None] == np.arange(c_count)[:, None, None, None]).astype(np.float64)
        else:
            onehot = np.zeros((c_count, *shape))
            onehot[0] = 1.0
            onehot[(slice(None), *(slice(a, b) for a, b in box))] = data.astype(np.float64)
        sums += np.asarray(w, dtype=np.float64)[:, None, None, None] * onehot
        totals += w
    mean = np.where(totals[:, None, None, None] > 0, sums / np.where(totals > 0, totals, 1)[:, None, None, None], 0)
    return mean


def _run(shape, members, weights, c_count, keep=False):
    fuser = ClassMajorMean(c_count, shape, keep_probabilities=keep)
    for c in range(c_count):
        fuser.begin_class(c)
        for (kind, data, box), w in zip(members, weights, strict=True):
            if kind == "labels":
                fuser.add_labels(data, weight=float(w[c]))
            else:
                fuser.add_probabilities(np.ascontiguousarray(data[c]), weight=float(w[c]), box=box)
        fuser.end_class(float(sum(w[c] for w in weights)))
    return fuser


def _random_members(rng, shape, c_count, dtype, n_prob=3, with_labels=True):
    members = []
    for _ in range(n_prob):
        box = tuple(sorted(rng.integers(0, s + 1, size=2)) for s in shape)
        box = tuple((int(a), int(b)) for a, b in box)
        sizes = tuple(b - a for a, b in box)
        p = rng.random((c_count, *sizes))
        p /= p.sum(axis=0, keepdims=True)
        members.append(("probs", p.astype(dtype), box))
    if with_labels:
        members.append(("labels", rng.integers(0, c_count, size=shape).astype(np.uint8), None))
    return members


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (6, 1, 9), (0, 4, 4), (8, 17, 33)])
@pytest.mark.parametrize("per_class", [False, True])
def test_matches_numpy_twin(rng, dtype, shape, per_class):
    c_count = 4
    members = _random_members(rng, shape, c_count, dtype)
    if per_class:
        weights = [rng.random(c_count) * 2 for _ in members]
    else:
        weights = [np.full(c_count, w) for w in rng.random(len(members)) + 0.1]
    fuser = _run(shape, members, weights, c_count, keep=True)
    # the twin sees the same (rounded) inputs in float64
    mean = _twin(shape, members, weights, c_count)
    srt = np.sort(mean, axis=0)
    clear = (srt[-1] - srt[-2] > 1e-5) if mean.size else np.zeros(shape, bool)
    np.testing.assert_array_equal(fuser.labels()[clear], mean.argmax(axis=0)[clear])
    np.testing.assert_allclose(fuser.probabilities().astype(np.float64), mean, atol=2e-3)


def test_ties_go_to_the_lowest_class():
    shape = (2, 3, 4)
    p = np.full((3, *shape), 1 / 3, dtype=np.float32)
    fuser = _run(shape, [("probs", p, ((0, 2), (0, 3), (0, 4)))], [np.ones(3)], 3)
    assert (fuser.labels() == 0).all()
    p2 = np.zeros((3, *shape), dtype=np.float32)
    p2[1] = p2[2] = 0.5
    fuser = _run(shape, [("probs", p2, ((0, 2), (0, 3), (0, 4)))], [np.ones(3)], 3)
    assert (fuser.labels() == 1).all()


def test_non_contiguous_input_is_accepted(rng):
    shape = (4, 6, 8)
    big = rng.random((3, 8, 6, 8)).astype(np.float32)
    view = big[:, ::2]  # non-contiguous
    view = view / view.sum(axis=0, keepdims=True)
    fuser = ClassMajorMean(3, shape)
    for c in range(3):
        fuser.begin_class(c)
        fuser.add_probabilities(view[c], weight=1.0)
        fuser.end_class(1.0)
    np.testing.assert_array_equal(fuser.labels(), view.argmax(axis=0))


def test_order_and_shape_errors(rng):
    fuser = ClassMajorMean(3, (2, 2, 2))
    with pytest.raises(ValidationError, match="in order"):
        fuser.begin_class(1)
    fuser.begin_class(0)
    with pytest.raises(ValidationError, match="does not fit"):
        fuser.add_probabilities(np.zeros((3, 3, 3), np.float32), weight=1.0)
    with pytest.raises(ValidationError, match="only 0 of 3"):
        fuser.labels()


def test_outside_slabs_partition_the_complement(rng):
    shape = (5, 6, 7)
    box = ((1, 4), (0, 3), (2, 7))
    mark = np.zeros(shape, int)
    for region in outside_box(shape, box):
        mark[region] += 1
    mark[tuple(slice(a, b) for a, b in box)] += 1
    assert (mark == 1).all()


def test_class_major_channels_order_and_bounded_read_ahead():
    pulled = []

    def stream(m, n):
        for c in range(n):
            pulled.append((c, m))
            yield c, np.full(3, 10 * m + c)

    streams = [stream(0, 4), None, stream(2, 4), stream(3, 4)]
    out = []
    for c, m, ch in class_major_channels(streams, 4, window=2):
        out.append((c, m))
        assert ch[0] == 10 * m + c
        assert len(pulled) <= len(out) + 2  # never more than `window` channels ahead
    assert out == [(c, m) for c in range(4) for m in (0, 2, 3)]


def test_class_major_channels_short_stream_is_a_format_error():
    def short():
        yield 0, np.zeros(2)

    with pytest.raises(FormatError, match="only 1 class"):
        list(class_major_channels([short()], 3, names=["model_a case x"]))


def test_read_ahead_memory_does_not_grow_with_members():
    """At most `window` channels are alive besides the one the consumer holds, whatever the member count."""
    import gc
    import weakref

    live = [0]

    def gone():
        live[0] -= 1

    def stream(m):
        for c in range(5):
            holder = [np.zeros(4)]
            live[0] += 1
            weakref.finalize(holder[0], gone)
            yield c, holder.pop()  # like medfuse.io's streams: no reference kept while suspended

    for n_members in (2, 8):
        streams = [stream(m) for m in range(n_members)]
        worst = 0
        for _c, _m, ch in class_major_channels(streams, 5, window=2):
            del ch
            gc.collect()
            worst = max(worst, live[0])
        assert worst <= 2, (n_members, worst)


def test_npz_channel_streams_hold_no_channel_while_suspended(tmp_path):
    import gc
    import weakref

    from medfuse.io.npz import iter_npz_channels

    np.savez_compressed(tmp_path / "a.npz", softmax=np.ones((3, 4, 5, 6), np.float16))
    it = iter_npz_channels(tmp_path / "a.npz", "softmax")
    _, ch = next(it)
    ref = weakref.ref(ch)
    del ch
    gc.collect()
    assert ref() is None  # the suspended generator does not keep the yielded channel alive
    assert [c for c, _ in it] == [1, 2]
