"""Resume by journal: which cases of an output folder are finished, under which settings.

A folder job (``fuse_folders``, ``Predictor.predict_folder``) keeps one small JSON record per case in
``<output>/.medfuse/journal/<case>.json``, written atomically by the coordinating process:

- ``"pending"`` before the case's files are (re)written: the files of the case belong to this journal
  but are not trusted;
- ``"done"`` after they are written: the name, size and SHA-256 of every file of the case.

Every record carries the settings fingerprint (SHA-256 of the canonical JSON of the settings: resolved
input identities, weights, method, versions...). On a re-run a case is skipped only when its record is
``done``, carries the current fingerprint, and every file still has its size and checksum. A record with
another fingerprint, and any result-like file (``.nii.gz``, ``.npz``, ``.pkl``, ``fusion.json``) no
record accounts for, make the run refuse (naming
``overwrite=True``): results are never adopted from a directory listing, and settings are never mixed.

Why SHA-256 of the whole file: it catches any change of content (size + mtime do not: a byte flipped in
place, a file copied over with its time kept), and it is cheap next to the work: milliseconds for a
compressed label map and a fraction of a second for a fused ``.npz``, read back from the page cache by the
worker that just wrote it, against seconds to fuse or predict the case (measured: docs/performance.md).
A re-run hashes the recorded files once more to verify them.

The journal is hidden (``.medfuse/``), so layout detection and submissions ignore it, like the lock file.
Callers hold :func:`medfuse.io.lock.folder_lock` while they use a :class:`Journal`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._core.atomic import atomic_write, is_temporary
from ..errors import ValidationError
from .lock import folder_lock

__all__ = ["JOURNAL_DIR", "FileDigest", "Journal", "ResumePlan", "digest_files", "fingerprint",
           "journaled_run", "sweep_temporaries", "v1_case_files"]

#: Hidden folder of the journal inside an output folder.
JOURNAL_DIR = ".medfuse"
_RECORDS = "journal"
_SETTINGS = "settings"
_CHUNK = 1 << 20


def fingerprint(settings: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``settings`` (sorted keys, no spaces, no NaN)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class FileDigest:
    """Name (inside the output folder), size in bytes and SHA-256 of one output file."""

    name: str
    size: int
    sha256: str

    @classmethod
    def of(cls, path: Path, name: str | None = None) -> FileDigest:
        """Digest of ``path``, recorded under ``name`` (its path inside the output folder; default: its
        file name)."""
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                size += len(chunk)
        return cls(path.name if name is None else name, size, h.hexdigest())

    def matches(self, folder: Path) -> bool:
        """Whether ``folder/name`` still has this size and checksum."""
        path = folder / self.name
        try:
            return path.stat().st_size == self.size and FileDigest.of(path, self.name) == self
        except OSError:
            return False


def v1_case_files(case: str) -> tuple[str, ...]:
    """Every file a v1-layout case may have: labels, probabilities, properties."""
    return (f"{case}.nii.gz", f"{case}.npz", f"{case}.pkl")


def digest_files(folder: str | os.PathLike[str], names: Iterable[str]) -> tuple[FileDigest, ...]:
    """Digests of those of ``names`` that exist in ``folder`` (a worker calls this after writing a case)."""
    root = Path(folder)
    return tuple(FileDigest.of(root / n, n) for n in names if (root / n).is_file())


def sweep_temporaries(folder: Path) -> None:
    """Delete the temporary files an interrupted run left in ``folder``, its subfolders (saved maps) and its
    journal (hold the lock!)."""
    subfolders = [p for p in folder.iterdir() if p.is_dir() and p.name != JOURNAL_DIR] if folder.is_dir() else []
    for sub in (folder, *subfolders, folder / JOURNAL_DIR / _RECORDS, folder / JOURNAL_DIR / _SETTINGS):
        if sub.is_dir():
            for p in sub.iterdir():
                if p.is_file() and is_temporary(p.name):
                    p.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Record:
    case: str
    fingerprint: str | None  # None: unreadable record
    done: bool
    files: tuple[FileDigest, ...]


@dataclass(frozen=True)
class ResumePlan:
    """What a run does: ``todo`` cases are computed, ``done`` ones were verified and are skipped."""

    todo: tuple[str, ...]
    done: tuple[str, ...]


class Journal:
    """The per-case records of one output folder for one set of settings.

    Parameters
    ----------
    folder : Path
        The output folder (hold its lock).
    settings : mapping
        JSON-able settings; their fingerprint marks every record.
    case_files : callable
        Case name -> every file name the case may write (claimed by its record).
    extra_files : sequence of str
        Files the job itself rebuilds from the journal (``fusion.json``, a plans copy): claimed whenever
        a journal exists.
    result_suffixes : sequence of str
        Endings of the files a reader could take for results (another ensemble, a submission, an
        evaluation). Such files without a record make :meth:`plan` refuse; other files (notes, a zip
        of an earlier submission) are left alone.
    """

    def __init__(self, folder: Path, settings: Mapping[str, Any], *, case_files: Callable[[str], Sequence[str]],
                 extra_files: Sequence[str] = (),
                 result_suffixes: Sequence[str] = (".nii.gz", ".npz", ".pkl")) -> None:
        self.folder = folder
        self.settings = dict(settings)
        self.fingerprint = fingerprint(settings)
        self.case_files = case_files
        self.extra_files = tuple(extra_files)
        self.result_suffixes = tuple(result_suffixes)
        self.records_dir = folder / JOURNAL_DIR / _RECORDS
        self._complete: set[str] = set()

    # -------------------------------------------------------------------------------------- reading
    def _read(self, path: Path) -> _Record:
        case = path.name[: -len(".json")]
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            files = tuple(FileDigest(str(f["name"]), int(f["size"]), str(f["sha256"])) for f in data["files"])
            return _Record(case, str(data["fingerprint"]), data["state"] == "done", files)
        except (OSError, ValueError, KeyError, TypeError):
            return _Record(case, None, False, ())

    def _records(self) -> list[_Record]:
        if not self.records_dir.is_dir():
            return []
        return [self._read(p) for p in sorted(self.records_dir.glob("*.json")) if not is_temporary(p.name)]

    def _claims(self, record: _Record) -> set[str]:
        claimed = {f.name for f in record.files}
        if not record.done:
            claimed.update(self.case_files(record.case))
        return claimed

    # ------------------------------------------------------------------------------------- planning
    def plan(self, cases: Sequence[str], *, overwrite: bool, name: str = "output") -> ResumePlan:
        """Decide which of ``cases`` to compute; refuse a folder with other settings or unrecorded files.

        With ``overwrite`` the records of other settings and of ``cases`` are discarded with the files
        they recorded (records of the same settings for other cases are kept); unrecorded files are left
        alone and ``cases`` are all computed.
        """
        had_journal = self.records_dir.is_dir()
        records = self._records()
        foreign = [r for r in records if r.fingerprint != self.fingerprint]
        selected = set(cases)
        if overwrite:
            for r in records:
                if r.fingerprint != self.fingerprint or r.case in selected:
                    self._discard(r)
            records = [r for r in records if r.fingerprint == self.fingerprint and r.case not in selected]
        elif foreign:
            raise ValidationError(self._foreign_message(foreign, name))
        verified = {r.case for r in records if r.done and all(f.matches(self.folder) for f in r.files)}
        if not overwrite:
            self._refuse_unrecorded(records, had_journal, name)
        self._complete = set(verified)
        return ResumePlan(todo=tuple(c for c in cases if c not in verified),
                          done=tuple(c for c in cases if c in verified))

    def _discard(self, record: _Record) -> None:
        for n in self._claims(record):
            (self.folder / n).unlink(missing_ok=True)
        (self.records_dir / f"{record.case}.json").unlink(missing_ok=True)

    def _refuse_unrecorded(self, records: Sequence[_Record], had_journal: bool, name: str) -> None:
        claimed: set[str] = set(self.extra_files) if had_journal else set()
        for r in records:
            claimed |= self._claims(r)
        results = sorted(p.name for p in self.folder.iterdir() if not p.name.startswith(".")
                         and (p.name.endswith(self.result_suffixes) or p.name in self.extra_files))
        stray = [n for n in results if n not in claimed]
        if stray:
            more = f" ... ({len(stray)} in all)" if len(stray) > 5 else ""
            raise ValidationError(
                f"`{name}` {str(self.folder)!r} holds files no medfuse journal records ({', '.join(stray[:5])}"
                f"{more}); medfuse never adopts results it did not record. Choose an empty folder, or pass "
                "overwrite=True to recompute every case into this one."
            )

    def _foreign_message(self, foreign: Sequence[_Record], name: str) -> str:
        r = foreign[0]
        if r.fingerprint is None:
            what = f"an unreadable journal record for case {r.case!r}"
        else:
            theirs = self._settings_of(r.fingerprint)
            keys = sorted(k for k in {*theirs, *self.settings} if theirs.get(k) != self.settings.get(k))
            differ = f" (they differ in: {', '.join(keys)})" if theirs and keys else ""
            what = f"results of a run with other settings{differ} for {len(foreign)} case(s), e.g. {r.case!r}"
        return (f"`{name}` {str(self.folder)!r} holds {what}; medfuse never mixes settings in one folder. "
                "Choose a new folder, or pass overwrite=True to discard them and recompute.")

    def _settings_of(self, fp: str) -> dict[str, Any]:
        try:
            data = json.loads((self.folder / JOURNAL_DIR / _SETTINGS / f"{fp}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    # -------------------------------------------------------------------------------------- writing
    def _write(self, path: Path, data: Mapping[str, Any]) -> None:
        with atomic_write(path) as tmp:
            Path(tmp).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    def begin(self, cases: Iterable[str]) -> None:
        """Mark ``cases`` pending (their old files are no longer trusted), then remove those files."""
        settings_file = self.folder / JOURNAL_DIR / _SETTINGS / f"{self.fingerprint}.json"
        if not settings_file.is_file():
            self._write(settings_file, self.settings)
        for case in cases:
            self._write(self.records_dir / f"{case}.json",
                        {"case": case, "fingerprint": self.fingerprint, "state": "pending", "files": []})
            self._complete.discard(case)
            for n in self.case_files(case):
                (self.folder / n).unlink(missing_ok=True)

    def finish(self, case: str, files: Sequence[FileDigest], **info: Any) -> None:
        """Record ``case`` as done with the digests a worker computed; the sizes are checked here."""
        if not files:
            raise ValidationError(f"case {case!r}: the job wrote no file into {str(self.folder)!r}.")
        for f in files:
            path = self.folder / f.name
            size = path.stat().st_size if path.is_file() else None
            if size != f.size:
                raise ValidationError(f"case {case!r}: {str(path)!r} has {size} bytes on disk, but the worker "
                                      f"wrote {f.size}; another process changed the output folder.")
        record = {"case": case, "fingerprint": self.fingerprint, "state": "done",
                  "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in files], **info}
        self._write(self.records_dir / f"{case}.json", record)
        self._complete.add(case)

    def info(self, case: str) -> dict[str, Any]:
        """What :meth:`finish` recorded for ``case`` beside its files (``seconds``, a QA row, ...); empty
        when there is no readable record."""
        try:
            data = json.loads((self.records_dir / f"{case}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if k not in ("case", "fingerprint", "state", "files")}

    def completed(self) -> list[str]:
        """Sorted cases whose files are recorded and verified (this run's and earlier identical runs')."""
        return sorted(self._complete)


@contextmanager
def journaled_run(folder: Path, settings: Mapping[str, Any], cases: Sequence[str], *, overwrite: bool,
                  command: str, extra_files: Sequence[str] = (),
                  case_files: Callable[[str], Sequence[str]] = v1_case_files,
                  ) -> Iterator[tuple[Journal, ResumePlan]]:
    """Lock ``folder``, sweep its stale temporaries, and plan the run from its journal (v1-layout cases,
    or the files ``case_files`` names for a case).

    Yields the journal (``begin`` the ``todo`` cases, ``finish`` each one) and the plan; the lock is held
    until the ``with`` block ends. Raises :class:`~medfuse.errors.FolderLockedError` when another run
    holds the folder, :class:`~medfuse.errors.ValidationError` for other settings or unrecorded results.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder, command=command):
        sweep_temporaries(folder)  # only under the lock: unlocked, they could be a live run's files
        journal = Journal(folder, settings, case_files=case_files, extra_files=extra_files)
        yield journal, journal.plan(cases, overwrite=overwrite)
