"""The plan's time estimate, calibrated from this machine's finished runs (issue 23, item 7).

A constant FLOP/s ([launch].est_flops_per_s) was far off: `scaling plan` said ~0.2 min for a sweep that took
56 s, because small models spend most of a run's wall time outside the matmuls (data, evaluation, Python
overhead), so their FLOP/s is far below a large model's. Every finished run records its FLOPs and wall time
(result.json), with the host, device and thread count it ran with. `calibrate` reads every finished run of
every sweep under the results folder that ran like the planned jobs will (same host, device and threads per
job) and gives each planned run its seconds:

- a run whose shape (arch, layers, width, heads, context, batch) was measured: FLOPs / that shape's median
  FLOP/s (flops / wall_s of each finished run);
- any other: the FLOP/s interpolated in log N between the measured sizes of its family (or of every family),
  held constant beyond the measured range;
- no finished run here: what `scaling plan --measure` last timed on this host (SPEED_CACHE; training steps
  only, so a lower bound), else [launch].est_flops_per_s, said so.

The sweep's wall time is the launcher's schedule: runs longest first onto `max_parallel` slots (LPT). Torch-free:
it reads JSON files only.
"""

from __future__ import annotations

import heapq
import math
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.plan import Plan
from scaling.results import RESULT, SPEC, read_json, write_json_atomic

__all__ = ["Calibration", "calibrate", "measured_runs", "lpt_makespan", "RUN_SPEED_INDEX", "SPEED_CACHE",
           "save_measured_speed"]

SPEED_CACHE = ".plan_speed.json"
"""In the results folder: what `scaling plan --measure` timed on each host (FLOP/s per job by model size), the
estimate's source when no run has finished on this host yet."""

SHAPE_KEYS = ("arch", "n_layer", "d_model", "n_head", "seq_len", "batch_size")
"""What makes two runs the same shape for their speed (the token count is not: FLOP/s hardly depends on it)."""


def _job_device(plan: Plan) -> str:
    return "cuda" if plan.sweep.launch.gpus_per_job > 0 else "cpu"


RUN_SPEED_INDEX = ".run_speed_index.json"
"""In the results folder: each finished run's speed row, keyed by its folder and stamped with its result.json's
and spec.json's mtime and size, so a plan re-reads only the runs that finished or changed since the last one
(3000 finished runs: each later `scaling plan` stats them instead of parsing 6000 JSON files)."""

_COLUMNS = [*SHAPE_KEYS, "run_dir", "n_params", "flops", "wall_s", "flops_per_s"]


def _stamp(run_dir: str) -> list[int] | None:
    try:
        r, s = os.stat(os.path.join(run_dir, RESULT)), os.stat(os.path.join(run_dir, SPEC))
    except OSError:  # unfinished, removed, or no spec.json: not a run to time
        return None
    return [r.st_mtime_ns, r.st_size, s.st_mtime_ns, s.st_size]


def _run_folders(root: Path) -> list[tuple[str, str]]:
    """(sweep/run, path) of every folder two levels under root (os.scandir: pathlib's glob cost most of a plan's
    calibration on a results folder of thousands of runs)."""
    found = []
    for sweep in _subfolders(str(root)):
        found += [(f"{sweep.name}/{run.name}", run.path) for run in _subfolders(sweep.path)]
    return sorted(found)


def _subfolders(path: str) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            return [e for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _speed_row(result_path: Path) -> dict | None:
    """A finished run's speed row (where and how it ran, its shape, FLOPs, wall time), or None."""
    result = read_json(result_path)
    spec = read_json(result_path.parent / SPEC)
    if not result or not spec or result.get("status") != "done":
        return None
    flops, wall = result.get("flops"), result.get("wall_s")
    if not (isinstance(flops, (int, float)) and isinstance(wall, (int, float)) and flops > 0 and wall > 0):
        return None
    shape = spec.get("shape") or {}
    return {"host": result.get("hostname"), "device": result.get("device"), "threads": result.get("num_threads"),
            **{k: shape.get(k, spec.get(k)) for k in SHAPE_KEYS}, "n_params": float(spec.get("n_params") or 0),
            "flops": float(flops), "wall_s": float(wall), "flops_per_s": float(flops) / float(wall)}


def measured_runs(results_root: str | Path, *, host: str, device: str, threads: int) -> pd.DataFrame:
    """One row per finished run under results_root/<sweep>/<run>/ that ran on `host` and `device` with
    `threads` torch threads: its shape keys, n_params, flops, wall_s and flops_per_s (flops / wall_s).
    Reads only the runs new or changed since RUN_SPEED_INDEX was written, and updates it where it can."""
    root = Path(results_root)
    index_path = root / RUN_SPEED_INDEX
    saved = read_json(index_path) or {}
    known = saved.get("runs") if saved.get("version") == 1 and isinstance(saved.get("runs"), dict) else {}
    runs, changed = {}, False
    for name, run_dir in _run_folders(root):
        stamp = _stamp(run_dir)
        if stamp is None:
            continue
        entry = known.get(name)
        if not (isinstance(entry, dict) and entry.get("stamp") == stamp and "row" in entry):
            entry, changed = {"stamp": stamp, "row": _speed_row(Path(run_dir) / RESULT)}, True
        runs[name] = entry
    if changed or len(runs) != len(known):
        try:
            write_json_atomic(index_path, {"version": 1, "runs": runs})
        except OSError:  # a read-only or shared results folder: the plan still gets its estimate
            pass
    rows = [{**{k: v for k, v in e["row"].items() if k not in ("host", "device", "threads")},
             "run_dir": os.path.join(root, name)} for name, e in runs.items()
            if isinstance(e.get("row"), dict) and (e["row"].get("host"), e["row"].get("device"),
                                                   e["row"].get("threads")) == (host, device, threads)]
    return pd.DataFrame(rows, columns=_COLUMNS)


@dataclass(frozen=True)
class Calibration:
    """Seconds per planned run and where the speed behind them came from."""

    seconds: dict[str, float]
    """run_id -> estimated wall seconds of its job."""
    n_measured: int
    """Finished runs the speeds came from (0: the stated est_flops_per_s)."""
    n_same_shape: int
    """Planned runs whose own shape was measured."""
    source: str
    """One line for `scaling plan`: what the estimate rests on."""


def _speed_key(host: str, device: str, threads: int) -> str:
    return f"{host}|{device}|{threads}"


def save_measured_speed(plan: Plan, rates: dict[float, float], *, host: str | None = None) -> Path:
    """Record `scaling plan --measure`'s FLOP/s per job by model size (n_params -> FLOP/s) for this host, device
    and thread count in <results_dir>/SPEED_CACHE; later plans use it until runs have finished here."""
    launch = plan.sweep.launch
    path = Path(plan.sweep.results_dir) / SPEED_CACHE
    cache = read_json(path) or {}
    cache[_speed_key(host or socket.gethostname(), _job_device(plan), launch.threads_per_job)] = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "flops_per_s": {repr(float(n)): float(r)
                                                                            for n, r in rates.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, cache)
    return path


def _cached_speed(root: Path, host: str, device: str, threads: int) -> tuple[pd.Series, str] | None:
    entry = (read_json(root / SPEED_CACHE) or {}).get(_speed_key(host, device, threads))
    try:
        rates = pd.Series({float(n): float(r) for n, r in entry["flops_per_s"].items()}).sort_index()
        return (rates, str(entry.get("measured_at", ""))) if len(rates) and (rates > 0).all() else None
    except (TypeError, KeyError, ValueError, AttributeError):
        return None


def _interp_rate(n: float, sizes: np.ndarray, rates: np.ndarray) -> float:
    """FLOP/s at n parameters, log-linear between measured sizes, constant beyond them."""
    return float(np.exp(np.interp(math.log(n), np.log(sizes), np.log(rates))))


def calibrate(plan: Plan, results_root: str | Path | None = None, *, host: str | None = None) -> Calibration:
    """Each planned run's seconds, from the finished runs under `results_root` (default: the sweep's
    results_dir) that ran on this host like its jobs will; see the module docstring."""
    launch = plan.sweep.launch
    root = Path(results_root if results_root is not None else plan.sweep.results_dir)
    host = host or socket.gethostname()
    device = _job_device(plan)
    measured = measured_runs(root, host=host, device=device, threads=launch.threads_per_job)
    cached = _cached_speed(root, host, device, launch.threads_per_job) if measured.empty else None
    if cached is not None:
        rates, when = cached
        sizes = rates.index.to_numpy(float)
        return Calibration(
            seconds={r.run_id: r.flops / _interp_rate(r.n_params, sizes, rates.to_numpy(float)) for r in plan.runs},
            n_measured=0, n_same_shape=0,
            source=(f"measured by `scaling plan --measure` on this host ({host}, {device}, {launch.threads_per_job} "
                    f"thread(s)) at {when}: {rates.min():.3g}-{rates.max():.3g} FLOP/s per job over "
                    f"{len(rates)} model size(s), interpolated in N; training steps only (no data loading or "
                    "evaluation), so a lower bound on the time; calibrated from finished runs once there are some"))
    if measured.empty:
        rate = launch.est_flops_per_s
        return Calibration(
            seconds={r.run_id: r.flops / rate for r in plan.runs}, n_measured=0, n_same_shape=0,
            source=(f"assumed [launch].est_flops_per_s = {rate:.3g} FLOP/s per job: no finished run in {root}/ ran "
                    f"on this host ({host}, {device}, {launch.threads_per_job} thread(s)); `scaling plan --measure` "
                    "times this machine, and the estimate calibrates itself once runs finish"))
    by_shape = measured.groupby(list(SHAPE_KEYS), dropna=False)["flops_per_s"].median()
    per_size = measured.groupby("n_params")["flops_per_s"].median()
    per_arch_size = {arch: part.groupby("n_params")["flops_per_s"].median()
                     for arch, part in measured.groupby("arch")}
    seconds, same = {}, 0
    for r in plan.runs:
        key = (r.shape.arch, r.shape.n_layer, r.shape.d_model, r.shape.n_head, r.shape.seq_len, r.batch_size)
        if key in by_shape.index:
            rate, same = float(by_shape.loc[key]), same + 1
        else:
            sizes = per_arch_size.get(r.shape.arch, per_size)
            rate = _interp_rate(r.n_params, sizes.index.to_numpy(float), sizes.to_numpy(float))
        seconds[r.run_id] = r.flops / rate
    rates = measured["flops_per_s"]
    source = (f"calibrated from {len(measured)} finished run(s) in {root}/ on this host ({host}, {device}, "
              f"{launch.threads_per_job} thread(s); {rates.min():.3g}-{rates.max():.3g} FLOP/s per job, wall time "
              f"included): {same} of {len(plan.runs)} planned runs by their own shape's speed, the rest interpolated "
              "in N")
    return Calibration(seconds=seconds, n_measured=len(measured), n_same_shape=same, source=source)


def lpt_makespan(seconds: Iterable[float], slots: int) -> float:
    """Wall seconds of jobs run longest first, each to whichever of `slots` frees first (the local pool's order)."""
    free = [0.0] * max(1, int(slots))
    for s in sorted(seconds, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + s)
    return max(free)
