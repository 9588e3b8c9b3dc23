"""Result types of :mod:`medfuse.metrics`: per-label overlap, per-case results and a summary over cases.

Kept apart from the computing code so that :mod:`medfuse.metrics` stays short; import them from
:mod:`medfuse.metrics` (or :mod:`medfuse`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from .._core.display import html_table, short_list
from .._core.optional import import_optional
from .._core.typing import EmptyRule
from ..errors import ValidationError

__all__ = [
    "COUNT_FIELDS",
    "METRIC_NAMES",
    "NNUNET_METRICS",
    "VOLUME_FIELDS",
    "CaseSummary",
    "Key",
    "LabelOverlap",
    "MetricName",
    "OverlapResult",
    "key_to_str",
]

#: A label (``int``) or a region: a tuple of labels merged into one foreground.
Key = int | tuple[int, ...]
#: Ratio metrics of :class:`LabelOverlap`.
MetricName = Literal["dice", "iou", "precision", "recall", "volume_similarity"]
METRIC_NAMES: tuple[str, ...] = ("dice", "iou", "precision", "recall", "volume_similarity")
COUNT_FIELDS: tuple[str, ...] = ("tp", "fp", "fn", "tn", "reference_voxels", "prediction_voxels")
VOLUME_FIELDS: tuple[str, ...] = ("reference_volume_mm3", "prediction_volume_mm3")
#: Every numeric field, in the order of CSV columns and ``to_dict`` entries.
ALL_FIELDS: tuple[str, ...] = METRIC_NAMES + COUNT_FIELDS + VOLUME_FIELDS
#: nnU-Net v2 ``summary.json`` metric name -> LabelOverlap field.
NNUNET_METRICS: dict[str, str] = {
    "Dice": "dice", "IoU": "iou", "FP": "fp", "TP": "tp", "FN": "fn", "TN": "tn",
    "n_pred": "prediction_voxels", "n_ref": "reference_voxels",
}

_EMPTY_VALUE = {"nan": math.nan, "one": 1.0, "zero": 0.0}
#: columns of the notebook tables
_HTML_METRICS: tuple[MetricName, ...] = ("dice", "iou", "precision", "recall")
_HTML_FIELDS: tuple[str, ...] = (*_HTML_METRICS, "reference_voxels", "prediction_voxels")


def key_to_str(key: Key) -> str:
    """JSON/CSV name of a label or region, as nnU-Net v2 writes it: ``"3"``, ``"(1, 2)"``."""
    return str(key)


def _nan_mean(values: Sequence[float]) -> float:
    """Mean of the non-NaN values; NaN (and no warning) when there is none."""
    finite = [v for v in values if not math.isnan(v)]
    return math.fsum(finite) / len(finite) if finite else math.nan


def _json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats replaced by None, recursively (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class LabelOverlap:
    """Overlap of one label (or region) between a reference and a prediction.

    Attributes
    ----------
    dice, iou, precision, recall, volume_similarity : float
        ``2TP / (2TP + FP + FN)``, ``TP / (TP + FP + FN)``, ``TP / (TP + FP)``, ``TP / (TP + FN)`` and
        ``1 - |FN - FP| / (2TP + FP + FN)``. When the label is absent from both maps every one of them is
        the value of the empty rule (NaN, 1 or 0); when it is absent from exactly one map every one is 0
        (see ``docs/metrics.md``).
    tp, fp, fn, tn : int
        Voxel counts (voxels excluded by ``ignore_label`` are in none of them).
    reference_voxels, prediction_voxels : int
        ``TP + FN`` and ``TP + FP``.
    reference_volume_mm3, prediction_volume_mm3 : float
        The same in mm³; NaN when no spacing was given.
    """

    dice: float
    iou: float
    precision: float
    recall: float
    volume_similarity: float
    tp: int
    fp: int
    fn: int
    tn: int
    reference_voxels: int
    prediction_voxels: int
    reference_volume_mm3: float
    prediction_volume_mm3: float

    @classmethod
    def from_counts(cls, tp: int, fp: int, fn: int, tn: int, *, empty: EmptyRule = "nan",
                    voxel_volume_mm3: float = math.nan) -> LabelOverlap:
        """Metrics of one label from its voxel counts (see the class docstring for the empty rules)."""
        tp, fp, fn, tn = int(tp), int(fp), int(fn), int(tn)
        n_ref, n_pred = tp + fn, tp + fp
        if n_ref == 0 and n_pred == 0:
            d = iou = precision = recall = vs = _EMPTY_VALUE[empty]
        else:
            d = 2.0 * tp / (2 * tp + fp + fn)
            iou = tp / (tp + fp + fn)
            precision = tp / n_pred if n_pred else 0.0
            recall = tp / n_ref if n_ref else 0.0
            vs = 1.0 - abs(n_ref - n_pred) / (n_ref + n_pred)
        return cls(
            dice=d, iou=iou, precision=precision, recall=recall, volume_similarity=vs,
            tp=tp, fp=fp, fn=fn, tn=tn, reference_voxels=n_ref, prediction_voxels=n_pred,
            reference_volume_mm3=n_ref * voxel_volume_mm3, prediction_volume_mm3=n_pred * voxel_volume_mm3,
        )

    def to_dict(self) -> dict[str, float | int]:
        """Every field by name (floats may be NaN)."""
        return {name: getattr(self, name) for name in ALL_FIELDS}

    def __repr__(self) -> str:
        return (f"LabelOverlap(dice={self.dice:.4f}, iou={self.iou:.4f}, precision={self.precision:.4f}, "
                f"recall={self.recall:.4f}, reference_voxels={self.reference_voxels}, "
                f"prediction_voxels={self.prediction_voxels})")

    def _repr_html_(self) -> str:
        return html_table(_HTML_FIELDS, [[getattr(self, f) for f in _HTML_FIELDS]])


@dataclass(frozen=True)
class OverlapResult(Mapping[Key, LabelOverlap]):
    """Overlap of each label / region of one case; a read-only mapping ``key -> LabelOverlap``.

    Keys are ints (labels) and tuples of ints (regions), in the order they were asked for.

    Attributes
    ----------
    empty : {"nan", "one", "zero"}
        Empty rule the metrics were computed with.
    total_voxels : int
        Voxels scored (after ``ignore_label`` exclusion).
    voxel_volume_mm3 : float
        Volume of one voxel (NaN when no spacing was given).
    labels_inferred : bool
        Whether the keys were chosen automatically (labels present in either map). Then a label missing
        here was absent from both maps, which :func:`aggregate_cases` uses to fill it in.
    """

    entries: Mapping[Key, LabelOverlap]
    empty: EmptyRule = "nan"
    total_voxels: int = 0
    voxel_volume_mm3: float = math.nan
    labels_inferred: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", MappingProxyType(dict(self.entries)))

    # -- mapping protocol
    def __getitem__(self, key: Key) -> LabelOverlap:
        try:
            return self.entries[_normalise_key(key)]
        except (KeyError, TypeError):
            raise KeyError(
                f"{key!r} is not a label or region of this result; it holds {list(self.entries)}."
            ) from None

    def __iter__(self) -> Iterator[Key]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        items = list(self.entries.items())
        dice = ", ".join(f"{k!s}: {v.dice:.4f}" for k, v in items[:12])
        more = f", ... ({len(items)} labels)" if len(items) > 12 else ""
        return f"OverlapResult(dice={{{dice}{more}}}, empty={self.empty!r})"

    def _repr_html_(self) -> str:
        rows: list[list[object]] = [[key_to_str(k), *[getattr(v, f) for f in _HTML_FIELDS]]
                                    for k, v in self.entries.items()]
        rows.append(["foreground mean", *[self.foreground_mean(m) for m in _HTML_METRICS],
                     *([""] * (len(_HTML_FIELDS) - len(_HTML_METRICS)))])
        return html_table(["label", *_HTML_FIELDS], rows,
                          caption=f"Overlap of {len(self.entries)} labels (empty rule {self.empty!r})")

    # -- convenience
    @property
    def labels(self) -> tuple[Key, ...]:
        """The labels and regions, in order."""
        return tuple(self.entries)

    @property
    def dice(self) -> dict[Key, float]:
        """Dice of each label / region."""
        return self.metric("dice")

    def metric(self, name: MetricName = "dice") -> dict[Key, float]:
        """One ratio metric of each label / region."""
        _check_metric(name)
        return {k: float(getattr(v, name)) for k, v in self.entries.items()}

    def foreground_mean(self, metric: MetricName = "dice") -> float:
        """Mean of ``metric`` over the keys other than background ``0``, NaN values left out.

        NaN when no key has a value (e.g. every label absent from both maps under ``empty="nan"``).
        """
        _check_metric(metric)
        return _nan_mean([float(getattr(v, metric)) for k, v in self.entries.items() if k != 0])

    def to_dict(self) -> dict[str, Any]:
        """Plain dict: ``{"empty", "total_voxels", "voxel_volume_mm3", "labels": {key: {field: value}}}``.

        Keys are strings as nnU-Net writes them (``"3"``, ``"(1, 2)"``); values may be NaN.
        """
        return {
            "empty": self.empty,
            "total_voxels": self.total_voxels,
            "voxel_volume_mm3": self.voxel_volume_mm3,
            "labels": {key_to_str(k): v.to_dict() for k, v in self.entries.items()},
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """:meth:`to_dict` as strict JSON (NaN written as ``null``)."""
        return json.dumps(_json_safe(self.to_dict()), indent=indent, allow_nan=False)

    def to_rows(self) -> list[dict[str, Any]]:
        """One flat dict per key: ``{"label": "3", "dice": ..., ..., "prediction_volume_mm3": ...}``."""
        return [{"label": key_to_str(k), **v.to_dict()} for k, v in self.entries.items()]

    def to_frame(self) -> Any:
        """:meth:`to_rows` as a ``pandas.DataFrame`` indexed by label.

        Needs pandas (``pip install 'medfuse[frames]'``); without it raises
        :class:`~medfuse.errors.MissingDependencyError` naming the extra.
        """
        pd = import_optional("pandas", purpose="OverlapResult.to_frame (the 'frames' extra)")
        return pd.DataFrame(self.to_rows()).set_index("label")


def _normalise_key(key: Any) -> Key:
    if isinstance(key, (tuple, list)):
        return tuple(int(v) for v in key)
    return int(key)


def _check_metric(name: str) -> None:
    if name not in METRIC_NAMES:
        raise ValidationError(f"`metric` must be one of {list(METRIC_NAMES)}; got {name!r}.")


def _empty_entry(result: OverlapResult) -> LabelOverlap:
    """What a label absent from both maps of ``result``'s case scores."""
    return LabelOverlap.from_counts(0, 0, 0, result.total_voxels, empty=result.empty,
                                    voxel_volume_mm3=result.voxel_volume_mm3)


@dataclass(frozen=True)
class CaseSummary:
    """Overlap of many cases: per case, per label mean over cases, and the foreground mean.

    Built by :func:`medfuse.metrics.aggregate_cases`.

    Attributes
    ----------
    per_case : mapping of str to OverlapResult
        The input results, by case name.
    mean : mapping of key to (mapping of str to float)
        ``mean[key][field]``: mean of every numeric :class:`LabelOverlap` field over the cases, NaN values
        left out (nnU-Net's ``np.nanmean``); NaN when no case has a value.
    foreground_mean : mapping of str to float
        ``foreground_mean[field]``: mean over the keys other than ``0`` of ``mean[key][field]`` — per-label
        means first, then their mean, like nnU-Net v2. As in nnU-Net, a key that is NaN in every case makes
        it NaN.
    """

    per_case: Mapping[str, OverlapResult]
    mean: Mapping[Key, Mapping[str, float]]
    foreground_mean: Mapping[str, float]
    keys: tuple[Key, ...] = field(default=())

    @property
    def labels(self) -> tuple[Key, ...]:
        """The labels and regions summarised (union over cases)."""
        return self.keys

    def __repr__(self) -> str:
        return (f"CaseSummary({len(self.per_case)} cases, labels {short_list(self.keys)}, "
                f"foreground mean dice {self.foreground_mean.get('dice', math.nan):.4f})")

    def _repr_html_(self) -> str:
        rows: list[list[object]] = [[key_to_str(k), *[self.mean[k][m] for m in _HTML_METRICS]]
                                    for k in self.keys]
        rows.append(["foreground mean", *[self.foreground_mean[m] for m in _HTML_METRICS]])
        return html_table(["label", *_HTML_METRICS], rows,
                          caption=f"Mean over {len(self.per_case)} cases (per label, then the foreground mean)")

    @property
    def cases(self) -> tuple[str, ...]:
        """Case names, in input order."""
        return tuple(self.per_case)

    def value(self, case: str, key: Key, name: str = "dice") -> float:
        """One field of one case and key; a key missing from a case is filled in as :func:`aggregate_cases`
        did (absent-from-both value for inferred labels, NaN otherwise)."""
        result = self.per_case[case]
        entry = _lookup(result, _normalise_key(key))
        return math.nan if entry is None else float(getattr(entry, name))

    def to_nnunet_dict(self, files: Mapping[str, tuple[str | os.PathLike[str], str | os.PathLike[str]]]
                       | None = None) -> dict[str, Any]:
        """nnU-Net v2's ``summary.json`` structure.

        ``{"metric_per_case": [{"reference_file", "prediction_file", "metrics": {key: {metric: value}}}],
        "mean": {key: {metric: value}}, "foreground_mean": {metric: value}}`` with nnU-Net's metric names
        (``Dice``, ``IoU``, ``FP``, ``TP``, ``FN``, ``TN``, ``n_pred``, ``n_ref``) and keys as strings
        (``"1"``, ``"(1, 2)"``). NaN stays NaN, as nnU-Net writes it (``json.dump`` writes ``NaN``).

        Parameters
        ----------
        files : mapping of str to (path, path), optional
            ``case -> (reference_file, prediction_file)``; a case missing here gets ``None`` for both.
        """
        files = files or {}
        per_case = []
        for case, result in self.per_case.items():
            ref_file, pred_file = files.get(case, (None, None))
            metrics: dict[str, dict[str, float | int]] = {}
            for key in self.keys:
                entry = _lookup(result, key)
                metrics[key_to_str(key)] = {
                    name: (math.nan if entry is None else getattr(entry, attr))
                    for name, attr in NNUNET_METRICS.items()
                }
            per_case.append({
                "reference_file": None if ref_file is None else str(ref_file),
                "prediction_file": None if pred_file is None else str(pred_file),
                "metrics": metrics,
            })
        mean = {key_to_str(k): {name: float(self.mean[k][attr]) for name, attr in NNUNET_METRICS.items()}
                for k in self.keys}
        fg = {name: float(self.foreground_mean[attr]) for name, attr in NNUNET_METRICS.items()}
        return {"metric_per_case": per_case, "mean": mean, "foreground_mean": fg}

    def to_rows(self) -> list[dict[str, Any]]:
        """Flat rows: one per (case, key), then ``case="mean"`` per key, then ``case="foreground_mean"``."""
        rows: list[dict[str, Any]] = []
        for case, result in self.per_case.items():
            for key in self.keys:
                entry = _lookup(result, key)
                values = {f: math.nan for f in ALL_FIELDS} if entry is None else entry.to_dict()
                rows.append({"case": case, "label": key_to_str(key), **values})
        for key in self.keys:
            rows.append({"case": "mean", "label": key_to_str(key), **dict(self.mean[key])})
        rows.append({"case": "foreground_mean", "label": "", **dict(self.foreground_mean)})
        return rows

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_rows` as CSV (atomically: temporary file, then rename). Returns the path."""
        final = Path(path)
        if not final.parent.is_dir():
            raise ValidationError(f"`path` must be in an existing folder; {str(final.parent)!r} does not exist.")
        tmp = final.with_name(f".medfuse-tmp-{os.getpid()}-{final.name}")
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=["case", "label", *ALL_FIELDS])
                writer.writeheader()
                writer.writerows(self.to_rows())
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        return final

    def to_frame(self) -> Any:
        """:meth:`to_rows` as a ``pandas.DataFrame``: columns ``case``, ``label`` and every metric field.

        Needs pandas (``pip install 'medfuse[frames]'``); without it raises
        :class:`~medfuse.errors.MissingDependencyError` naming the extra.
        """
        pd = import_optional("pandas", purpose="CaseSummary.to_frame (the 'frames' extra)")
        return pd.DataFrame(self.to_rows())


def _lookup(result: OverlapResult, key: Key) -> LabelOverlap | None:
    """``result[key]``; for a missing key: the absent-from-both entry when the labels were inferred, else None."""
    entry = result.entries.get(key)
    if entry is None and result.labels_inferred and isinstance(key, int):
        return _empty_entry(result)
    return entry


def aggregate(results: Mapping[str, OverlapResult], keys: Sequence[Key] | None = None) -> CaseSummary:
    """Implementation of :func:`medfuse.metrics.aggregate_cases` (validated input)."""
    if keys is None:
        seen: dict[Key, None] = {}
        for result in results.values():
            seen.update(dict.fromkeys(result.labels))
        keys = sorted(seen, key=lambda k: (isinstance(k, tuple), k if isinstance(k, int) else 0,
                                           k if isinstance(k, tuple) else ()))
    keys = tuple(keys)
    mean: dict[Key, dict[str, float]] = {}
    for key in keys:
        entries = [_lookup(r, key) for r in results.values()]
        mean[key] = {name: _nan_mean([math.nan if e is None else float(getattr(e, name)) for e in entries])
                     for name in ALL_FIELDS}
    foreground = [k for k in keys if k != 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fg = {name: (float(np.mean([mean[k][name] for k in foreground])) if foreground else math.nan)
              for name in ALL_FIELDS}
    return CaseSummary(per_case=MappingProxyType(dict(results)), mean=MappingProxyType(mean),
                       foreground_mean=MappingProxyType(fg), keys=keys)
