"""Results on disk: one folder per run, written atomically, read back into a pandas table.

Layout of results/<sweep>/<run_id>/:
    spec.json      the RunSpec (written by the launcher before the job starts)
    status.json    state + heartbeat + job id + log path (running / failed / requeued), rewritten atomically
    metrics.jsonl  one JSON object per logged step (append-only; a torn last line is ignored)
    result.json    the final result; its presence with a valid status means the run is finished
    ckpt.pt        the latest checkpoint (torch.save to a temp file, then os.replace)
    (the submitit logs of each attempt are in <sweep>/.submitit/<launch>/; status.json names them)
The table is always derived from these files, never stored as the source of truth. Nothing here imports
torch, and nothing here unpickles anything.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import socket
import tempfile
import time
from pathlib import Path
from collections.abc import Iterator
from typing import IO, Any

import pandas as pd

from scaling.config import MAX_FLOPS, MAX_PARAMS, MAX_TOKENS
from scaling.errors import StorageError

log = logging.getLogger(__name__)

SPEC, STATUS, METRICS, RESULT, CKPT, LOCK = (
    "spec.json", "status.json", "metrics.jsonl", "result.json", "ckpt.pt", ".lock")
FINAL_STATES = ("done", "diverged")
STATES = ("done", "diverged", "failed", "damaged", "interrupted", "running", "pending")
"""`damaged`: a run file is unreadable or fails the schema check below (the run is redone by the next
launch and never fitted); `interrupted`: the launcher was stopped (Ctrl-C, SIGTERM, SIGHUP) while it trained."""
HEARTBEAT_STALE_S = 600.0
"""A `running` status whose heartbeat is older than this (and whose lock is free) reads as failed."""

RESULT_FIELDS = ("status", "train_loss", "val_loss", "n_params", "n_tokens", "flops", "wall_s")

PLAUSIBLE: dict[str, tuple[float, float]] = {
    "n_params": (1.0, MAX_PARAMS), "n_tokens": (1.0, MAX_TOKENS), "flops": (1.0, MAX_FLOPS),
    "loss": (1e-6, 1e6), "train_loss": (1e-6, 1e6), "val_loss": (1e-6, 1e6),
}
"""Open ranges outside which a recorded number is damage, not a measurement: sizes up to the limits a sweep
config accepts (scaling.config), losses (nats/token) in (1e-6, 1e6): the loss of a uniform guess over even a
10^6-token vocabulary is ln(10^6) ~ 14, and no cross-entropy is below 0."""


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


@contextlib.contextmanager
def atomic_path(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A temp file beside `path`, moved over it when the block ends (fsynced), so readers see the old file or
    the new one, never half of one; on any failure the temp file is removed, and a failed write (full disk)
    raises StorageError naming `path`."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise storage_error(path, exc) from None  # type: ignore[misc]
    try:
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


def number(value: Any) -> float | None:
    """value as a finite float, or None for bools, strings, NaN, inf and integers too big for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        out = float(value)
    except OverflowError:  # an integer such as 10**400
        return None
    return out if math.isfinite(out) else None


def implausible(name: str, value: Any) -> str | None:
    """Why `value` cannot be a real `name` (see PLAUSIBLE), or None when it can."""
    x = number(value)
    if x is None:
        return f"{name} = {_short(value)} is not a finite number"
    lo, hi = PLAUSIBLE[name]
    if not lo < x < hi if name.endswith("loss") else not lo <= x <= hi:
        return f"{name} = {x:g} is outside the plausible range ({lo:g}, {hi:g})"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_SPEC_SHAPE_INTS = ("n_layer", "d_model", "n_head", "seq_len", "vocab_size")


def spec_problem(spec: dict[str, Any]) -> str | None:
    """The schema check of a spec.json record (the fields tables and fits read), or None when it passes."""
    shape = spec.get("shape")
    if not isinstance(shape, dict):
        return f"shape = {_short(shape)} is not an object"
    if not isinstance(shape.get("arch"), str):
        return f"shape.arch = {_short(shape.get('arch'))} is not a string"
    for key in _SPEC_SHAPE_INTS:
        value = shape.get(key)
        if key in shape and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            return f"shape.{key} = {_short(value)} is not a positive integer"
    for key in ("n_params", "n_tokens", "flops"):
        why = implausible(key, spec.get(key))
        if why and not (key != "n_params" and spec.get(key) == 0):  # a WSD trunk's spec plans no tokens itself
            return why
    for key in ("lr", "n_params_non_embedding", "flops_6nd", "flops_budget"):
        value = number(spec.get(key)) if spec.get(key) is not None else 1.0
        if value is None or value < 0 or (value == 0 and key == "lr"):  # budget 0: a grid run; 0: a WSD trunk
            return f"{key} = {_short(spec[key])} is not a finite number {'> 0' if key == 'lr' else '>= 0'}"
    for key in ("seed", "batch_size", "n_steps"):
        value = spec.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{key} = {_short(value)} is not an integer"
    for key in ("run_id", "sweep"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            return f"{key} = {_short(spec[key])} is not a string"
    return None


def result_problem(result: dict[str, Any]) -> str | None:
    """The schema check of a result.json record, or None when it passes."""
    missing = [k for k in RESULT_FIELDS if k not in result]
    if missing:
        return f"lacks {', '.join(missing)}"
    if result["status"] not in FINAL_STATES:
        return f"status = {_short(result['status'])} is not one of {', '.join(FINAL_STATES)}"
    if result["status"] == "done":
        for key in RESULT_FIELDS[1:6]:
            why = implausible(key, result[key])
            if why:
                return why
    return None


def status_problem(status: dict[str, Any]) -> str | None:
    """The schema check of a status.json record, or None when it passes."""
    if not isinstance(status.get("state"), str):
        return f"state = {_short(status.get('state'))} is not a string"
    if "time" in status and number(status["time"]) is None:
        return f"time = {_short(status['time'])} is not a number"
    for key in ("error", "log", "host", "job_id"):
        if status.get(key) is not None and not isinstance(status[key], str):
            return f"{key} = {_short(status[key])} is not a string"
    return None


def damage(run_dir: Path) -> str | None:
    """"<file>: <why>" for the first damaged run file in run_dir, or None when every file present passes.

    A missing spec.json is damage only beside a result.json (a finished run that would vanish from tables);
    a missing result.json or status.json is simply a run not finished or not started.
    """
    run_dir = Path(run_dir)
    for name, check in ((SPEC, spec_problem), (RESULT, result_problem), (STATUS, status_problem)):
        obj, why = read_json_checked(run_dir / name)
        if obj is not None:
            why = check(obj)
        elif why is None and name == SPEC and (run_dir / RESULT).exists():
            why = "missing (the run has a result.json)"
        if why is not None:
            return f"{name}: {why}"
    return None


def write_result(run_dir: Path, result: dict[str, Any]) -> None:
    missing = [k for k in RESULT_FIELDS if k not in result]
    if missing or result["status"] not in FINAL_STATES:
        raise ValueError(f"result for {run_dir} lacks {missing} or has status {result.get('status')!r}")
    write_json_atomic(Path(run_dir) / RESULT, result)


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The finished result, or None when the run has none (or a corrupt one, which means: redo it)."""
    result, why = read_json_checked(Path(run_dir) / RESULT)
    if result is not None:
        why = result_problem(result)
    if why is not None:
        log.warning("%s: damaged %s (%s); the run will be redone", run_dir, RESULT, why)
        return None
    return result


def is_finished(run_dir: Path) -> bool:
    return read_result(run_dir) is not None


def write_status(run_dir: Path, state: str, **info: Any) -> None:
    """Record what the run is doing now; `status` and relaunches read it. Keeps earlier keys."""
    path = Path(run_dir) / STATUS
    status = read_json(path) or {}
    status.update(info)
    status.update(state=state, time=time.time(), host=socket.gethostname(), pid=os.getpid())
    write_json_atomic(path, status)


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    path = Path(run_dir) / METRICS
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
    except OSError as exc:  # a torn line it may leave is skipped by read_metrics
        raise storage_error(path, exc) from None  # type: ignore[misc]


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Logged records: JSON objects with an integer `step`. A line torn by a kill (the last one, usually)
    and damaged lines (a bare number, a string step, random bytes) are skipped; a resumed run rewrites
    the file without them (scaling.train._drop_metrics_after)."""
    records = []
    try:
        lines = (Path(run_dir) / METRICS).read_bytes().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return records
    bad = 0
    for line in lines:
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            record = None
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, bool) or not isinstance(step, int):
            bad += bool(line.strip())
            continue
        records.append(record)
    if bad > 1:  # one is the usual torn last line
        log.warning("%s: %d damaged line(s) skipped", Path(run_dir) / METRICS, bad)
    return records


class RunLock:
    """An exclusive, non-blocking lock on a run folder: two launches never train the same run at once.

    flock is released by the kernel when the holder dies, so a killed job never leaves a stale lock.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def is_held_elsewhere(self) -> bool:
        if not self.path.exists():
            return False
        if self.acquire():
            self.release()
            return False
        return True

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def run_state(run_dir: Path) -> str:
    """done / diverged / failed / running / pending, from the files alone (the launcher may be gone)."""
    run_dir = Path(run_dir)
    why = damage(run_dir)
    result = read_result(run_dir)
    if why is not None and not (result is not None and why.startswith(STATUS)):  # result.json outranks status
        return "running" if RunLock(run_dir).is_held_elsewhere() else "damaged"
    if result is not None:
        return str(result["status"])
    status = read_json(run_dir / STATUS)
    if status is None:
        return "pending"
    state = status.get("state")
    if state == "interrupted":
        return "running" if RunLock(run_dir).is_held_elsewhere() else "interrupted"
    if state in ("running", "submitted", "requeued"):
        if RunLock(run_dir).is_held_elsewhere():
            return "running"
        fresh = time.time() - float(status.get("time", 0)) < HEARTBEAT_STALE_S
        if state == "running" and status.get("host") == socket.gethostname():
            return "failed" if not fresh or not _pid_alive(status.get("pid")) else "running"
        return state if fresh or state != "running" else "failed"
    if state == "failed":
        return "failed"
    return "pending"


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def run_dirs(sweep_dir: Path) -> list[Path]:
    """The run folders of a results folder: visible folders holding a spec.json or a result.json."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        return []
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and ((p / SPEC).exists() or (p / RESULT).exists()))


def load_results(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per run folder under sweep_dir: the spec's accounting, the state and the final numbers.

    `loss` is the held-out loss (the column fits use); rows not `done` keep NaN losses or their last
    values and a `reason`.
    """
    sweep_dir = Path(sweep_dir)
    rows = []
    for run_dir in run_dirs(sweep_dir):
        state = run_state(run_dir)
        spec = read_json(run_dir / SPEC) or {}
        damaged = damage(run_dir) if state == "damaged" else None
        if damaged is not None and damaged.startswith(SPEC):
            spec = {}  # wrong-typed fields: show none of them rather than some
        shape = spec.get("shape", {})
        result = read_result(run_dir) or {}
        status = (read_json(run_dir / STATUS) or {}) if not (damaged or "").startswith(STATUS) else {}
        row = {
            "run_id": run_dir.name, "sweep": spec.get("sweep"), "status": state,
            "arch": shape.get("arch"), "n_layer": shape.get("n_layer"), "d_model": shape.get("d_model"),
            "n_head": shape.get("n_head"), "seq_len": shape.get("seq_len"),
            "n_params": spec.get("n_params"), "n_params_non_embedding": spec.get("n_params_non_embedding"),
            "n_tokens": spec.get("n_tokens"), "flops": spec.get("flops"), "flops_6nd": spec.get("flops_6nd"),
            "flops_budget": spec.get("flops_budget"), "isoflop_centre": spec.get("isoflop_centre", 0.0),
            "seed": spec.get("seed"), "lr": spec.get("lr"),
            "batch_size": spec.get("batch_size"), "n_steps": spec.get("n_steps"),
            "loss": result.get("val_loss", math.nan) if state == "done" else math.nan,
            "val_loss": result.get("val_loss", math.nan), "train_loss": result.get("train_loss", math.nan),
            "steps_done": result.get("steps_done"), "wall_s": result.get("wall_s"),
            "tokens_per_s": result.get("tokens_per_s"), "git_sha": result.get("git_sha"),
            "torch_version": result.get("torch_version"),
            "data_fingerprint": (result.get("corpus") or {}).get("fingerprint"),
            "reason": damaged or result.get("reason") or (status.get("error") if state in ("failed", "interrupted") else None),
            "log": status.get("log"), "run_dir": str(run_dir),
        }
        rows.append(row)
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else ["run_id", "status", "n_params",
                                                                    "n_tokens", "flops", "loss"])


def export_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write the table atomically (a crash never leaves a half CSV where a good one was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # e.g. `scaling fit SWEEP --out new/folder`
    with atomic_path(path) as f:
        frame.to_csv(f, index=False)
    return path
