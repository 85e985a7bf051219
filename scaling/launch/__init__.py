"""Launching: `launch(plan)` writes each run's spec, skips what is done and hands the rest to a backend.

The package, by job: `jobs` (what a job runs: TrainJob, TrainWorker, WorkQueue), `pool` (the bounded local
pool: slots, GPUs, signals), `backend` (the interface a backend implements: `Backend(cfg).run(todo, ctx)
-> LaunchOutcome`), `local` and `slurm` (the two backends), `progress` (status, progress line, ETA).
Per-run files under results/<sweep>/<run_id>/ are the truth (`scaling.results.run_state`); the launcher need
not stay alive: `sweep_status` reads disk. Nothing here imports torch at module import (launch() loads the
corpus, which does, when it is called for a local sweep).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scaling.config import LaunchConfig, SweepConfig, validate_launch
from scaling.config_rules import check_unique_tokens_fit
from scaling.errors import ConfigError
from scaling.launch.backend import Backend, LaunchContext, LaunchOutcome
from scaling.launch.jobs import THREAD_ENV_VARS, TrainJob, TrainWorker, WorkQueue, set_num_threads
from scaling.launch.local import LocalPool
from scaling.launch.pool import Interrupted, gpu_slots, local_gpus, run_pool, run_workers, take_gpus
from scaling.launch.progress import (LiveProgress, Progress, printer, progress_line, summarize,
                                     sweep_status)
from scaling.launch.slurm import SlurmArrays, make_slurm_executor, parse_sbatch_extra
from scaling.plan import Plan
from scaling.results import SPEC, RunLock, describe_ids, read_json, read_result, spec_problem, write_spec
from scaling.results import write_status
from scaling.safe import printable

__all__ = [
    "BACKEND_TYPES", "Backend", "Interrupted", "LaunchContext", "LaunchOutcome", "LaunchReport", "LiveProgress",
    "LocalPool", "Progress", "SlurmArrays", "THREAD_ENV_VARS", "TrainJob", "TrainWorker", "WorkQueue",
    "default_signal_delay_s", "gpu_slots", "job_costs", "launch", "local_gpus", "longest_first",
    "make_slurm_executor", "parse_sbatch_extra", "progress_line", "run_pool", "run_workers", "set_num_threads",
    "summarize", "sweep_status", "take_gpus",
]

BACKEND_TYPES: dict[str, Callable[[LaunchConfig], Backend]] = {"local": LocalPool, "slurm": SlurmArrays}
"""[launch].backend -> the backend; each name is also in scaling.config_rules.BACKENDS (the config's check)."""
_LAUNCH_FIELDS = {f.name for f in dataclasses.fields(LaunchConfig)}


@dataclass
class LaunchReport:
    """What one `launch` call did. Run ids in plan order; `failed` and `unfinished` are filled only when the
    call waited."""

    backend: str
    sweep_dir: str
    folder: str
    """The submitit folder of this launch (logs, pickles)."""
    submitted: list[str] = field(default_factory=list)
    skipped_done: list[str] = field(default_factory=list)
    skipped_running: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    job_ids: dict[str, str] = field(default_factory=dict)
    """run_id -> job id (Slurm "123_4"; local: the job's controller pid; "pool:<pid>" for a detached pool)."""
    n_arrays: int = 0
    unfinished: list[str] = field(default_factory=list)
    """Planned runs that still have no result and did not fail here: another process was training them and
    stopped (died, was cancelled) before finishing. The sweep and its fit are partial."""

    def __str__(self) -> str:
        return (f"{len(self.submitted)} submitted ({self.backend}), {len(self.skipped_done)} already done, "
                f"{len(self.skipped_running)} running elsewhere, {len(self.failed)} failed; "
                f"logs in {self.folder}")


def launch(plan: Plan, *, backend: str | None = None, max_parallel: int | None = None, wait: bool = True,
           verbose: bool = True, poll_s: float | None = None, signal_delay_s: int | None = None,
           **overrides: Any) -> LaunchReport:
    """Run every unfinished run of `plan` and return what was done.

    `overrides` are `[launch]` keys (timeout_min=5, partition="gpu", ...), checked here as the TOML's are
    when it is read. A local sweep's corpus is loaded first (a bad one fails in one line, before any job),
    and finished runs trained on an earlier version of it are set aside and retrained. Finished runs (a valid
    result.json) and runs locked by a live process are skipped; the others get spec.json and go to the
    backend: locally a pool of at most `max_parallel` jobs, on Slurm job arrays. With `wait=True` the call
    then waits for runs another launcher was training, so that the sweep is whole when it returns (see
    LaunchReport.unfinished). With `wait=False` it returns after submission (locally a detached pool process
    keeps going); follow with `sweep_status`.
    """
    sweep = _with_overrides(plan.sweep, backend=backend, max_parallel=max_parallel, overrides=overrides)
    cfg = sweep.launch
    runner = BACKEND_TYPES[cfg.backend](cfg)  # refuses what only the backend checks, before any run is written
    if signal_delay_s is None:
        signal_delay_s = default_signal_delay_s(cfg.timeout_min)
    if cfg.backend == "local" and not sweep.train.command:  # a command reads its own data
        _retire_stale_data(plan, sweep, verbose)

    sweep_dir = Path(sweep.sweep_dir).resolve()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    # Unique per launch: a fresh Slurm restarts job ids at 1, and a folder keyed only by id would mix them.
    folder = sweep_dir / ".submitit" / f"{stamp}-{os.getpid()}"
    report = LaunchReport(backend=cfg.backend, sweep_dir=str(sweep_dir), folder=str(folder))
    todo: list[Path] = []
    for spec in plan.runs:
        run_dir = sweep_dir / spec.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        if read_result(run_dir) is not None:
            on_disk = read_json(run_dir / SPEC)
            if on_disk is None or spec_problem(on_disk):  # a lost or damaged spec.json hides the run from fits
                write_spec(run_dir, spec)
            report.skipped_done.append(spec.run_id)
            continue
        if RunLock(run_dir).is_held_elsewhere():
            report.skipped_running.append(spec.run_id)
            continue
        write_spec(run_dir, spec)
        write_status(run_dir, "submitted", fresh=True, launch=str(folder))
        todo.append(run_dir)
        report.submitted.append(spec.run_id)
    todo = _one_job_per_trunk(plan, todo, report)
    costs = job_costs(plan)
    todo = longest_first(todo, costs)
    progress = (LiveProgress(lambda: sweep_status(plan), slots=cfg.max_parallel, est_flops_per_s=cfg.est_flops_per_s)
                if verbose and wait else None)
    say = progress.say if progress is not None else printer(verbose)
    say(f"launch {sweep.name}: {len(plan.runs)} runs, {len(report.skipped_done)} done, "
        f"{len(report.skipped_running)} running elsewhere, {len(todo)} to submit ({cfg.backend})")
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        ctx = LaunchContext(folder=folder, sweep_name=sweep.name, wait=wait, say=say, signal_delay_s=signal_delay_s,
                            poll_s=poll_s, progress=progress, costs=costs,
                            elsewhere=tuple(sweep_dir / r for r in report.skipped_running))
        outcome = runner.run(todo, ctx)
        report.job_ids, report.failed, report.n_arrays = outcome.job_ids, outcome.failed, outcome.n_arrays
    if wait:
        report.unfinished = _wait_for_runs_elsewhere(plan, report.failed, verbose=verbose)
    return report


def _with_overrides(sweep: SweepConfig, *, backend: str | None, max_parallel: int | None,
                    overrides: dict[str, Any]) -> SweepConfig:
    """The sweep with launch()'s `[launch]` keys applied; those values enter here, so they are checked here
    (the rest of the config was checked when it was read: scaling.config.load_sweep)."""
    unknown = sorted(set(overrides) - _LAUNCH_FIELDS)
    if unknown:
        raise ConfigError(f"launch(): unknown option {unknown[0]} (valid: {', '.join(sorted(_LAUNCH_FIELDS))})")
    if backend is not None:
        overrides["backend"] = backend
    if max_parallel is not None:
        overrides["max_parallel"] = max_parallel
    if not overrides:
        return sweep
    if "sbatch_extra" in overrides:
        overrides["sbatch_extra"] = tuple(overrides["sbatch_extra"])
    sweep = dataclasses.replace(sweep, launch=dataclasses.replace(sweep.launch, **overrides))
    validate_launch(sweep)  # the TOML path's one-line errors; e.g. timeout_min=0 pends forever on Slurm
    return sweep


def job_costs(plan: Plan) -> dict[str, float]:
    """run_id -> FLOPs its job trains: the run's own, or for a WSD branch its trunk's job (the longest fork
    plus every branch's cooldown: Plan.trunk_flops), since one job trains the whole trunk."""
    trunks = plan.trunk_flops
    return {r.run_id: trunks[r.trunk_id] if r.schedule == "wsd" and r.trunk_id else float(r.flops)
            for r in plan.runs}


def longest_first(todo: Sequence[Path], costs: dict[str, float]) -> list[Path]:
    """The jobs in the order to start them: largest cost first (LPT list scheduling, Graham 1969: each slot
    takes the next job when it frees, and the makespan is at most 4/3 - 1/(3m) of the optimum on m slots;
    plan order can leave one slot training the largest run alone at the end). Ties keep plan order."""
    return sorted(todo, key=lambda d: -costs.get(Path(d).name, 0.0))


def _one_job_per_trunk(plan: Plan, todo: list[Path], report: LaunchReport) -> list[Path]:
    """WSD: keep one job per trunk (its largest-budget branch, which finishes last); the job trains every
    branch (scaling.wsd). A trunk with a branch running elsewhere is left to that job."""
    trunk_of = {r.run_id: r.trunk_id for r in plan.runs if r.trunk_id}
    busy = {trunk_of[r] for r in report.skipped_running if r in trunk_of}
    last: dict[str, Path] = {}
    for run_dir in todo:  # plan order: budgets ascend within a size
        if run_dir.name in trunk_of:
            last[trunk_of[run_dir.name]] = run_dir
    busy |= {t for t in last if RunLock(Path(report.sweep_dir) / ".trunks" / t).is_held_elsewhere()}
    keep = set(last.values())
    return [d for d in todo if d.name not in trunk_of or (d in keep and trunk_of[d.name] not in busy)]


def default_signal_delay_s(timeout_min: float) -> int:
    """Seconds before the time limit at which jobs get USR2 (checkpoint + requeue): a quarter of the limit,
    between 15 and 90 s, so that 1-minute test jobs still train before being signalled."""
    return int(min(90, max(15, timeout_min * 60 / 4)))


def _retire_stale_data(plan: Plan, sweep: SweepConfig, verbose: bool) -> None:
    """Load the corpus (a missing, empty or too-short one, or one shorter than [grid].unique_tokens, fails here
    in one line, not in every job; jobs reuse its cache), and set aside planned runs finished on an earlier version of it (edited in place) so they are
    retrained."""
    from scaling.data import load_corpus  # imports torch
    from scaling.provenance import retire_stale, stale_data_runs

    corpus = load_corpus(sweep.data, seq_len=sweep.model.seq_len)
    check_unique_tokens_fit(sweep, corpus.n_train_tokens)  # U_D > the training split: refused before any job
    fingerprint = corpus.fingerprint
    stale = stale_data_runs(sweep.sweep_dir, plan.run_ids, fingerprint)
    for run_id, recorded in stale:
        retire_stale(Path(sweep.sweep_dir) / run_id, recorded)
    if stale and verbose:
        old = sorted({fp for _, fp in stale})
        print(f"data changed: {len(stale)} finished run(s) were trained on corpus {printable(', '.join(old))}, the corpus "
              f"is now {fingerprint}; retraining them (old results kept in each run's stale-data-*/): "
              f"{describe_ids([r for r, _ in stale])}", flush=True)


def _wait_for_runs_elsewhere(plan: Plan, failed: list[str], *, verbose: bool, poll_s: float = 1.0) -> list[str]:
    """Wait while another launcher (or an orphaned job) holds a planned run's lock, so that "finished" and
    the fit cover the whole sweep. Returns the planned runs that still have no final result and did not fail
    in this launch: another process had them and stopped (died, was cancelled) before finishing."""
    elsewhere = _running_elsewhere(plan)
    if elsewhere and verbose:
        print(f"waiting for {len(elsewhere)} run(s) being trained elsewhere (their lock is held by another "
              f"launch or job): {describe_ids(elsewhere)}", flush=True)
    while _running_elsewhere(plan):
        time.sleep(poll_s)
    sweep_dir = Path(plan.sweep.sweep_dir)
    return [r.run_id for r in plan.runs if r.run_id not in set(failed) and read_result(sweep_dir / r.run_id) is None]


def _running_elsewhere(plan: Plan) -> list[str]:
    """Planned runs without a final result whose lock another process holds (another launch is training them)."""
    sweep_dir = Path(plan.sweep.sweep_dir)
    return [r.run_id for r in plan.runs if (sweep_dir / r.run_id).is_dir()
            and read_result(sweep_dir / r.run_id) is None and RunLock(sweep_dir / r.run_id).is_held_elsewhere()]
