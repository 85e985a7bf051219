"""The run folder's files: names, atomic writes, tolerant reads. Nothing here imports torch or unpickles.

Every file a run folder holds is written through atomic_path (readers see the old file or the new one,
never half of one) except metrics.jsonl, which is append-only and read back skipping a torn last line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd

from scaling.errors import StorageError
from scaling.results.records import implausible, number
from scaling.safe import no_symlink, printable

log = logging.getLogger("scaling.results")

SPEC, STATUS, METRICS, RESULT, CKPT, LOCK = (
    "spec.json", "status.json", "metrics.jsonl", "result.json", "ckpt.pt", ".lock")


def storage_error(path: Path, exc: BaseException) -> StorageError | None:
    """A one-line StorageError for a failed write of `path`, if an OSError caused `exc` (torch.save reports a
    full disk as RuntimeError "unexpected pos" with the OSError only as its context); else None."""
    seen = exc
    while seen is not None and not isinstance(seen, OSError):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return None
    full = seen.errno in (errno.ENOSPC, errno.EDQUOT)
    return StorageError(f"{path}: cannot write: {'no space left on device' if full else seen.strerror or seen}")


def process_umask() -> int:
    """This process's umask, read without changing it where Linux shows it (/proc/self/status); elsewhere by
    setting and restoring it (os.umask has no read-only form before Python 3.13)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def plain_file_mode(path: Path) -> int:
    """The mode a plain open(path, "w") leaves: an existing file's own, a new file 0o666 less the umask.
    mkstemp makes its temp file 0600; moved over `path` as it is, nobody else could read a shared sweep."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~process_umask()


@contextlib.contextmanager
def atomic_path(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A temp file beside `path`, moved over it when the block ends (fsynced), so readers see the old file or
    the new one, never half of one; on any failure the temp file is removed, and a failed write (full disk)
    raises StorageError naming `path`. The file gets the mode a plain open() would give it (plain_file_mode)."""
    path = no_symlink(path)
    no_symlink(path.parent)  # a run folder or plots/ linked elsewhere would receive the file
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise storage_error(path, exc) from None  # type: ignore[misc]
    try:
        os.fchmod(fd, plain_file_mode(path))
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        error = storage_error(path, exc) if isinstance(exc, Exception) else None
        if error is not None:
            raise error from None
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON so readers see the old file or the new one, never half of one (temp + fsync + replace)."""
    with atomic_path(path) as f:
        json.dump(obj, f, indent=1, sort_keys=True, allow_nan=True)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at path, or None if it is missing, truncated or not an object."""
    try:
        obj = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        log.warning("%s: unreadable (%s); treated as missing", path, exc)
        return None
    return obj if isinstance(obj, dict) else None


def read_json_checked(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(object, None) for a readable JSON object, (None, None) for a missing file, (None, why) otherwise."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    if not data.strip():
        return None, "empty file"
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        return None, f"not JSON ({str(exc)[:80]})"
    if not isinstance(obj, dict):
        return None, f"a JSON {type(obj).__name__}, not an object"
    return obj, None



def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    path = Path(run_dir) / METRICS
    try:
        no_symlink(Path(run_dir))
        with os.fdopen(os.open(no_symlink(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666),
                       "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
    except OSError as exc:  # a torn line it may leave is skipped by read_metrics
        raise storage_error(path, exc) from None  # type: ignore[misc]


LOSS_FIELDS = {"train_loss": "train_loss", "val_loss": "val_loss", "curve_loss": "loss"}
"""metrics.jsonl's losses and the PLAUSIBLE range each is checked against (scaling.results.records)."""
COUNT_FIELDS = ("tokens", "flops", "elapsed_s", "lr", "tokens_per_s")
"""metrics.jsonl's other numbers: each a finite number >= 0 when present."""


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Logged records: JSON objects with an integer `step`. A line torn by a kill (the last one, usually)
    and damaged lines (a bare number, a string step, random bytes) are skipped; a resumed run rewrites
    the file without them (scaling.train._drop_metrics_after). A bad optional field in a good line (a
    negative, NaN or string loss; a negative or string token count, flops, elapsed_s, lr) is dropped from its
    record with one warning naming the file, the field and the step: a curve is a side record (an external
    trainer's result is its final.json), so one bad number loses that number, never the run or its fit."""
    records = []
    path = Path(run_dir) / METRICS
    try:
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return records
    bad = 0
    dropped: list[str] = []
    for line in lines:
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            record = None
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, bool) or not isinstance(step, int):
            bad += bool(line.strip())
            continue
        for key in [k for k in record if k in LOSS_FIELDS or k in COUNT_FIELDS]:
            value = record[key]
            if key in LOSS_FIELDS:
                why = implausible(LOSS_FIELDS[key], value)
                why = why and why.replace(f"{LOSS_FIELDS[key]} = ", f"{key} = ", 1)
            else:
                x = number(value)
                why = None if x is not None and x >= 0 else f"{key} = {value!r} is not a finite number >= 0"
            if why is not None:
                del record[key]
                dropped.append(f"{why} at step {step}")
        records.append(record)
    if bad > 1:  # one is the usual torn last line
        log.warning("%s: %d damaged line(s) skipped", path, bad)
    if dropped:
        log.warning("%s: dropped %d bad field(s) from its records, e.g. %s", printable(path), len(dropped),
                    printable(dropped[0][:200]))
    return records


def export_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write the table atomically (a crash never leaves a half CSV where a good one was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # e.g. `scaling fit SWEEP --out new/folder`
    with atomic_path(path) as f:
        frame.to_csv(f, index=False)
    return path


def last_metrics_record(run_dir: Path, tail_bytes: int = 8192) -> dict[str, Any] | None:
    """The last training record of metrics.jsonl (one with flops and elapsed_s), read from the file's tail
    only: the progress line reads it for every running run every few seconds."""
    try:
        with open(Path(run_dir) / METRICS, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail_bytes))
            lines = f.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(record, dict) and isinstance(record.get("flops"), (int, float)) \
                and isinstance(record.get("elapsed_s"), (int, float)):
            return record
    return None
