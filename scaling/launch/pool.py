"""The bounded local pool: at most max_parallel submitit jobs at once, each with its own GPUs, stopped by signals.

`run_pool` runs any callables (one process each); `run_workers` trains runs on one TrainWorker process per
slot. Both take the validated `[launch]` config whole (scaling.config_rules checked its values where they
entered); what only this machine can tell, its GPUs, is checked here.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import submitit

from scaling.config import LaunchConfig
from scaling.errors import LaunchError
from scaling.launch.jobs import TrainWorker, WorkQueue



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


def run_pool(items: Sequence[tuple[str, Callable[[], Any]]], folder: Path, cfg: LaunchConfig, *,
             signal_delay_s: int = 30, poll_s: float = 0.2, on_done: Callable[[str, submitit.Job], None] | None = None,
             visible_gpus: Sequence[int] = (), busy: Callable[[], int] | None = None,
             on_tick: Callable[[], None] | None = None) -> dict[str, submitit.Job]:
    """Run callables as submitit local jobs, never more than `cfg.max_parallel` at once.

    LocalExecutor alone starts every submission immediately; this keeps a queue and submits the next
    callable only when a slot frees. A failing job does not stop the others. Returns key -> finished job.
    With cfg.gpus_per_job > 0 each running job gets its own GPUs out of visible_gpus (LocalExecutor alone
    would give every job GPU 0, and gpus_per_node=0 hides all GPUs: silent CPU training); with
    cfg.runs_per_gpu > 1 up to that many jobs share one GPU (gpu_slots, take_gpus). `busy()` counts slots
    taken by jobs this pool did not start (runs a killed launcher's orphaned jobs still train); they count
    against max_parallel. SIGINT, SIGTERM or SIGHUP cancel every running job
    (each gets SIGINT and marks its run interrupted) before the exception propagates.
    """
    _check_gpus(cfg, visible_gpus)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free_gpus = gpu_slots(visible_gpus, cfg.runs_per_gpu)
    gpus_of: dict[str, list[int]] = {}
    executor = _local_executor(folder, cfg, signal_delay_s)
    queue = list(items)[::-1]
    running: dict[str, submitit.Job] = {}
    finished: dict[str, submitit.Job] = {}
    with _cancel_on_exit(running):
        _pool_loop(executor, queue, running, finished, folder, max_parallel=cfg.max_parallel, poll_s=poll_s,
                   on_done=on_done, gpus_per_job=cfg.gpus_per_job, free_gpus=free_gpus, gpus_of=gpus_of,
                   busy=busy, on_tick=on_tick)
    return finished


def _check_gpus(cfg: LaunchConfig, visible_gpus: Sequence[int]) -> None:
    """The one check of the pool's own: enough GPU slots on this machine (the config's values were checked
    where they entered, by scaling.config_rules.validate / validate_launch)."""
    if cfg.gpus_per_job and cfg.max_parallel * cfg.gpus_per_job > len(visible_gpus) * cfg.runs_per_gpu:
        what = f"GPU slots ({cfg.runs_per_gpu} runs per GPU)" if cfg.runs_per_gpu > 1 else "GPUs"
        raise LaunchError(f"[launch].gpus_per_job = {cfg.gpus_per_job} x max_parallel = {cfg.max_parallel} needs "
                          f"{cfg.max_parallel * cfg.gpus_per_job} {what}; this machine shows {len(visible_gpus)} "
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


def _local_executor(folder: Path, cfg: LaunchConfig, signal_delay_s: int) -> submitit.LocalExecutor:
    executor = submitit.LocalExecutor(folder=folder, max_num_timeout=cfg.max_num_timeout)
    # The local default limit is 2 minutes; always pass ours explicitly.
    executor.update_parameters(timeout_min=cfg.timeout_min, signal_delay_s=signal_delay_s, gpus_per_node=0)
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


def run_workers(todo: Sequence[Path], folder: Path, cfg: LaunchConfig, *, costs: dict[str, float],
                signal_delay_s: int = 30, poll_s: float = 0.2,
                on_run: Callable[[Path, submitit.Job], None] | None = None, visible_gpus: Sequence[int] = (),
                busy: Callable[[], int] | None = None, on_tick: Callable[[], None] | None = None,
                job_cls: type | None = None) -> set[str]:
    """Train the runs of `todo` (longest first by `costs`) on at most `cfg.max_parallel` TrainWorker processes
    of `cfg.threads_per_job` threads each.

    `on_run(run_dir, worker_job)` is called once per run, when its worker ended it or died while training it
    (as run_pool's on_done per job). A worker that dies before taking any run takes the next one down with
    it (that run is marked failed with the job's error), so a job that cannot start fails runs one by one, as
    one process per run would, instead of being restarted forever. Busy slots, GPUs, signals and
    cancellation as in run_pool. Returns the run ids it reported.
    """
    _check_gpus(cfg, visible_gpus)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    queue = WorkQueue.write(folder, [(Path(d), costs.get(Path(d).name, 0.0)) for d in todo])
    by_name = {d.name: d for d in queue.order}
    executor = _local_executor(folder, cfg, signal_delay_s)
    # A worker stops taking runs that would not fit before the time-limit signal (start-up included).
    time_limit_s = max(1.0, cfg.timeout_min * 60 - signal_delay_s - 10)
    free_gpus = gpu_slots(visible_gpus, cfg.runs_per_gpu)
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
            while unclaimed > idle and len(running) + taken < cfg.max_parallel:
                wid = f"w{n_workers}"
                n_workers += 1
                worker = TrainWorker(folder, wid, cfg.threads_per_job, pool_pid=os.getpid(),
                                     time_limit_s=time_limit_s, job_cls=job_cls)
                running[wid] = jobs[wid] = _submit(executor, wid, worker, folder, cfg.gpus_per_job, free_gpus,
                                                   gpus_of)
                idle += 1
            time.sleep(poll_s)
    return reported


def _job_failed(job: submitit.Job) -> bool:
    try:
        return job.exception() is not None
    except Exception:  # no result pickle: killed
        return True



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
