"""The Slurm backend: each run one task of a job array, chunked below max_array_size, watched from its files.

submitit's job states are used only to notice a job that died before it could write its own status;
UNKNOWN, PREEMPTED or a reused job id never count as finished.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import submitit

from scaling.config import LaunchConfig, tasks_per_job
from scaling.errors import ConfigError, LaunchError
from scaling.launch.backend import LaunchContext, LaunchOutcome
from scaling.launch.jobs import THREAD_ENV_VARS, TrainJob, log_of, one_line
from scaling.launch.progress import LiveProgress
from scaling.results import FINAL_STATES, read_run, write_json_atomic, write_status

# Slurm states after which a job will not write anything more (a requeued job is PENDING/REQUEUED again).
_SLURM_DEAD = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
               "TIMEOUT"}


class SlurmArrays:
    """`[launch].backend = "slurm"`: one run per array task; its sbatch_extra is parsed (and refused) when built."""

    def __init__(self, cfg: LaunchConfig):
        self.cfg = cfg
        self.extra = parse_sbatch_extra(cfg.sbatch_extra)

    def run(self, todo: Sequence[Path], ctx: LaunchContext) -> LaunchOutcome:
        cfg = self.cfg
        executor = make_slurm_executor(cfg, ctx.folder, signal_delay_s=ctx.signal_delay_s, extra=self.extra,
                                       job_name=f"scaling-{ctx.sweep_name}")
        jobs: dict[Path, submitit.Job] = {}
        n_arrays = 0
        for start in range(0, len(todo), cfg.max_array_size):
            chunk = todo[start:start + cfg.max_array_size]
            try:
                with executor.batch():
                    chunk_jobs = [executor.submit(TrainJob(d, cfg.threads_per_job)) for d in chunk]
            except Exception as exc:
                for d in todo[start:]:
                    write_status(d, "failed", error=f"sbatch failed: {one_line(exc)}")
                raise LaunchError(f"submitting {len(chunk)} runs to Slurm failed: {one_line(exc)}") from exc
            jobs.update(zip(chunk, chunk_jobs))
            n_arrays += 1
        job_ids = {d.name: str(j.job_id) for d, j in jobs.items()}
        write_json_atomic(ctx.folder / "jobs.json", job_ids)
        ctx.say(f"submitted {len(jobs)} runs as {n_arrays} Slurm array(s): "
                f"{sorted({j.job_id.split('_')[0] for j in jobs.values()})}, logs in {ctx.folder}")
        failed: list[str] = []
        if ctx.wait:
            try:
                failed = _wait_slurm(jobs, say=ctx.say, poll_s=ctx.poll_s or 2.0, progress=ctx.progress)
            finally:
                if ctx.progress is not None:
                    ctx.progress.close()
        return LaunchOutcome(job_ids=job_ids, failed=failed, n_arrays=n_arrays)


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
                    f"(log: {log_of(run_dir, job)})")
            else:
                continue
            del left[run_dir]
            if progress is not None:
                progress.tick(force=True)
    return failed

