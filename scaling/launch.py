"""Launching: write each run's spec, skip what is done, run the rest on a bounded local pool or Slurm arrays.

Per-run files under results/<sweep>/<run_id>/ are the truth (`scaling.results.run_state`). submitit's job
states are used only to notice a job that died before it could write its own status; UNKNOWN, PREEMPTED
or a reused job id never count as finished. The launcher need not stay alive: `sweep_status` reads disk.

Nothing here imports torch at module import: jobs import `scaling.train` when they start, after setting
their thread counts.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import heapq
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import submitit
from submitit.helpers import Checkpointable, DelayedSubmission

from scaling.config import LaunchConfig, tasks_per_job, validate
from scaling.safe import printable
from scaling.errors import ConfigError, LaunchError
from scaling.plan import Plan
from scaling import results
from scaling.results import (
    FINAL_STATES, SPEC, STATUS, RunLock, read_json, read_result, read_run, run_state,
    read_spec, spec_problem, write_json_atomic, write_spec, write_status,
)

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Slurm states after which a job will not write anything more (a requeued job is PENDING/REQUEUED again).
_SLURM_DEAD = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
               "TIMEOUT"}
_LAUNCH_FIELDS = {f.name for f in dataclasses.fields(LaunchConfig)}


class TrainJob(Checkpointable):
    """What each job runs: train the run in `run_dir`, resuming from its newest checkpoint on disk.

    Holds only the folder and the thread count, so a requeued pickle never carries stale state: the spec
    is read from spec.json and the checkpoint found on disk when the job starts.
    """

    def __init__(self, run_dir: str | Path, num_threads: int = 1):
        self.run_dir = str(run_dir)
        self.num_threads = int(num_threads)

    def __call__(self) -> dict[str, Any]:
        set_num_threads(self.num_threads)
        run_dir = Path(self.run_dir)
        info = _job_info()
        rank = _export_torch_distributed()
        if rank == 0:  # in a multi-task job the other ranks train too, but only rank 0 writes
            write_status(run_dir, "running", **info)
        try:
            spec = read_spec(run_dir)
            if spec.command:  # [train].command: the user's script trains it
                from scaling import external  # torch-free

                return external.run_command(run_dir, num_threads=self.num_threads)
            from scaling import train  # imports torch; only inside the job

            if spec.trunk_id:  # WSD: this job trains the size's trunk
                from scaling import wsd

                return wsd.train_trunk(run_dir, num_threads=self.num_threads)
            return train.train_run(run_dir, num_threads=self.num_threads)
        except KeyboardInterrupt:  # the launcher was stopped (it cancels its jobs with SIGINT): resume later
            if rank == 0 and read_result(run_dir) is None and not RunLock(run_dir).is_held_elsewhere():
                write_status(run_dir, "interrupted", error="interrupted: its launcher was stopped; rerun to resume",
                             **info)
            raise
        except Exception as exc:
            # A run trained elsewhere (lock held) or one that ended diverged is not a failure of this run.
            if rank == 0 and read_result(run_dir) is None and not RunLock(run_dir).is_held_elsewhere():
                write_status(run_dir, "failed", error=_one_line(exc), **info)
            raise

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Called by submitit on timeout or preemption (USR2): save, mark requeued, resubmit the same args."""
        saved = _checkpoint_active_run()
        write_status(Path(self.run_dir), "requeued", checkpoint_saved=bool(saved), **_job_info())
        return DelayedSubmission(TrainJob(self.run_dir, self.num_threads))

    def __repr__(self) -> str:
        return f"TrainJob({self.run_dir!r}, num_threads={self.num_threads})"


def _checkpoint_active_run() -> bool:
    """In a requeue signal handler: save the run this process trains, if any (scaling.train decides).

    A signal during start-up (scaling.train still importing, e.g. torch loading on a busy node) means no run
    is active yet: nothing is saved and the job requeues from the checkpoint on disk. Importing here would
    re-enter the half-initialised module and fail the job ("partially initialized module", seen on a loaded
    CI machine).
    """
    saved = False
    for name in ("scaling.train", "scaling.external"):  # the built-in trainer, or a [train].command's process
        active = getattr(sys.modules.get(name), "checkpoint_active_run", None)
        saved = (bool(active()) if active is not None else False) or saved
    return saved


class TrainWorker(Checkpointable):
    """One slot of the local pool: a process that trains runs one after another, longest first, so the
    start-up (interpreter, torch import, corpus) is paid once per slot instead of once per run.

    The runs to train are the launch's queue (`<folder>/queue.json`, longest first); a worker takes the next
    one by creating `<folder>/claims/<run_id>` with O_EXCL (so two workers never take the same run) and
    marks it ended in `<folder>/ends/<run_id>` after TrainJob returned or raised. Each run is trained by a
    TrainJob call, exactly as in a process of its own: batches are a function of (seed, step) and train_run
    seeds the model from the spec, so the losses are bitwise the same (tests/test_launch.py). A worker takes
    no new run once its pool process is gone (a kill -9 of the launcher leaves at most the runs it was
    training as orphans) or when the next run would not fit in what is left of its time limit at the speed
    it measured (then the pool starts a fresh worker), so a run is requeued no more often than on its own.
    """

    def __init__(self, folder: str | Path, worker_id: str, num_threads: int = 1, *, pool_pid: int,
                 time_limit_s: float, job_cls: type | None = None):
        self.folder = str(folder)
        self.worker_id = worker_id
        self.num_threads = int(num_threads)
        self.pool_pid = int(pool_pid)
        self.time_limit_s = float(time_limit_s)
        self.job_cls = job_cls or TrainJob
        self.current: str | None = None

    def __call__(self) -> list[str]:
        set_num_threads(self.num_threads)
        queue = WorkQueue(Path(self.folder))
        t_start = time.monotonic()
        flops_trained, seconds = 0.0, 0.0
        trained: list[str] = []
        while True:
            left = self.time_limit_s - (time.monotonic() - t_start)
            rate = flops_trained / seconds if seconds > 0 else None
            run_dir = queue.claim_next(self.worker_id, rate=rate, seconds_left=left,
                                       pool_alive=_pid_alive(self.pool_pid))
            if run_dir is None:
                return trained
            self.current = str(run_dir)
            fresh = read_result(run_dir) is None
            t0 = time.monotonic()
            try:
                self.job_cls(run_dir, self.num_threads)()
            except Exception:  # TrainJob recorded it in the run's status.json; the traceback goes to our log
                traceback.print_exc()
            if fresh and read_result(run_dir) is not None:
                flops_trained += queue.cost(run_dir)
                seconds += time.monotonic() - t0
            queue.end(run_dir)
            self.current = None
            trained.append(run_dir.name)

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """On timeout or preemption: save the run being trained, mark it requeued; the requeued worker
        trains its claimed, unended run first (from the checkpoint), then goes on with the queue."""
        saved = _checkpoint_active_run()
        if self.current is not None:
            write_status(Path(self.current), "requeued", checkpoint_saved=bool(saved), **_job_info())
        return DelayedSubmission(TrainWorker(self.folder, self.worker_id, self.num_threads,
                                             pool_pid=self.pool_pid, time_limit_s=self.time_limit_s,
                                             job_cls=self.job_cls))

    def __repr__(self) -> str:
        return f"TrainWorker({self.folder!r}, {self.worker_id!r})"


class WorkQueue:
    """The runs of one local launch, longest first, shared by its workers through files in the launch folder
    (claims are O_EXCL files, so taking a run is atomic across processes)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.claims_dir, self.ends_dir = self.folder / "claims", self.folder / "ends"
        m = read_json(self.folder / "queue.json") or {"runs": []}
        self.order = [Path(d) for d, _ in m["runs"]]
        self.costs = {Path(d).name: float(c) for d, c in m["runs"]}

    @staticmethod
    def write(folder: Path, runs: Sequence[tuple[Path, float]]) -> WorkQueue:
        for sub in ("claims", "ends"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "queue.json", {"runs": [[str(d), float(c)] for d, c in runs]})
        return WorkQueue(folder)

    def cost(self, run_dir: Path) -> float:
        return self.costs.get(Path(run_dir).name, 0.0)

    def claims(self) -> dict[str, str]:
        """run_id -> worker id of every claimed run."""
        out = {}
        for p in self.claims_dir.iterdir():
            with contextlib.suppress(OSError):
                out[p.name] = p.read_text()
        return out

    def ended(self) -> set[str]:
        return {p.name for p in self.ends_dir.iterdir()}

    def try_claim(self, run_dir: Path, worker_id: str) -> bool:
        try:
            fd = os.open(self.claims_dir / Path(run_dir).name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(worker_id)
        return True

    def end(self, run_dir: Path) -> None:
        (self.ends_dir / Path(run_dir).name).touch()

    def claim_next(self, worker_id: str, *, rate: float | None = None, seconds_left: float = math.inf,
                   pool_alive: bool = True) -> Path | None:
        """The run this worker trains next: its own claimed, unended run (after a requeue), else the longest
        unclaimed one, if the pool lives and the run fits in `seconds_left` at `rate` (FLOP/s; None: not
        measured yet, the first run always fits); None when the worker should stop."""
        claims, ended = self.claims(), self.ended()
        for run_dir in self.order:
            if claims.get(run_dir.name) == worker_id and run_dir.name not in ended:
                return run_dir
        if not pool_alive:
            return None
        for run_dir in self.order:
            if run_dir.name in claims:
                continue
            if rate is not None and self.cost(run_dir) / rate > 0.8 * seconds_left:
                return None  # a fresh worker gets the whole time limit for it
            if self.try_claim(run_dir, worker_id):
                return run_dir
            claims = self.claims()
        return None


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, killed but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return not Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1].startswith("Z")
    except OSError:
        return True


def set_num_threads(n: int) -> None:
    """Limit intra-op threads so parallel jobs do not oversubscribe the cores (env before torch loads)."""
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def _export_torch_distributed() -> int:
    """In a submitit job of several tasks, set torch.distributed's env:// variables (MASTER_ADDR, RANK,
    WORLD_SIZE, ...) so train_run joins its process group; returns this task's global rank (0 outside one)."""
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:
        return 0
    if env.num_tasks > 1:
        # Leave CUDA_VISIBLE_DEVICES alone: submitit would set it to the local rank, which names another
        # job's GPU when Slurm exposes physical ids; scaling.ddp.setup picks the GPU from LOCAL_RANK.
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return env.global_rank


def _job_info() -> dict[str, str]:
    """Job id and log paths of the submitit job we run in ({} outside submitit)."""
    try:
        env = submitit.JobEnvironment()
        paths = env.paths
        return {"job_id": str(env.job_id), "log": str(paths.stderr), "stdout": str(paths.stdout),
                "stderr": str(paths.stderr)}
    except RuntimeError:
        return {}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500]


@dataclass
class LaunchReport:
    """What one `launch` call did. Run ids in plan order; `failed` is filled only when the call waited."""

    backend: str
    sweep_dir: str
    folder: str
    """The submitit folder of this launch (logs, pickles)."""
    submitted: list[str] = field(default_factory=list)
    skipped_done: list[str] = field(default_factory=list)
    skipped_running: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    job_ids: dict[str, str] = field(default_factory=dict)
    """run_id -> job id (Slurm "123_4"; local: the job's controller pid; "pool" for a detached pool)."""
    n_arrays: int = 0

    def __str__(self) -> str:
        return (f"{len(self.submitted)} submitted ({self.backend}), {len(self.skipped_done)} already done, "
                f"{len(self.skipped_running)} running elsewhere, {len(self.failed)} failed; "
                f"logs in {self.folder}")


def launch(plan: Plan, *, backend: str | None = None, max_parallel: int | None = None, wait: bool = True,
           verbose: bool = True, poll_s: float | None = None, signal_delay_s: int | None = None,
           **overrides: Any) -> LaunchReport:
    """Run every unfinished run of `plan` and return what was done.

    `overrides` are `[launch]` keys (timeout_min=5, partition="gpu", ...). Finished runs (a valid
    result.json) and runs locked by a live process are skipped; the others get spec.json and are submitted:
    locally to a pool of at most `max_parallel` jobs, on Slurm as job arrays. With `wait=False` the call
    returns after submission (locally a detached pool process keeps going); follow with `sweep_status`.
    """
    unknown = sorted(set(overrides) - _LAUNCH_FIELDS)
    if unknown:
        raise ConfigError(f"launch(): unknown option {unknown[0]} (valid: {', '.join(sorted(_LAUNCH_FIELDS))})")
    if backend is not None:
        overrides["backend"] = backend
    if max_parallel is not None:
        overrides["max_parallel"] = max_parallel
    if "sbatch_extra" in overrides:
        overrides["sbatch_extra"] = tuple(overrides["sbatch_extra"])
    sweep = dataclasses.replace(plan.sweep, launch=dataclasses.replace(plan.sweep.launch, **overrides))
    validate(sweep)  # same one-line errors as the TOML path; e.g. timeout_min=0 pends forever on Slurm
    cfg = sweep.launch
    if signal_delay_s is None:
        signal_delay_s = default_signal_delay_s(cfg.timeout_min)
    extra = parse_sbatch_extra(cfg.sbatch_extra) if cfg.backend == "slurm" else {}

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
    progress = _progress_for(plan, verbose and wait)
    say = progress.say if progress is not None else _printer(verbose)
    say(f"launch {sweep.name}: {len(plan.runs)} runs, {len(report.skipped_done)} done, "
        f"{len(report.skipped_running)} running elsewhere, {len(todo)} to submit ({cfg.backend})")
    if not todo:
        return report
    folder.mkdir(parents=True, exist_ok=True)
    if cfg.backend == "local":
        _launch_local(todo, cfg, folder, report, wait=wait, say=say, poll_s=poll_s or 0.2,
                      signal_delay_s=signal_delay_s, costs=costs, progress=progress)
    else:
        _launch_slurm(todo, cfg, folder, report, wait=wait, say=say, poll_s=poll_s or 2.0,
                      signal_delay_s=signal_delay_s, extra=extra, sweep_name=sweep.name,
                      progress=progress)
    return report


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


def parse_sbatch_extra(options: Sequence[str]) -> dict[str, Any]:
    """["--constraint=a100", "--exclusive", "--comment x"] -> submitit additional_parameters."""
    parsed: dict[str, Any] = {}
    for i, opt in enumerate(options):
        if not opt.startswith("--") or len(opt) < 3:
            raise ConfigError(f"[launch].sbatch_extra[{i}] = {opt!r}: must be a long sbatch option like "
                              "\"--constraint=a100\"")
        key, sep, value = opt[2:].replace(" ", "=", 1).partition("=")
        parsed[key] = value if sep else True
    return parsed


def _printer(verbose: bool) -> Callable[[str], None]:
    # Progress lines for a person watching a launch (like a progress bar), flushed so they show in logs.
    def say(msg: str) -> None:
        if verbose:
            print(printable(msg), file=sys.stderr, flush=True)  # run files' strings, escaped
    return say


def _log_of(run_dir: Path, job: submitit.Job | None = None) -> str:
    status = read_run(run_dir).status
    if status.get("log"):
        return str(status["log"])
    return str(job.paths.stderr) if job is not None else "?"


# ---------------------------------------------------------------------------------------------- local


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached a local pool: handled like Ctrl-C (jobs cancelled, runs resumable)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise Interrupted (as SIGINT raises KeyboardInterrupt), so the
    pool cancels its jobs instead of dying and leaving them training as orphans. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Point file descriptor 2 at `path` for the block. submitit's local job controllers inherit the
    launcher's stderr and print a KeyboardInterrupt traceback each when cancelled (or on Ctrl-C); started
    inside this block they write it to the launch folder instead of the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        os.dup2(fd, 2)
        os.close(fd)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def run_pool(items: Sequence[tuple[str, Callable[[], Any]]], folder: Path, *, max_parallel: int,
             timeout_min: float, signal_delay_s: int = 30, max_num_timeout: int = 3, poll_s: float = 0.2,
             on_done: Callable[[str, submitit.Job], None] | None = None, gpus_per_job: int = 0,
             visible_gpus: Sequence[int] = (), busy: Callable[[], int] | None = None,
             on_tick: Callable[[], None] | None = None, runs_per_gpu: int = 1) -> dict[str, submitit.Job]:
    """Run callables as submitit local jobs, never more than `max_parallel` at once.

    LocalExecutor alone starts every submission immediately; this keeps a queue and submits the next
    callable only when a slot frees. A failing job does not stop the others. Returns key -> finished job.
    With gpus_per_job > 0 each running job gets its own GPUs out of visible_gpus (LocalExecutor alone
    would give every job GPU 0, and gpus_per_node=0 hides all GPUs: silent CPU training); with
    runs_per_gpu > 1 up to that many jobs share one GPU (gpu_slots, take_gpus). `busy()` counts slots taken
    by jobs this pool did not start (runs a killed launcher's orphaned jobs still train); they count
    against max_parallel. SIGINT, SIGTERM or SIGHUP cancel every running job
    (each gets SIGINT and marks its run interrupted) before the exception propagates.
    """
    _check_pool(max_parallel, timeout_min, gpus_per_job, visible_gpus, runs_per_gpu)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free_gpus = gpu_slots(visible_gpus, runs_per_gpu)
    gpus_of: dict[str, list[int]] = {}
    executor = _local_executor(folder, timeout_min, signal_delay_s, max_num_timeout)
    queue = list(items)[::-1]
    running: dict[str, submitit.Job] = {}
    finished: dict[str, submitit.Job] = {}
    with _cancel_on_exit(running):
        _pool_loop(executor, queue, running, finished, folder, max_parallel=max_parallel, poll_s=poll_s,
                   on_done=on_done, gpus_per_job=gpus_per_job, free_gpus=free_gpus, gpus_of=gpus_of,
                   busy=busy, on_tick=on_tick)
    return finished


def _check_pool(max_parallel: int, timeout_min: float, gpus_per_job: int, visible_gpus: Sequence[int],
                runs_per_gpu: int = 1) -> None:
    if max_parallel < 1:
        raise ConfigError(f"run_pool: max_parallel = {max_parallel}: must be >= 1")
    if not timeout_min > 0:
        raise ConfigError(f"run_pool: timeout_min = {timeout_min}: must be > 0")
    if runs_per_gpu < 1 or (runs_per_gpu > 1 and gpus_per_job != 1):
        raise ConfigError(f"run_pool: runs_per_gpu = {runs_per_gpu}: must be >= 1, and 1 unless gpus_per_job = 1")
    if gpus_per_job and max_parallel * gpus_per_job > len(visible_gpus) * runs_per_gpu:
        what = f"GPU slots ({runs_per_gpu} runs per GPU)" if runs_per_gpu > 1 else "GPUs"
        raise LaunchError(f"[launch].gpus_per_job = {gpus_per_job} x max_parallel = {max_parallel} needs "
                          f"{max_parallel * gpus_per_job} {what}; this machine shows {len(visible_gpus)} "
                          f"({list(visible_gpus)})")


def gpu_slots(visible_gpus: Sequence[int], runs_per_gpu: int = 1) -> list[int]:
    """A local pool's free list of GPU slots: each visible GPU once per run it may hold at a time."""
    return [gpu for gpu in visible_gpus for _ in range(runs_per_gpu)]


def take_gpus(free_gpus: Sequence[int], n: int) -> tuple[list[int], list[int]]:
    """Pick `n` distinct GPUs for a job from the free slots, those with the most free slots first (ties in
    list order), so jobs spread over every GPU before any GPU holds two. Returns (taken, free slots left).

    With one slot per GPU this is the first `n` free GPUs, the pool's order before runs_per_gpu existed.
    """
    count = collections.Counter(free_gpus)
    first = {gpu: i for i, gpu in reversed(list(enumerate(free_gpus)))}
    taken = sorted(count, key=lambda gpu: (-count[gpu], first[gpu]))[:n]
    if len(taken) < n:
        raise LaunchError(f"a job needs {n} distinct GPUs; only {sorted(count)} have a free slot")
    left = list(free_gpus)
    for gpu in taken:
        left.remove(gpu)
    return taken, left


def _local_executor(folder: Path, timeout_min: float, signal_delay_s: int,
                    max_num_timeout: int) -> submitit.LocalExecutor:
    executor = submitit.LocalExecutor(folder=folder, max_num_timeout=max_num_timeout)
    # The local default limit is 2 minutes; always pass ours explicitly.
    executor.update_parameters(timeout_min=timeout_min, signal_delay_s=signal_delay_s, gpus_per_node=0)
    return executor


@contextlib.contextmanager
def _cancel_on_exit(running: dict[str, submitit.Job]) -> Iterator[None]:
    """SIGTERM/SIGHUP raise Interrupted in the block; on any exception every job still in `running` is
    cancelled (SIGINT: each marks its run interrupted and frees its lock) before it propagates."""
    try:
        with _stop_signals_interrupt():
            yield
    except BaseException:
        for job in running.values():  # interrupted launcher: do not leave orphans behind
            job.cancel(check=False)
        deadline = time.monotonic() + 5.0  # let each job mark its run interrupted and free its lock
        while time.monotonic() < deadline and not all(job.done() for job in running.values()):
            time.sleep(0.05)
        raise


def _pool_loop(executor: submitit.LocalExecutor, queue: list[tuple[str, Callable[[], Any]]],
               running: dict[str, submitit.Job], finished: dict[str, submitit.Job], folder: Path, *,
               max_parallel: int, poll_s: float, on_done: Callable[[str, submitit.Job], None] | None,
               gpus_per_job: int, free_gpus: list[int], gpus_of: dict[str, list[int]],
               busy: Callable[[], int] | None, on_tick: Callable[[], None] | None = None) -> None:
    """The pool's scheduling loop: fill free slots from the queue, collect finished jobs."""
    while queue or running:
        if on_tick is not None:
            on_tick()
        taken = busy() if busy is not None and queue else 0
        while queue and len(running) + taken < max_parallel:
            key, fn = queue.pop()
            running[key] = _submit(executor, key, fn, folder, gpus_per_job, free_gpus, gpus_of)
        time.sleep(poll_s)
        for key, job in list(running.items()):
            if job.done():
                finished[key] = running.pop(key)
                free_gpus += gpus_of.pop(key, [])
                if on_done is not None:
                    on_done(key, job)


def _submit(executor: submitit.LocalExecutor, key: str, fn: Callable[[], Any], folder: Path, gpus_per_job: int,
            free_gpus: list[int], gpus_of: dict[str, list[int]]) -> submitit.Job:
    """Submit one pool job: with gpus_per_job its own GPUs taken from free_gpus (recorded in gpus_of[key], given
    back when it ends), and its controller's stderr in the launch folder (see _stderr_to)."""
    if gpus_per_job:
        gpus_of[key], free_gpus[:] = take_gpus(free_gpus, gpus_per_job)
        executor.update_parameters(gpus_per_node=gpus_per_job, visible_gpus=gpus_of[key])
    with _stderr_to(folder / "controllers.log"):
        return executor.submit(fn)


def run_workers(todo: Sequence[Path], folder: Path, *, costs: dict[str, float], max_parallel: int,
                timeout_min: float, threads_per_job: int = 1, signal_delay_s: int = 30, max_num_timeout: int = 3,
                poll_s: float = 0.2, on_run: Callable[[Path, submitit.Job], None] | None = None,
                gpus_per_job: int = 0, visible_gpus: Sequence[int] = (), busy: Callable[[], int] | None = None,
                on_tick: Callable[[], None] | None = None, job_cls: type | None = None,
                runs_per_gpu: int = 1) -> set[str]:
    """Train the runs of `todo` (longest first by `costs`) on at most `max_parallel` TrainWorker processes.

    `on_run(run_dir, worker_job)` is called once per run, when its worker ended it or died while training it
    (as run_pool's on_done per job). A worker that dies before taking any run takes the next one down with
    it (that run is marked failed with the job's error), so a job that cannot start fails runs one by one, as
    one process per run would, instead of being restarted forever. Busy slots, GPUs, signals and
    cancellation as in run_pool. Returns the run ids it reported.
    """
    _check_pool(max_parallel, timeout_min, gpus_per_job, visible_gpus, runs_per_gpu)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    queue = WorkQueue.write(folder, [(Path(d), costs.get(Path(d).name, 0.0)) for d in todo])
    by_name = {d.name: d for d in queue.order}
    executor = _local_executor(folder, timeout_min, signal_delay_s, max_num_timeout)
    # A worker stops taking runs that would not fit before the time-limit signal (start-up included).
    time_limit_s = max(1.0, timeout_min * 60 - signal_delay_s - 10)
    free_gpus = gpu_slots(visible_gpus, runs_per_gpu)
    gpus_of: dict[str, list[int]] = {}
    running: dict[str, submitit.Job] = {}
    jobs: dict[str, submitit.Job] = {}
    reported: set[str] = set()

    def report(name: str, job: submitit.Job) -> None:
        if name not in reported:
            reported.add(name)
            queue.end(by_name[name])
            if on_run is not None:
                on_run(by_name[name], job)

    def collect() -> None:
        claims, ended = queue.claims(), queue.ended()
        for name in [d.name for d in queue.order if d.name in ended and d.name in claims]:
            if claims[name] in jobs:
                report(name, jobs[claims[name]])
        for wid, job in list(running.items()):
            if not job.done():
                continue
            del running[wid]
            free_gpus.extend(gpus_of.pop(wid, []))
            mine = [n for n, w in claims.items() if w == wid]
            for name in mine:  # ended or not: the worker is gone, so is any run it was training
                report(name, job)
            if not mine and _job_failed(job):
                victim = next((d for d in queue.order if d.name not in claims), None)
                if victim is not None and queue.try_claim(victim, wid):
                    report(victim.name, job)

    n_workers = 0
    with _cancel_on_exit(running):
        while True:
            collect()
            if on_tick is not None:
                on_tick()
            claims, ended = queue.claims(), queue.ended()
            unclaimed = sum(d.name not in claims for d in queue.order)
            if not unclaimed and not running:
                break
            busy_now = {w for n, w in claims.items() if n not in ended}
            idle = sum(wid not in busy_now for wid in running)  # starting up, or between two runs
            taken = busy() if busy is not None and unclaimed else 0
            while unclaimed > idle and len(running) + taken < max_parallel:
                wid = f"w{n_workers}"
                n_workers += 1
                worker = TrainWorker(folder, wid, threads_per_job, pool_pid=os.getpid(), time_limit_s=time_limit_s,
                                     job_cls=job_cls)
                running[wid] = jobs[wid] = _submit(executor, wid, worker, folder, gpus_per_job, free_gpus, gpus_of)
                idle += 1
            time.sleep(poll_s)
    return reported


def _job_failed(job: submitit.Job) -> bool:
    try:
        return job.exception() is not None
    except Exception:  # no result pickle: killed
        return True


def _launch_local(todo: list[Path], cfg: LaunchConfig, folder: Path, report: LaunchReport, *, wait: bool,
                  say: Callable[[str], None], poll_s: float, signal_delay_s: int, costs: dict[str, float],
                  progress: LiveProgress | None = None) -> None:
    # Runs locked by a live process when we started (e.g. the orphaned jobs of a launcher killed with -9)
    # occupy slots of this machine: they count against max_parallel until they end.
    elsewhere = [Path(report.sweep_dir) / r for r in report.skipped_running]
    if not wait:
        # The pool must outlive this call: hand it to a detached process that runs the same code.
        manifest = folder / "pool.json"
        write_json_atomic(manifest, {
            "run_dirs": [str(d) for d in todo], "max_parallel": cfg.max_parallel,
            "threads_per_job": cfg.threads_per_job, "timeout_min": cfg.timeout_min,
            "max_num_timeout": cfg.max_num_timeout, "signal_delay_s": signal_delay_s, "poll_s": poll_s,
            "gpus_per_job": cfg.gpus_per_job, "runs_per_gpu": cfg.runs_per_gpu,
            "elsewhere": [str(d) for d in elsewhere],
            "process_per_run": cfg.process_per_run, "costs": {d.name: costs.get(d.name, 0.0) for d in todo},
            "est_flops_per_s": cfg.est_flops_per_s})
        with open(folder / "pool.log", "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "scaling.launch", str(manifest)], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        report.job_ids = {d.name: f"pool:{proc.pid}" for d in todo}
        say(f"local pool started in the background (pid {proc.pid}, log {folder / 'pool.log'})")
        return
    failed = _local_pool(todo, folder, max_parallel=cfg.max_parallel, threads_per_job=cfg.threads_per_job,
                         timeout_min=cfg.timeout_min, max_num_timeout=cfg.max_num_timeout,
                         signal_delay_s=signal_delay_s, poll_s=poll_s, say=say, job_ids=report.job_ids,
                         gpus_per_job=cfg.gpus_per_job, elsewhere=elsewhere, costs=costs,
                         process_per_run=cfg.process_per_run, progress=progress, runs_per_gpu=cfg.runs_per_gpu)
    report.failed = [d.name for d in todo if d.name in failed]


def _local_pool(todo: list[Path], folder: Path, *, max_parallel: int, threads_per_job: int, timeout_min: float,
                max_num_timeout: int, signal_delay_s: int, poll_s: float, say: Callable[[str], None],
                job_ids: dict[str, str], gpus_per_job: int = 0, elsewhere: Sequence[Path] = (),
                costs: dict[str, float] | None = None, process_per_run: bool = False,
                progress: LiveProgress | None = None, runs_per_gpu: int = 1) -> set[str]:
    """Train `todo` (already in the order to start) on the local pool: one TrainWorker per slot, or with
    process_per_run one TrainJob process per run; prints a line per finished run and the progress line."""
    n_done = 0
    warned = False

    def busy() -> int:
        nonlocal warned
        n = sum(RunLock(d).is_held_elsewhere() for d in elsewhere)
        if n and not warned:
            warned = True
            say(f"{n} run(s) of this sweep are being trained by other processes (e.g. jobs left by a killed "
                f"launcher); they count against max_parallel = {max_parallel}")
        return n

    failed: set[str] = set()

    def on_done(key: str, job: submitit.Job) -> None:
        nonlocal n_done
        n_done += 1
        run_dir = Path(key)
        job_ids[run_dir.name] = str(job.job_id)
        state = run_state(run_dir)
        if state not in FINAL_STATES and RunLock(run_dir).is_held_elsewhere():
            # Our job found the run locked: another launch is training it. Not a failure; its status stays.
            say(f"[{n_done}/{len(todo)}] {run_dir.name}: being trained by another launch")
            return
        if state not in FINAL_STATES:
            if state != "failed":  # died without a word (killed, import error, ...): say so on disk
                error = _job_error(job) if job.done() else (f"job {job.job_id} ended the run without a result "
                                                            "or an error")
                write_status(run_dir, "failed", error=error, log=str(job.paths.stderr),
                             stdout=str(job.paths.stdout), stderr=str(job.paths.stderr), job_id=str(job.job_id))
            failed.add(run_dir.name)
            say(f"[{n_done}/{len(todo)}] FAILED {run_dir.name}: {read_run(run_dir).error or ''} "
                f"(log: {_log_of(run_dir, job)})")
        else:
            loss = (read_result(run_dir) or {}).get("val_loss", math.nan)
            say(f"[{n_done}/{len(todo)}] {state} {run_dir.name} val_loss={loss:.4f}")

    def on_done_and_show(key: str, job: submitit.Job) -> None:
        on_done(key, job)
        if progress is not None:
            progress.tick(force=True)

    gpus = local_gpus() if gpus_per_job else ()
    tick = progress.tick if progress is not None else None
    try:
        if process_per_run:
            items = [(str(d), TrainJob(d, threads_per_job)) for d in todo]
            run_pool(items, folder, max_parallel=max_parallel, timeout_min=timeout_min,
                     signal_delay_s=signal_delay_s, max_num_timeout=max_num_timeout, poll_s=poll_s,
                     on_done=on_done_and_show, gpus_per_job=gpus_per_job, visible_gpus=gpus,
                     busy=busy if elsewhere else None, on_tick=tick, runs_per_gpu=runs_per_gpu)
        else:
            run_workers(todo, folder, costs=costs or {}, max_parallel=max_parallel, timeout_min=timeout_min,
                        threads_per_job=threads_per_job, signal_delay_s=signal_delay_s,
                        max_num_timeout=max_num_timeout, poll_s=poll_s,
                        on_run=lambda d, job: on_done_and_show(str(d), job), gpus_per_job=gpus_per_job,
                        visible_gpus=gpus, busy=busy if elsewhere else None, on_tick=tick, job_cls=TrainJob,
                        runs_per_gpu=runs_per_gpu)
    except KeyboardInterrupt as exc:
        _mark_interrupted(todo, str(exc) or "SIGINT")
        raise
    finally:
        if progress is not None:
            progress.close()
    return failed


def _mark_interrupted(todo: Sequence[Path], signame: str) -> None:
    """After the pool was stopped: every run it had not finished reads `interrupted` (resumed by a rerun),
    not `failed` without an error (a job killed before it could say so) or `submitted` for ten minutes."""
    for run_dir in todo:
        status = read_json(run_dir / STATUS) or {}
        if (status.get("state") in ("submitted", "running", "requeued") and read_result(run_dir) is None
                and not RunLock(run_dir).is_held_elsewhere()):
            write_status(run_dir, "interrupted",
                         error=f"interrupted: its launcher was stopped ({signame}); rerun to resume")


def local_gpus() -> list[int]:
    """GPU indices this machine offers, without importing torch (CUDA_VISIBLE_DEVICES, else nvidia-smi)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(x) for x in visible.split(",") if x.strip().isdigit()]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [i for i, line in enumerate(l for l in out.splitlines() if l.startswith("GPU "))]


def _job_error(job: submitit.Job) -> str:
    try:
        exc = job.exception()
    except Exception as err:  # no result pickle at all: the process was killed
        return f"job {job.job_id} ended without a result ({_one_line(err)[:200]})"
    return _one_line(exc) if exc is not None else f"job {job.job_id} finished without writing result.json"


def _pool_main(manifest: Path) -> None:
    """Entry point of the detached local pool (`launch(..., backend="local", wait=False)`)."""
    m = json.loads(Path(manifest).read_text())
    _local_pool([Path(d) for d in m["run_dirs"]], Path(manifest).parent, max_parallel=m["max_parallel"],
                threads_per_job=m["threads_per_job"], timeout_min=m["timeout_min"],
                max_num_timeout=m["max_num_timeout"], signal_delay_s=m["signal_delay_s"], poll_s=m["poll_s"],
                say=_printer(True), job_ids={}, gpus_per_job=m.get("gpus_per_job", 0),
                elsewhere=[Path(d) for d in m.get("elsewhere", [])], costs=m.get("costs", {}),
                process_per_run=m.get("process_per_run", False), runs_per_gpu=m.get("runs_per_gpu", 1),
                progress=LiveProgress(lambda: sweep_status(Path(m["run_dirs"][0]).parent),
                                      slots=m["max_parallel"], est_flops_per_s=m.get("est_flops_per_s", 5e10),
                                      stream=sys.stdout))


# ---------------------------------------------------------------------------------------------- slurm


def make_slurm_executor(cfg: LaunchConfig, folder: Path, *, signal_delay_s: int, extra: dict[str, Any],
                        job_name: str) -> submitit.SlurmExecutor:
    """A SlurmExecutor with every [launch] option applied (the cluster is explicit: no auto-detection)."""
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=cfg.max_num_timeout)
    threads = cfg.threads_per_job
    params: dict[str, Any] = dict(
        time=cfg.timeout_min, cpus_per_task=cfg.cpus_per_job or threads, nodes=1,
        ntasks_per_node=tasks_per_job(cfg),  # > 1: that many processes train each run together (DDP)
        array_parallelism=cfg.max_parallel, signal_delay_s=signal_delay_s, job_name=job_name,
        # the batch script exports the thread limits before python (and torch) start
        setup=[f"export {var}={threads}" for var in THREAD_ENV_VARS],
    )
    if cfg.partition:
        params["partition"] = cfg.partition
    if cfg.gpus_per_job:
        params["gpus_per_node"] = cfg.gpus_per_job
    if cfg.mem_gb:
        params["mem"] = f"{max(1, round(cfg.mem_gb * 1024))}M"
    if cfg.account:
        params["account"] = cfg.account
    if cfg.qos:
        params["qos"] = cfg.qos
    if extra:
        params["additional_parameters"] = extra
    executor.update_parameters(**params)
    return executor


def _launch_slurm(todo: list[Path], cfg: LaunchConfig, folder: Path, report: LaunchReport, *, wait: bool,
                  say: Callable[[str], None], poll_s: float, signal_delay_s: int, extra: dict[str, Any],
                  sweep_name: str, progress: LiveProgress | None = None) -> None:
    executor = make_slurm_executor(cfg, folder, signal_delay_s=signal_delay_s, extra=extra,
                                   job_name=f"scaling-{sweep_name}")
    jobs: dict[Path, submitit.Job] = {}
    for start in range(0, len(todo), cfg.max_array_size):
        chunk = todo[start:start + cfg.max_array_size]
        try:
            with executor.batch():
                chunk_jobs = [executor.submit(TrainJob(d, cfg.threads_per_job)) for d in chunk]
        except Exception as exc:
            for d in todo[start:]:
                write_status(d, "failed", error=f"sbatch failed: {_one_line(exc)}")
            raise LaunchError(f"submitting {len(chunk)} runs to Slurm failed: {_one_line(exc)}") from exc
        jobs.update(zip(chunk, chunk_jobs))
        report.n_arrays += 1
    report.job_ids = {d.name: str(j.job_id) for d, j in jobs.items()}
    write_json_atomic(folder / "jobs.json", report.job_ids)
    say(f"submitted {len(jobs)} runs as {report.n_arrays} Slurm array(s): "
        f"{sorted({j.job_id.split('_')[0] for j in jobs.values()})}, logs in {folder}")
    if wait:
        try:
            report.failed = _wait_slurm(jobs, say=say, poll_s=poll_s, progress=progress)
        finally:
            if progress is not None:
                progress.close()


def _wait_slurm(jobs: dict[Path, submitit.Job], *, say: Callable[[str], None], poll_s: float,
                progress: LiveProgress | None = None) -> list[str]:
    """Poll run folders until every run is final or failed; Slurm state only detects silent deaths."""
    left = dict(jobs)
    failed: list[str] = []
    n_done = 0
    last_sacct = 0.0
    while left:
        if progress is not None:
            progress.tick()
        time.sleep(poll_s)
        check_slurm = time.time() - last_sacct > max(5 * poll_s, 10.0)
        slurm_states: dict[Path, str] = {}
        if check_slurm:
            last_sacct = time.time()
            for run_dir, job in left.items():
                try:
                    slurm_states[run_dir] = job.state.split(" ")[0]  # e.g. "CANCELLED by 0"
                except Exception:
                    slurm_states[run_dir] = "UNKNOWN"
        for run_dir, job in list(left.items()):
            run = read_run(run_dir)  # read after the Slurm state: a COMPLETED job wrote its result before
            state = run.state
            if state in FINAL_STATES:
                n_done += 1
                loss = run.result.get("val_loss", math.nan)
                say(f"[{n_done}/{len(jobs)}] {state} {run_dir.name} val_loss={loss:.4f}")
            elif state == "failed" or slurm_states.get(run_dir) in _SLURM_DEAD:
                if state != "failed":
                    write_status(run_dir, "failed", job_id=str(job.job_id), log=str(job.paths.stderr),
                                 error=f"Slurm job {job.job_id} ended {slurm_states[run_dir]} without a result")
                n_done += 1
                failed.append(run_dir.name)
                say(f"[{n_done}/{len(jobs)}] FAILED {run_dir.name}: {read_run(run_dir).error or ''} "
                    f"(log: {_log_of(run_dir, job)})")
            else:
                continue
            del left[run_dir]
            if progress is not None:
                progress.tick(force=True)
    return failed


# ---------------------------------------------------------------------------------------------- status


def sweep_status(plan_or_sweep_dir: Plan | str | Path) -> pd.DataFrame:
    """One row per run, from disk alone: done / running / failed / diverged / damaged / interrupted / pending
    (scaling.results.sweep_status). Given a Plan, planned runs without a folder yet are listed as pending;
    given a folder, every run folder with a spec.json."""
    if isinstance(plan_or_sweep_dir, Plan):
        return results.sweep_status({s.run_id: s.to_dict() for s in plan_or_sweep_dir.runs},
                                    plan_or_sweep_dir.sweep.sweep_dir)
    return results.sweep_status(plan_or_sweep_dir)


@dataclass(frozen=True)
class Progress:
    """Where a sweep stands (summarize): counts, FLOPs, measured speed and the time left."""

    n_done: int
    """Runs done or diverged (final)."""
    n_running: int
    n_pending: int
    """Runs still to train: pending, submitted, requeued, interrupted or damaged."""
    n_failed: int
    flops_done: float
    """FLOPs of final runs plus what running (and interrupted) runs have trained so far."""
    flops_total: float
    flops_per_s: float
    """Speed of one job, FLOP/s: FLOPs trained / seconds taken, over finished and running runs."""
    measured: bool
    """False before any run logged a step: flops_per_s is then [launch].est_flops_per_s."""
    eta_s: float
    """Seconds until the last run ends if `slots` jobs train the remaining runs longest first."""
    slots: int


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return 0.0
    return v if math.isfinite(v) else 0.0


def summarize(table: pd.DataFrame, *, slots: int, est_flops_per_s: float) -> Progress:
    """The progress of a sweep from its status table (sweep_status: state, n_params, flops, flops_done,
    time_s); pure, so the ETA is tested without training.

    Speed: each model size has its own (FLOP/s differ by size, small models waste more on overheads): the
    FLOPs its finished and running runs trained over the seconds they took; a size with no measurement yet
    uses the speed over all sizes, or est_flops_per_s before any. The ETA replays the launcher's schedule:
    running runs keep their slot for their remaining FLOPs, then the remaining runs go longest first to
    whichever slot frees first (LPT list scheduling, as the pool does), and the ETA is when the last ends.
    Failed runs are not counted as work left (a rerun retries them).
    """
    rows = [dict(state=r.get("state"), n=_num(r.get("n_params")), flops=_num(r.get("flops")),
                 done=_num(r.get("flops_done")), secs=_num(r.get("time_s"))) for r in table.to_dict("records")]
    by_size: dict[float, list[float]] = {}
    for r in rows:
        if r["done"] > 0 and r["secs"] > 0:
            acc = by_size.setdefault(r["n"], [0.0, 0.0])
            acc[0] += r["done"]
            acc[1] += r["secs"]
    total_done, total_secs = sum(a[0] for a in by_size.values()), sum(a[1] for a in by_size.values())
    measured = total_secs > 0
    overall = total_done / total_secs if measured else float(est_flops_per_s)

    def rate(n: float) -> float:
        acc = by_size.get(n)
        return acc[0] / acc[1] if acc else overall

    running = [r for r in rows if r["state"] == "running"]
    left = [r for r in rows if r["state"] in ("pending", "interrupted", "damaged")]
    n_slots = max(1, int(slots), len(running))
    free = sorted(max(0.0, r["flops"] - r["done"]) / rate(r["n"]) for r in running)
    free += [0.0] * (n_slots - len(free))
    heapq.heapify(free)
    for r in sorted(left, key=lambda r: -r["flops"]):
        heapq.heappush(free, heapq.heappop(free) + max(0.0, r["flops"] - r["done"]) / rate(r["n"]))
    eta = max(free) if running or left else 0.0
    final = [r for r in rows if r["state"] in FINAL_STATES]
    return Progress(
        n_done=len(final), n_running=len(running), n_pending=len(left),
        n_failed=sum(r["state"] == "failed" for r in rows),
        flops_done=sum(r["flops"] for r in final) + sum(r["done"] for r in running + left),
        flops_total=sum(r["flops"] for r in rows), flops_per_s=overall, measured=measured, eta_s=eta,
        slots=int(slots))


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def progress_line(p: Progress, elapsed_s: float | None = None) -> str:
    """One line: "12/24 done, 2 running, 10 pending | 1.2e13/3e13 FLOPs (40%) | 5e10 FLOP/s per job | ETA 3m20s"."""
    failed = f", {p.n_failed} failed" if p.n_failed else ""
    share = f" ({p.flops_done / p.flops_total:.0%})" if p.flops_total > 0 else ""
    speed = f"{p.flops_per_s:.3g} FLOP/s per job" + ("" if p.measured else " (estimate, nothing measured yet)")
    eta = (f"ETA {_duration(p.eta_s)} on {p.slots} slot{'s' if p.slots != 1 else ''}"
           if p.n_running or p.n_pending else "nothing left to train")
    elapsed = f"{_duration(elapsed_s)} elapsed | " if elapsed_s is not None else ""
    total = p.n_done + p.n_running + p.n_pending + p.n_failed
    return (f"{p.n_done}/{total} done, {p.n_running} running, {p.n_pending} pending{failed} | "
            f"{p.flops_done:.3g}/{p.flops_total:.3g} FLOPs{share} | {speed} | {elapsed}{eta}")


class LiveProgress:
    """The launcher's progress line: on a terminal one line rewritten in place (\r) about every second; in a
    log a plain line every `every_s` seconds and after each finished run (tick(force=True))."""

    def __init__(self, table: Callable[[], pd.DataFrame], *, slots: int, est_flops_per_s: float,
                 stream: Any = None, every_s: float = 10.0):
        self.table, self.slots, self.est = table, slots, est_flops_per_s
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = 1.0 if self.tty else every_s
        self.t0 = time.monotonic()
        self.last = -math.inf
        self.cost = 0.0  # seconds one summary took: a huge sweep refreshes less often
        self.shown = False

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < max(self.every_s, 20 * self.cost):
            return
        self.last = now
        line = "progress: " + progress_line(summarize(self.table(), slots=self.slots, est_flops_per_s=self.est),
                                            elapsed_s=now - self.t0)
        self.cost = time.monotonic() - now
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.shown = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def say(self, msg: str) -> None:
        """A message line; on a terminal the live line is cleared first and redrawn by the next tick."""
        if self.tty and self.shown:
            self.stream.write("\r\033[K")
            self.shown = False
            self.last = -math.inf
        print(printable(msg), file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


def _progress_for(plan: Plan, verbose: bool) -> LiveProgress | None:
    if not verbose:
        return None
    return LiveProgress(lambda: sweep_status(plan), slots=plan.sweep.launch.max_parallel,
                        est_flops_per_s=plan.sweep.launch.est_flops_per_s)


if __name__ == "__main__":  # the detached local pool: python -m scaling.launch <folder>/pool.json
    # Import ourselves by name so the jobs pickle scaling.launch.TrainJob, not __main__.TrainJob.
    from scaling.launch import _pool_main as pool_main

    pool_main(Path(sys.argv[1]))
