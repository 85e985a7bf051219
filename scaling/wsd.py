"""Warmup-stable-decay sweeps: one constant-LR trunk per model size, one cooldown branch per token budget.

Hagele et al. 2024 ("Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations") and Hu et
al. 2024 (MiniCPM): with a WSD schedule the LR before a run's cooldown does not depend on its length, so
every budget D_i of one size shares the trunk up to its fork step (1 - f) * steps(D_i); each branch then
decays over f * steps(D_i) steps. A sweep of k budgets costs one trunk plus k cooldowns instead of k runs.

Layout: branches are ordinary run folders (spec.json, result.json, ...), so tables, fits and status see
one row per (N, D). The trunk lives in <sweep>/.trunks/<trunk_id>/ (no spec.json at the sweep level, so
it is not a run) and is trained with the ordinary trainer, paused at each fork (train_run's
stop_at_step). A branch starts from a copy of the trunk checkpoint at its fork step; since batches are a
function of (seed, step) and the LR before the fork is the same, the branch is bitwise the run a fresh
WSD schedule to D_i would have trained (tests/test_wsd.py).

Multi-process (WORLD_SIZE > 1, scaling.ddp): every rank calls train_trunk, which holds one process group
for the trunk and all its branches. Rank 0 alone reads the files that decide what to train next (a branch
finished? forked already? did the fork succeed?) and broadcasts its answer, so every rank takes the same
path; rank 0 alone writes (trunk spec, forks, accounting), as in train_run (tests/test_ddp.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from scaling import ddp, train
from scaling.errors import LaunchError
from scaling.results import (CKPT, METRICS, SPEC, RunResult, RunSpec, append_metrics, atomic_path, checkpoint_id,
                             read_json, read_metrics, read_result, read_spec, write_result, write_spec)

log = logging.getLogger(__name__)
_T = TypeVar("_T")

TRUNKS = ".trunks"
"""Folder under the sweep folder holding one folder per trunk."""
OPEN_ENDED_STEPS = 10**12
"""The trunk spec's n_steps: the trunk never finishes on its own, so adding a budget keeps its checkpoint."""


def trunk_dir_of(run_dir: Path, spec: RunSpec) -> Path:
    return Path(run_dir).parent / TRUNKS / spec.trunk_id


def trunk_spec_of(spec: RunSpec) -> RunSpec:
    """The trunk of a branch: the same run with no cooldown and no fixed length (constant LR after warmup)."""
    return dataclasses.replace(spec, run_id=spec.trunk_id, n_steps=OPEN_ENDED_STEPS, cooldown_steps=0,
                               n_tokens=0, n_tokens_target=0.0, flops=0.0, flops_6nd=0.0, flops_budget=0.0)


def branches_of(run_dir: Path, spec: RunSpec) -> list[tuple[Path, RunSpec]]:
    """Every run folder beside run_dir whose spec names the same trunk, in fork order."""
    found = []
    for d in sorted(p for p in Path(run_dir).parent.iterdir() if p.is_dir()):
        raw = read_json(d / SPEC)
        if raw and raw.get("trunk_id") == spec.trunk_id:
            found.append((d, read_spec(d)))
    return sorted(found, key=lambda item: (item[1].fork_step, item[1].n_steps))


def train_trunk(run_dir: Path, *, num_threads: int | None = None, device: str = "auto") -> dict[str, Any]:
    """Train the trunk of run_dir's size and every unfinished branch on it; return run_dir's result.

    Resumable at any point: the trunk checkpoints like any run, finished branches are skipped, and a branch
    interrupted during its cooldown resumes from its own ckpt.pt. With WORLD_SIZE > 1 every rank calls
    this; they train together in one process group and all return rank 0's result.
    """
    env = ddp.env_from_os()
    if env.world == 1:
        return _train_trunk(Path(run_dir), env, num_threads, device)
    with ddp.process_group(env, device) as device:  # one group for every train_run below: each joins it
        return _train_trunk(Path(run_dir), env, num_threads, device)


def _train_trunk(run_dir: Path, env: ddp.DistEnv, num_threads: int | None, device: str) -> dict[str, Any]:
    spec, branches = _on_main(env, _prepare_trunk, run_dir)
    trunk_dir = trunk_dir_of(run_dir, spec)
    for branch_dir, branch in branches:
        finished, forked = _on_main(env, _branch_state, branch_dir, branch)
        if finished:
            continue
        if not forked:
            state = train.train_run(trunk_dir, num_threads=num_threads, device=device,
                                    stop_at_step=branch.fork_step)
            if state["status"] == "diverged":
                _on_main(env, _write_trunk_diverged, branch_dir, branch, state)
                continue
            forked = _on_main(env, _fork, trunk_dir, branch_dir, branch)
            if not forked and env.is_main:  # the trunk is already past this fork (the branch was added later)
                log.warning("%s: trunk %s is past step %d; training this budget from scratch",
                            branch_dir.name, spec.trunk_id, branch.fork_step)
        train.train_run(branch_dir, num_threads=num_threads, device=device)
        _on_main(env, _add_accounting, branch_dir, branch, from_trunk=forked)
    result = _on_main(env, read_result, run_dir)
    if result is None:
        raise LaunchError(f"{run_dir}: trunk {spec.trunk_id} finished without a result for this run")
    return result


def _on_main(env: ddp.DistEnv, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """fn(*args, **kwargs) run by rank 0 alone (it reads or writes the sweep's files); every rank gets its value.

    If it raises on rank 0, the other ranks raise LaunchError too, instead of waiting for rank 0 in the
    next collective.
    """
    if env.world == 1:
        return fn(*args, **kwargs)
    if env.is_main:
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:
            ddp.broadcast((None, f"{type(exc).__name__}: {exc}"))
            raise
        return ddp.broadcast((value, None))[0]
    value, error = ddp.broadcast((None, None))
    if error is not None:
        raise LaunchError(f"rank 0 of {env.world} failed: {error}")
    return value


def _prepare_trunk(run_dir: Path) -> tuple[RunSpec, list[tuple[Path, RunSpec]]]:
    """run_dir's spec and its trunk's branches, in fork order; writes the trunk's spec.json if missing or stale."""
    spec = read_spec(run_dir)
    if spec.schedule != "wsd" or not spec.trunk_id:
        raise LaunchError(f"{run_dir}: not a WSD branch (schedule {spec.schedule!r})")
    trunk_dir = trunk_dir_of(run_dir, spec)
    trunk_dir.mkdir(parents=True, exist_ok=True)
    branches = branches_of(run_dir, spec)
    # the trunk's curve points are spread over the steps it will train: up to its last fork
    horizon = max((b.fork_step for _, b in branches), default=spec.fork_step)
    write_spec(trunk_dir, dataclasses.replace(trunk_spec_of(spec), curve_horizon=horizon))
    return spec, branches


def _branch_state(branch_dir: Path, branch: RunSpec) -> tuple[bool, bool]:
    """(finished, forked): whether the branch has its result, else whether it has its own ckpt.pt."""
    if read_result(branch_dir) is not None:
        _add_accounting(branch_dir, branch)  # a crash may have come between result and accounting
        return True, False
    return False, (branch_dir / CKPT).exists()  # a cooldown interrupted earlier resumes from its own state


def _fork(trunk_dir: Path, branch_dir: Path, branch: RunSpec) -> bool:
    """Copy the trunk checkpoint (at the branch's fork step) into the branch; False if the trunk is past it."""
    state = torch.load(trunk_dir / CKPT, map_location="cpu", weights_only=True)
    if int(state["step"]) != branch.fork_step:
        return False
    state["spec_hash"] = checkpoint_id(branch)  # the trunk state is the branch's own state at this step
    with atomic_path(branch_dir / CKPT, "wb") as f:
        torch.save(state, f)
    # The branch's curve starts with the trunk's (the trainer drops any record after the resume step).
    (branch_dir / METRICS).unlink(missing_ok=True)
    for record in read_metrics(trunk_dir):
        if record.get("step", 0) <= branch.fork_step:
            append_metrics(branch_dir, record)
    return True


def _add_accounting(branch_dir: Path, branch: RunSpec, from_trunk: bool = True) -> None:
    """Record in result.json what this branch cost on its own and what it shared with its trunk."""
    result = read_result(branch_dir)
    if result is None or "flops_spent" in result:
        return
    step_flops = float(branch.tokens_per_step * branch.flops_per_token)
    trunk_steps = branch.fork_step if from_trunk else 0
    write_result(branch_dir, RunResult.from_dict(result).replace(
        trunk_id=branch.trunk_id, fork_step=trunk_steps, flops_trunk=trunk_steps * step_flops,
        flops_spent=(branch.n_steps - trunk_steps) * step_flops))


def _write_trunk_diverged(branch_dir: Path, branch: RunSpec, state: dict[str, Any]) -> None:
    """The branch's result when its trunk diverged before the fork: diverged, with the trunk's reason and
    where it ran, and this branch's planned accounting (it spent nothing of its own)."""
    trunk = RunResult.from_dict(state)
    write_result(branch_dir, trunk.replace(
        run_id=branch.run_id, status="diverged", reason=f"trunk {branch.trunk_id}: {trunk.reason or 'diverged'}",
        n_params=branch.n_params, n_tokens=branch.n_tokens, flops=branch.flops, flops_6nd=None,
        flops_spent=0.0, train_loss=float("nan"), val_loss=float("nan")))
