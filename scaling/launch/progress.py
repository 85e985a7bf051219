"""Where a sweep stands from its files alone: the status table, the progress summary and its ETA, the live line."""

from __future__ import annotations

import heapq
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from scaling import results
from scaling.plan import Plan
from scaling.results import FINAL_STATES
from scaling.safe import printable


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


def printer(verbose: bool) -> Callable[[str], None]:
    """The launcher's message lines for a person watching (like a progress bar), flushed so they show in logs."""
    def say(msg: str) -> None:
        if verbose:
            print(printable(msg), file=sys.stderr, flush=True)  # run files' strings, escaped
    return say


def resumable_folders(plan: Plan) -> list[Path]:
    """The folders a launch of `plan` may resume: every run without a result, and the WSD trunk
    (scaling.wsd: <sweep>/.trunks/<trunk_id>/) of such a run, which resumes before its branches fork."""
    from scaling.wsd import TRUNKS  # scaling.wsd imports torch; this module stays torch-free

    sweep_dir = Path(plan.sweep.sweep_dir)
    unfinished = [sweep_dir / r.run_id for r in plan.runs if not (sweep_dir / r.run_id / results.RESULT).exists()]
    return unfinished + sorted({sweep_dir / TRUNKS / r.trunk_id for r in plan.runs
                                if r.schedule == "wsd" and r.trunk_id and (sweep_dir / r.run_id) in unfinished})


def checkpoint_step(run_dir: Path) -> int | None:
    """The step run_dir/ckpt.pt would resume from, or None (no checkpoint, or one that does not load).

    Memory-mapped, so reading it costs little even for a large model; the job (scaling.train) still checks the checkpoint
    against the spec and corpus before using it."""
    import torch  # only here: the other verbs stay torch-free

    path = Path(run_dir) / results.CKPT
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(state["step"])
    except Exception:  # unreadable: the job moves it aside and trains from scratch
        return None


def resume_lines(run_dirs: list[Path], n_steps: dict[str, int], step_of: Callable[[Path], int | None] | None = None,
                 shown: int = 10) -> list[str]:
    """One "resuming RUN from step S of N" line per run folder that holds a checkpoint (at most `shown`, then a
    count), for the launcher to print before its jobs start: a resumed run is not a fresh one. `step_of(run_dir)`:
    the step its checkpoint resumes from, or None (default: checkpoint_step)."""
    step_of = step_of or checkpoint_step
    found = [(d.name, s) for d in run_dirs if (s := step_of(d)) is not None]
    lines = [f"resuming {name} from step {s:,}" + (f" of {n_steps[name]:,}" if name in n_steps else "") + " (ckpt.pt)"
             for name, s in found[:shown]]
    if len(found) > shown:
        lines.append(f"... and {len(found) - shown} more run(s) resuming from their checkpoints")
    return lines
