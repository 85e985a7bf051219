"""The launcher backend interface: what launch() hands a backend (LaunchContext) and what it gets back (LaunchOutcome).

A backend is built from the validated `[launch]` config alone (`Backend(cfg)`; it refuses there, before any run
is written, what only it can check, e.g. Slurm's sbatch options), then `run` trains the runs it is given and
returns what happened; it fills no shared report. scaling.launch.BACKEND_TYPES names the backends by
`[launch].backend`; adding one is a module here, a line in that table, and its name in
scaling.config_rules.BACKENDS (so the config accepts it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from scaling.launch.progress import LiveProgress


@dataclass(frozen=True)
class LaunchContext:
    """One launch's facts a backend needs beside its config: where its files go and how to report."""

    folder: Path
    """The submitit folder of this launch (logs, pickles, the local pool's queue)."""
    sweep_name: str
    wait: bool
    """False: return after submission (locally a detached pool process keeps going)."""
    say: Callable[[str], None]
    """Prints one message line for a person watching."""
    signal_delay_s: int
    """Seconds before the time limit at which jobs get USR2 (checkpoint + requeue)."""
    poll_s: float | None = None
    """Seconds between looks at the run folders; None: the backend's own default."""
    progress: LiveProgress | None = None
    costs: dict[str, float] = field(default_factory=dict)
    """run_id -> FLOPs its job trains (scaling.launch.job_costs)."""
    elsewhere: tuple[Path, ...] = ()
    """Run folders locked by another process when the launch started (they take local slots until they end)."""


@dataclass(frozen=True)
class LaunchOutcome:
    """What a backend did with the runs it was given."""

    job_ids: dict[str, str] = field(default_factory=dict)
    """run_id -> job id (Slurm "123_4"; local: the job's controller pid; "pool:<pid>" for a detached pool)."""
    failed: list[str] = field(default_factory=list)
    """Runs that failed, in the order given; filled only when the backend waited."""
    n_arrays: int = 0
    """Slurm job arrays submitted (0 locally)."""


class Backend(Protocol):
    """Runs a launch's jobs: built as `Backend(cfg)` from the validated [launch] config."""

    def run(self, todo: Sequence[Path], ctx: LaunchContext) -> LaunchOutcome:
        """Train the run folders of `todo` (in the order to start them; each has its spec.json and a
        `submitted` status) and return what happened."""
        ...
