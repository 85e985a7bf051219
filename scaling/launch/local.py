"""The local backend: trains a launch's runs on this machine's bounded pool, waiting or in a detached process."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import submitit

from scaling.config import LaunchConfig
from scaling.launch.backend import LaunchContext, LaunchOutcome
from scaling.launch.jobs import TrainJob, log_of, one_line
from scaling.launch.pool import local_gpus, run_pool, run_workers
from scaling.launch.progress import LiveProgress, printer, sweep_status
from scaling.results import FINAL_STATES, STATUS, RunLock, read_json, read_result, read_run, run_state
from scaling.results import write_json_atomic, write_status

POOL_MANIFEST = "pool.json"


class LocalPool:
    """`[launch].backend = "local"`: at most max_parallel jobs on this machine (scaling.launch.pool)."""

    def __init__(self, cfg: LaunchConfig):
        self.cfg = cfg

    def run(self, todo: Sequence[Path], ctx: LaunchContext) -> LaunchOutcome:
        todo = list(todo)
        poll_s = ctx.poll_s or 0.2
        if not ctx.wait:
            return self._detach(todo, ctx, poll_s)
        job_ids: dict[str, str] = {}
        failed = train_locally(todo, ctx.folder, self.cfg, signal_delay_s=ctx.signal_delay_s, poll_s=poll_s,
                               say=ctx.say, job_ids=job_ids, elsewhere=ctx.elsewhere, costs=ctx.costs,
                               progress=ctx.progress)
        return LaunchOutcome(job_ids=job_ids, failed=[d.name for d in todo if d.name in failed])

    def _detach(self, todo: list[Path], ctx: LaunchContext, poll_s: float) -> LaunchOutcome:
        """The pool must outlive this call: hand it to a detached process that runs the same code
        (`python -m scaling.launch <folder>/pool.json`), with the config whole in the manifest."""
        manifest = ctx.folder / POOL_MANIFEST
        write_json_atomic(manifest, {
            "launch": dataclasses.asdict(self.cfg), "run_dirs": [str(d) for d in todo],
            "signal_delay_s": ctx.signal_delay_s, "poll_s": poll_s, "elsewhere": [str(d) for d in ctx.elsewhere],
            "costs": {d.name: ctx.costs.get(d.name, 0.0) for d in todo}})
        with open(ctx.folder / "pool.log", "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "scaling.launch", str(manifest)], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        ctx.say(f"local pool started in the background (pid {proc.pid}, log {ctx.folder / 'pool.log'})")
        return LaunchOutcome(job_ids={d.name: f"pool:{proc.pid}" for d in todo})


def pool_main(manifest: Path) -> None:
    """Entry point of the detached local pool (`launch(..., backend="local", wait=False)`)."""
    m = json.loads(Path(manifest).read_text())
    fields = m["launch"]
    cfg = LaunchConfig(**{**fields, "sbatch_extra": tuple(fields.get("sbatch_extra", ()))})  # as launch() had it
    run_dirs = [Path(d) for d in m["run_dirs"]]
    train_locally(run_dirs, Path(manifest).parent, cfg, signal_delay_s=m["signal_delay_s"], poll_s=m["poll_s"],
                  say=printer(True), job_ids={}, elsewhere=[Path(d) for d in m["elsewhere"]], costs=m["costs"],
                  progress=LiveProgress(lambda: sweep_status(run_dirs[0].parent), slots=cfg.max_parallel,
                                        est_flops_per_s=cfg.est_flops_per_s, stream=sys.stdout))


def train_locally(todo: list[Path], folder: Path, cfg: LaunchConfig, *, signal_delay_s: int, poll_s: float,
                  say: Callable[[str], None], job_ids: dict[str, str], elsewhere: Sequence[Path] = (),
                  costs: dict[str, float] | None = None, progress: LiveProgress | None = None) -> set[str]:
    """Train `todo` (already in the order to start) on the local pool: one TrainWorker per slot, or with
    cfg.process_per_run one TrainJob process per run; prints a line per finished run and the progress line.
    Fills `job_ids` (run_id -> job id) and returns the run ids that failed."""
    n_done = 0
    warned = False

    def busy() -> int:
        # Runs locked by a live process when we started (e.g. the orphaned jobs of a launcher killed with -9)
        # occupy slots of this machine: they count against max_parallel until they end.
        nonlocal warned
        n = sum(RunLock(d).is_held_elsewhere() for d in elsewhere)
        if n and not warned:
            warned = True
            say(f"{n} run(s) of this sweep are being trained by other processes (e.g. jobs left by a killed "
                f"launcher); they count against max_parallel = {cfg.max_parallel}")
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
                f"(log: {log_of(run_dir, job)})")
        else:
            loss = (read_result(run_dir) or {}).get("val_loss", math.nan)
            say(f"[{n_done}/{len(todo)}] {state} {run_dir.name} val_loss={loss:.4f}")

    def on_done_and_show(key: str, job: submitit.Job) -> None:
        on_done(key, job)
        if progress is not None:
            progress.tick(force=True)

    gpus = local_gpus() if cfg.gpus_per_job else ()
    tick = progress.tick if progress is not None else None
    try:
        if cfg.process_per_run:
            items = [(str(d), TrainJob(d, cfg.threads_per_job)) for d in todo]
            run_pool(items, folder, cfg, signal_delay_s=signal_delay_s, poll_s=poll_s, on_done=on_done_and_show,
                     visible_gpus=gpus, busy=busy if elsewhere else None, on_tick=tick)
        else:
            run_workers(todo, folder, cfg, costs=costs or {}, signal_delay_s=signal_delay_s, poll_s=poll_s,
                        on_run=lambda d, job: on_done_and_show(str(d), job), visible_gpus=gpus,
                        busy=busy if elsewhere else None, on_tick=tick, job_cls=TrainJob)
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


def _job_error(job: submitit.Job) -> str:
    try:
        exc = job.exception()
    except Exception as err:  # no result pickle at all: the process was killed
        return f"job {job.job_id} ended without a result ({one_line(err)[:200]})"
    return one_line(exc) if exc is not None else f"job {job.job_id} finished without writing result.json"

