"""What each job runs: TrainJob (one run), TrainWorker (one local slot's runs) and their shared WorkQueue.

Per-run files under results/<sweep>/<run_id>/ are the truth (`scaling.results.run_state`). Nothing here
imports torch at module import: jobs import `scaling.train` when they start, after setting their thread counts.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission

from scaling.results import STATUS, RunLock, read_json, read_result, read_run, read_spec, write_json_atomic, write_status

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


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
        info = job_info()
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
                write_status(run_dir, "failed", error=one_line(exc), **info)
            raise

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Called by submitit on timeout or preemption (USR2): save, mark requeued, resubmit the same args."""
        _mark_requeued(Path(self.run_dir), _checkpoint_active_run())
        return DelayedSubmission(TrainJob(self.run_dir, self.num_threads))

    def __repr__(self) -> str:
        return f"TrainJob({self.run_dir!r}, num_threads={self.num_threads})"


def _mark_requeued(run_dir: Path, saved: bool) -> None:
    """status.json after a timeout or preemption: requeued, whether this signal saved a checkpoint (False when
    it came during start-up or inside an optimizer update: the checkpoint on disk is then the resume point),
    and how many times this submission has been requeued."""
    requeues = int((read_json(run_dir / STATUS) or {}).get("requeues", 0)) + 1
    write_status(run_dir, "requeued", checkpoint_saved=bool(saved), requeues=requeues, **job_info())


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
            _mark_requeued(Path(self.current), saved)
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


def job_info() -> dict[str, str]:
    """Job id and log paths of the submitit job we run in ({} outside submitit)."""
    try:
        env = submitit.JobEnvironment()
        paths = env.paths
        return {"job_id": str(env.job_id), "log": str(paths.stderr), "stdout": str(paths.stdout),
                "stderr": str(paths.stderr)}
    except RuntimeError:
        return {}


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500]


def log_of(run_dir: Path, job: submitit.Job | None = None) -> str:
    """The log a person should read for a run: the one its status names, else its job's stderr."""
    status = read_run(run_dir).status
    if status.get("log"):
        return str(status["log"])
    return str(job.paths.stderr) if job is not None else "?"
