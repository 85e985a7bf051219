"""The state of a run folder, read from its files alone: its readers, writers, lock and claim.

Read from its files alone (the launcher may be gone): one reader (read_run)
behind run_state, the results table (load_results) and the status table (sweep_status), the one reader of
spec.json (read_spec), the writers of spec.json, status.json and result.json, and claiming a run to train it
(claim: result check and lock). Nothing here imports torch, and nothing here unpickles anything.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scaling.errors import LaunchError
from scaling.safe import no_symlink

from scaling.results.files import (LOCK, RESULT, SPEC, STATUS, last_metrics_record, read_metrics,
                                   read_json, read_json_checked, write_json_atomic)
from scaling.results.records import (FINAL_STATES, RunResult, RunSpec, result_problem, spec_problem,
                                     status_problem)

log = logging.getLogger("scaling.results")

HEARTBEAT_STALE_S = 600.0
"""A `running` status whose heartbeat is older than this (and whose lock is free) reads as failed."""


_CHECKS = ((SPEC, spec_problem), (RESULT, result_problem), (STATUS, status_problem))


@dataclass(frozen=True)
class RunFiles:
    """One read of a run folder: its state and the records behind it (each file read once)."""

    run_dir: Path
    state: str
    """One of scaling.results.records.STATES, or a finer launcher state (submitted, requeued)."""
    spec: dict[str, Any] = field(default_factory=dict)
    """spec.json ({} when missing, or damaged: wrong-typed fields show none rather than some)."""
    result: dict[str, Any] = field(default_factory=dict)
    """result.json when it passes its check, else {}."""
    status: dict[str, Any] = field(default_factory=dict)
    damage: str | None = None
    """"<file>: <why>" for the first damaged file, see damage()."""

    @property
    def error(self) -> str | None:
        """What went wrong, in one line: damage, a failed job's error, or a diverged run's reason."""
        if self.damage is not None:
            return self.damage
        if self.state in ("failed", "interrupted"):
            return self.status.get("error")
        return self.result.get("reason") or None


def read_run(run_dir: Path) -> RunFiles:
    """done / diverged / failed / damaged / interrupted / running / pending (or submitted / requeued), with
    the records it was decided from. The one reader of a run folder's state: run_state, load_results and
    sweep_status all go through it, so a table and a status line never disagree about a run."""
    run_dir = Path(run_dir)
    records, why = _read_records(run_dir)
    spec, result, status = records.get(SPEC, {}), records.get(RESULT, {}), records.get(STATUS, {})
    state = _state(run_dir, why, result, status)
    return RunFiles(run_dir=run_dir, state=state, spec=spec, result=result, status=status,
                    damage=why if state == "damaged" else None)


def _state(run_dir: Path, why: str | None, result: dict[str, Any], status: dict[str, Any]) -> str:
    if why is not None and not (result and why.startswith(STATUS)):  # result.json outranks status
        return "running" if RunLock(run_dir).is_held_elsewhere() else "damaged"
    if result:
        return str(result["status"])
    if not status:
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


def run_state(run_dir: Path) -> str:
    """The state of one run folder (read_run)."""
    return read_run(run_dir).state


def damage(run_dir: Path) -> str | None:
    """"<file>: <why>" for the first damaged run file in run_dir, or None when every file present passes.

    A missing spec.json is damage only beside a result.json (a finished run that would vanish from tables);
    a missing result.json or status.json is simply a run not finished or not started.
    """
    return _read_records(Path(run_dir))[1]


def _read_records(run_dir: Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Each of spec.json, result.json, status.json read once: the records that pass their check ({} for a
    missing or damaged one) and "<file>: <why>" for the first damaged file."""
    records: dict[str, dict[str, Any]] = {}
    first = None
    for name, check in _CHECKS:
        obj, why = read_json_checked(run_dir / name)
        if obj is not None:
            why = check(obj)
        elif why is None and name == SPEC and (run_dir / RESULT).exists():
            why = "missing (the run has a result.json)"
        records[name] = obj if obj is not None and why is None else {}
        if why is not None and first is None:
            first = f"{name}: {why}"
    return records, first


def write_spec(run_dir: Path, spec: RunSpec) -> bool:
    """Write spec.json unless it already holds exactly this spec; True if it was (re)written."""
    path = Path(run_dir) / SPEC
    record = spec.to_dict()
    if read_json(path) == json.loads(json.dumps(record)):
        return False
    write_json_atomic(path, record)
    return True


def write_result(run_dir: Path, result: RunResult | Mapping[str, Any]) -> None:
    """Write result.json (the run is finished from now on); a dict is checked as a RunResult first."""
    record = result if isinstance(result, RunResult) else RunResult.from_dict(result)
    write_json_atomic(Path(run_dir) / RESULT, record.to_dict())


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The finished result, or None when the run has none (or a corrupt one, which means: redo it)."""
    result, why = read_json_checked(Path(run_dir) / RESULT)
    if result is not None:
        why = result_problem(result)
    if why is not None:
        log.warning("%s: damaged %s (%s); the run will be redone", run_dir, RESULT, why)
        return None
    return result


def read_spec(run_dir: Path) -> RunSpec:
    """The run's spec.json as a RunSpec, schema-checked (what every trainer trains from); a one-line
    LaunchError naming the file when it is missing, unreadable or damaged."""
    path = Path(run_dir) / SPEC
    raw = read_json(path)
    if raw is None:
        raise LaunchError(f"{path}: missing or unreadable run spec")
    why = spec_problem(raw)
    if why is not None:
        raise LaunchError(f"{path}: damaged run spec: {why}")
    try:
        return RunSpec.from_dict(raw)
    except (TypeError, KeyError, ValueError) as exc:
        raise LaunchError(f"{path}: damaged run spec: {type(exc).__name__}: {exc}") from None


def claim(run_dir: Path) -> tuple[dict[str, Any] | None, RunLock | None]:
    """Claim a run to train it: (its result, None) when it is finished, else (None, its lock, now held by this
    process; release it when done). LaunchError when another process holds the lock (training it now).
    The result is read again once the lock is held: the run may have finished in between."""
    done = read_result(run_dir)
    if done is not None:
        return done, None
    lock = RunLock(run_dir)
    if not lock.acquire():
        raise LaunchError(f"{run_dir}: is being trained by another process (lock {lock.path} is held)")
    done = read_result(run_dir)
    if done is not None:
        lock.release()
        return done, None
    return None, lock


def write_status(run_dir: Path, state: str, *, fresh: bool = False, **info: Any) -> None:
    """Record what the run is doing now; `status` and relaunches read it. Keeps earlier keys unless `fresh`
    (a new submission: stale errors and log paths of earlier attempts must not linger)."""
    path = Path(run_dir) / STATUS
    status = {} if fresh else (read_json(path) or {})
    status.update(info)
    status.update(state=state, time=time.time(), host=socket.gethostname(), pid=os.getpid())
    write_json_atomic(path, status)


class RunLock:
    """An exclusive, non-blocking lock on a run folder: two launches never train the same run at once.

    flock is released by the kernel when the holder dies, so a killed job never leaves a stale lock.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(no_symlink(self.path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
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
    rows = []
    for run_dir in run_dirs(Path(sweep_dir)):
        run = read_run(run_dir)
        spec, result, state = run.spec, run.result, run.state
        shape = spec.get("shape", {})
        rows.append({
            "run_id": run_dir.name, "sweep": spec.get("sweep"), "status": state,
            "arch": shape.get("arch"), "n_layer": shape.get("n_layer"), "d_model": shape.get("d_model"),
            "n_head": shape.get("n_head"), "seq_len": shape.get("seq_len"), "vocab_size": shape.get("vocab_size"),
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
            # [grid].unique_tokens (0: the whole training split, whose size is n_train_tokens) and the epochs trained
            "unique_tokens": spec.get("unique_tokens", 0), "epochs": result.get("epochs"),
            "n_train_tokens": (result.get("corpus") or {}).get("n_train_tokens"),
            "reason": run.error, "log": run.status.get("log"), "run_dir": str(run_dir),
        })
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else ["run_id", "status", "n_params",
                                                                    "n_tokens", "flops", "loss"])


STATUS_COLUMNS = ["run_id", "state", "n_params", "n_tokens", "flops", "val_loss", "detail", "job_id", "log"]
PROGRESS_COLUMNS = ["flops_done", "time_s"]
"""Columns of sweep_status for the progress line: FLOPs trained so far and the seconds they took (a finished
run: its FLOPs and wall_s; a running or interrupted one: its last metrics.jsonl record; else 0)."""
_SHOWN_STATES = ("done", "diverged", "failed", "damaged", "interrupted", "running")


def sweep_status(runs: Mapping[str, Mapping[str, Any] | None] | str | Path, sweep_dir: str | Path | None = None
                 ) -> pd.DataFrame:
    """One row per run, from disk alone: done / running / failed / diverged / damaged / interrupted / pending.

    `runs` maps run ids to their planned spec records (scaling.launch.sweep_status passes a Plan's; planned
    runs without a folder yet are pending), or is a sweep folder: every run folder in it. `detail` keeps the
    finer state (submitted, requeued); `log` is set for failed runs.
    """
    if sweep_dir is None:
        sweep_dir = Path(runs)  # type: ignore[arg-type]
        planned: Mapping[str, Mapping[str, Any] | None] = {p.name: None for p in run_dirs(sweep_dir)}
    else:
        sweep_dir, planned = Path(sweep_dir), runs  # type: ignore[assignment]
    rows = []
    for run_id, planned_spec in planned.items():
        run_dir = sweep_dir / run_id
        run = read_run(run_dir) if run_dir.is_dir() else RunFiles(run_dir=run_dir, state="pending")
        spec = dict(planned_spec) if planned_spec is not None else run.spec
        state = run.state if run.state in _SHOWN_STATES else "pending"
        flops_done, time_s = _work_done(run, state, spec)
        rows.append({
            "run_id": run_id, "state": state, "n_params": spec.get("n_params"),
            "n_tokens": spec.get("n_tokens"), "flops": spec.get("flops"),
            "val_loss": run.result.get("val_loss", math.nan), "detail": run.state,
            "job_id": run.status.get("job_id"), "log": run.status.get("log") if state == "failed" else None,
            "error": run.error, "flops_done": flops_done, "time_s": time_s,
        })
    return pd.DataFrame(rows, columns=STATUS_COLUMNS + ["error"] + PROGRESS_COLUMNS)


def _work_done(run: RunFiles, state: str, spec: Mapping[str, Any]) -> tuple[float, float]:
    if state in FINAL_STATES:
        return float(spec.get("flops") or run.result.get("flops") or 0.0), float(run.result.get("wall_s") or 0.0)
    if state in ("running", "interrupted"):
        record = last_metrics_record(run.run_dir)
        if record is not None:
            return float(record.get("flops") or 0.0), float(record.get("elapsed_s") or 0.0)
    return 0.0, 0.0


def load_curves(sweep_dir: str | Path) -> pd.DataFrame:
    """Every run's logged loss curve as one long frame: a row per logged step with `run` (the run id),
    `step`, `tokens` (step x batch_size x seq_len), `n_params` and whatever the step logged (train_loss,
    val_loss, lr, flops, elapsed_s, ...). Torn or damaged metrics lines are skipped (read_metrics)."""
    rows = []
    for run_dir in run_dirs(Path(sweep_dir)):
        spec = read_run(run_dir).spec
        per_step = (spec.get("batch_size") or 0) * ((spec.get("shape") or {}).get("seq_len") or 0)
        for record in read_metrics(run_dir):
            rows.append({"run": run_dir.name, "step": record["step"], "tokens": record["step"] * per_step,
                         "n_params": spec.get("n_params"),
                         **{k: v for k, v in record.items() if k not in ("step", "run", "tokens")}})
    columns = ["run", "step", "tokens", "n_params"]
    frame = pd.DataFrame(rows)
    return frame[columns + [c for c in frame.columns if c not in columns]] if rows else pd.DataFrame(columns=columns)
