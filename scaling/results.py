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

import fcntl
import json
import logging
import math
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

SPEC, STATUS, METRICS, RESULT, CKPT, LOCK = (
    "spec.json", "status.json", "metrics.jsonl", "result.json", "ckpt.pt", ".lock")
FINAL_STATES = ("done", "diverged")
STATES = ("done", "diverged", "failed", "running", "pending")
HEARTBEAT_STALE_S = 600.0
"""A `running` status whose heartbeat is older than this (and whose lock is free) reads as failed."""

RESULT_FIELDS = ("status", "train_loss", "val_loss", "n_params", "n_tokens", "flops", "wall_s")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON so readers see the old file or the new one, never half of one (temp + fsync + replace)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def write_result(run_dir: Path, result: dict[str, Any]) -> None:
    missing = [k for k in RESULT_FIELDS if k not in result]
    if missing or result["status"] not in FINAL_STATES:
        raise ValueError(f"result for {run_dir} lacks {missing} or has status {result.get('status')!r}")
    write_json_atomic(Path(run_dir) / RESULT, result)


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The finished result, or None when the run has none (or a corrupt one, which means: redo it)."""
    result = read_json(Path(run_dir) / RESULT)
    if result is None:
        return None
    if any(k not in result for k in RESULT_FIELDS) or result["status"] not in FINAL_STATES:
        log.warning("%s: incomplete result.json; the run will be redone", run_dir)
        return None
    if result["status"] == "done" and not all(_positive(result[k]) for k in RESULT_FIELDS[1:6]):
        log.warning("%s: result.json holds a non-finite or non-positive number; the run will be redone", run_dir)
        return None
    return result


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


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
    with open(Path(run_dir) / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Logged records; a line torn by a kill (the last one, usually) is skipped."""
    records = []
    try:
        lines = (Path(run_dir) / METRICS).read_text().splitlines()
    except FileNotFoundError:
        return records
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
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
    result = read_result(run_dir)
    if result is not None:
        return str(result["status"])
    status = read_json(run_dir / STATUS)
    if status is None:
        return "pending"
    state = status.get("state")
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


def load_results(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per run folder under sweep_dir: the spec's accounting, the state and the final numbers.

    `loss` is the held-out loss (the column fits use); rows not `done` keep NaN losses or their last
    values and a `reason`.
    """
    sweep_dir = Path(sweep_dir)
    rows = []
    for run_dir in sorted(p for p in sweep_dir.iterdir() if p.is_dir()) if sweep_dir.is_dir() else []:
        spec = read_json(run_dir / SPEC)
        if spec is None:
            continue
        shape = spec.get("shape", {})
        result = read_result(run_dir) or {}
        status = read_json(run_dir / STATUS) or {}
        state = run_state(run_dir)
        row = {
            "run_id": spec.get("run_id", run_dir.name), "sweep": spec.get("sweep"), "status": state,
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
            "reason": result.get("reason") or (status.get("error") if state == "failed" else None),
            "log": status.get("log"), "run_dir": str(run_dir),
        }
        rows.append(row)
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else ["run_id", "status", "n_params",
                                                                    "n_tokens", "flops", "loss"])


def export_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write the table atomically (a crash never leaves a half CSV where a good one was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # e.g. `scaling fit SWEEP --out new/folder`
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path
