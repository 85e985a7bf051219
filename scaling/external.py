"""External trainers: `[train] command = "..."` runs the user's own training script as each run's job.

The contract (also in the README, "Sweep your own training script"):

What the command receives
- The template is split like a shell command line (shlex), then every `{field}` in each argument is filled
  with str.format from the run's spec: its scalar fields (run_id, sweep, seed, n_params,
  n_params_non_embedding, flops_per_token, n_tokens, n_steps, warmup_steps, batch_size, lr, min_lr_ratio,
  weight_decay, beta1, beta2, grad_clip, ...), its shape's (arch, n_layer, d_model, n_head, seq_len,
  vocab_size, mlp_ratio), its data's as data_source, data_val_tokens, ..., and run_dir (the run folder,
  absolute), spec (its spec.json), result (the file to write, below), metrics (its metrics.jsonl), python (the
  interpreter running the job) and threads. No shell runs it: wrap it in `bash -c "..."` for pipes. A field
  the spec does not have is refused when the sweep is planned.
- Environment: the job's, plus SCALING_RUN_DIR, SCALING_SPEC, SCALING_RESULT, SCALING_METRICS, SCALING_RUN_ID
  and SCALING_ATTEMPT (1 on the first start, 2 after one requeue, ...); OMP_NUM_THREADS etc. are
  [launch].threads_per_job.
- Working directory: the job's, which is the directory `scaling run` was started from (the local pool's;
  on Slurm the submission directory). stdin is empty; stdout and stderr are appended to <run_dir>/command.log.

What it must write
- <run_dir>/final.json (FINAL), a JSON object: "val_loss" (held-out loss, nats per token; required),
  optionally "train_loss", "n_params" (the parameters it trained: if given it must be within 1% of the
  plan's count for [model].arch, else the run fails: use a plug-in arch that builds the script's model to
  make the plan count it), and "status": "diverged" with a "reason" for a run that blew up (a non-finite
  val_loss means the same). Write it last (e.g. to a temp file, then rename): the framework turns it into
  result.json, the file fits read.
- Optionally a loss curve: JSON lines appended to <run_dir>/metrics.jsonl, {"step": int, "tokens": int,
  "train_loss": float, ...} ("val_loss" for held-out points; "flops" and "elapsed_s" feed the live ETA).

Requeue
- On a timeout or preemption signal (submitit's USR2), the framework sends SIGTERM to the command's
  process, waits up to TERM_GRACE_S for it to exit (then SIGKILL), marks the run requeued and the job is
  resubmitted: the same command is started again in the same run folder, with SCALING_ATTEMPT one higher,
  and should resume from its own checkpoint there. SIGUSR2 starts ignored in the command (Slurm signals
  every process of the job step; only the framework's SIGTERM asks it to stop).

Failure
- A non-zero exit status, or an exit 0 without a valid final.json, fails the run: status.json `failed`
  with a one-line error (the exit status and the last line of command.log) that `scaling status` shows; no
  result.json, so no fit ever sees it, and a rerun retries it.

Torch-free: the planner checks templates with it, and a job that runs a command never imports torch.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scaling.errors import LaunchError
from scaling.results import (METRICS, RESULT, SPEC, STATUS, claim, implausible, number, read_json, read_json_checked,
                             read_metrics, read_spec, write_result, write_status)
from scaling.safe import printable

FINAL = "final.json"
"""The file an external command writes in its run folder (its final loss); the framework makes result.json."""
LOG = "command.log"
TERM_GRACE_S = 10.0
"""After SIGTERM, how long a command may take to save and exit before it is killed (below submitit's
signal delay, so the job still requeues before its time limit)."""
HEARTBEAT_S = 10.0
N_PARAMS_TOLERANCE = 0.01
_PATHS = ("run_dir", "spec", "result", "metrics", "python", "threads")
_SKIP = {"command", "wandb", "trunk_id"}

_ACTIVE: subprocess.Popen | None = None
"""The command this process is running (for checkpoint_active_run in a requeue signal handler)."""


def fields(spec: dict[str, Any], run_dir: Path | str, threads: int = 1) -> dict[str, Any]:
    """The values a template's {fields} take for one run (see the module docstring)."""
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if key in _SKIP:
            continue
        if key == "shape" and isinstance(value, dict):
            out.update(value)
        elif key == "data" and isinstance(value, dict):
            out.update({f"data_{k}": v for k, v in value.items()})
        elif not isinstance(value, (dict, list)):
            out[key] = value
    run_dir = Path(run_dir)
    out.update(run_dir=str(run_dir), spec=str(run_dir / SPEC), result=str(run_dir / FINAL),
               metrics=str(run_dir / METRICS), python=sys.executable, threads=int(threads))
    return out


MAX_FORMAT_WIDTH = 1000
"""Largest width or precision a [train].command field may ask for (no argument needs more)."""


def argv_for(template: str, values: dict[str, Any]) -> list[str]:
    """The command's argument vector; ValueError with a one-line reason on an unknown field or bad format."""
    argv = []
    for arg in shlex.split(template):
        try:
            for _, field, spec, _ in string.Formatter().parse(arg):
                # a width such as {lr:>99999999999} would have format() build a string of that many characters
                if field is not None and any(int(n) > MAX_FORMAT_WIDTH for n in re.findall(r"\d+", spec or "")):
                    raise ValueError(f"{{{field}:{spec}}}: a width or precision above {MAX_FORMAT_WIDTH}")
            argv.append(arg.format_map(values))
        except KeyError as exc:
            raise ValueError(f"unknown field {{{exc.args[0]}}} (fields: {', '.join(sorted(values))})") from None
        except (IndexError, ValueError, AttributeError, TypeError) as exc:
            raise ValueError(f"{arg!r}: {type(exc).__name__}: {exc}") from None
    return argv


def template_fields_problem(template: str, spec: Any) -> str | None:
    """At plan time: why the template cannot be filled from this RunSpec's fields, or None."""
    try:
        argv_for(template, fields(spec.to_dict(), "<run_dir>"))
    except ValueError as exc:
        return str(exc)
    return None


def checkpoint_active_run() -> bool:
    """In a requeue signal handler: ask the running command to stop (SIGTERM) and wait for it; True when it
    exited within TERM_GRACE_S (it had the chance to save its checkpoint), False when none runs or it was killed."""
    proc = _ACTIVE
    if proc is None or proc.poll() is not None:
        return False
    return _stop(proc)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """`sig` to the command's whole process group (it leads its own session, `_spawn`): a shell's children
    (`bash -c '{python} train.py; true'`) stop with it instead of training on as orphans."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):  # the group is gone already
        pass


def _stop(proc: subprocess.Popen) -> bool:
    _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + TERM_GRACE_S
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        return False
    return True


def _spawn(argv: list[str], log: Any, env: dict[str, str]) -> subprocess.Popen:
    """Start the command as the leader of a new session (so of its own process group, which _stop signals)."""
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            preexec_fn=_ignore_usr2, start_new_session=True)


def _ignore_usr2() -> None:  # runs in the child between fork and exec: an ignored signal stays ignored
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def run_command(run_dir: Path | str, *, num_threads: int = 1) -> dict[str, Any]:
    """Run the run's [train].command to completion and turn its final.json into result.json; returns the result.

    A run with a valid result.json is not rerun. Raises LaunchError (one line) when the command cannot start,
    exits non-zero or writes no valid final.json; TrainJob records it as the run's `failed` status.
    """
    global _ACTIVE
    run_dir = Path(run_dir).resolve()
    done, lock = claim(run_dir)
    if done is not None:
        return done
    try:
        spec = read_spec(run_dir).to_dict()
        if not spec.get("command"):
            raise LaunchError(f"{run_dir / SPEC}: has no command")
        try:
            argv = argv_for(spec["command"], fields(spec, run_dir, num_threads))
        except ValueError as exc:
            raise LaunchError(f"[train].command: {exc}") from None
        attempt = int((read_json(run_dir / STATUS) or {}).get("command_attempt", 0)) + 1
        write_status(run_dir, "running", step=0, n_steps=spec.get("n_steps"), command_attempt=attempt)
        (run_dir / FINAL).unlink(missing_ok=True)  # only what this attempt writes counts
        env = dict(os.environ, SCALING_RUN_DIR=str(run_dir), SCALING_SPEC=str(run_dir / SPEC),
                   SCALING_RESULT=str(run_dir / FINAL), SCALING_METRICS=str(run_dir / METRICS),
                   SCALING_RUN_ID=str(spec.get("run_id", run_dir.name)), SCALING_ATTEMPT=str(attempt))
        log_path = run_dir / LOG
        t0 = time.perf_counter()
        with open(log_path, "ab") as log:
            log.write(f"--- attempt {attempt}, {time.strftime('%Y-%m-%dT%H:%M:%S%z')}: {shlex.join(argv)}\n".encode())
            log.flush()
            try:
                proc = _spawn(argv, log, env)
            except OSError as exc:
                raise LaunchError(f"[train].command: cannot start {argv[0]!r}: {exc.strerror or exc}") from None
        _ACTIVE = proc
        try:
            last_beat = time.monotonic()
            # poll, not wait(): a requeue signal handler waits on this process too (checkpoint_active_run)
            while proc.poll() is None:
                time.sleep(0.1)
                if time.monotonic() - last_beat >= HEARTBEAT_S:
                    last_beat = time.monotonic()
                    write_status(run_dir, "running", step=_last_step(run_dir), n_steps=spec.get("n_steps"))
        finally:
            _ACTIVE = None
            if proc.poll() is None:  # interrupted (Ctrl-C, launcher stopped): never leave the command behind
                _stop(proc)
        wall_s = time.perf_counter() - t0
        if proc.returncode != 0:
            code = proc.returncode
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
            raise LaunchError(f"the command {how}: {_last_line(log_path)} (log: {log_path})")
        # result.json is the framework's record of final.json: one the command wrote itself is not a result
        (run_dir / RESULT).unlink(missing_ok=True)
        result = _result(spec, run_dir, argv, wall_s, attempt)
        write_result(run_dir, result)
        return result
    finally:
        lock.release()


def _result(spec: dict[str, Any], run_dir: Path, argv: list[str], wall_s: float, attempt: int) -> dict[str, Any]:
    final, why = read_json_checked(run_dir / FINAL)
    if final is None:
        raise LaunchError(f"the command exited 0 but {'wrote no ' + FINAL if why is None else FINAL + ': ' + why} "
                          f"in {run_dir} (it must write {{\"val_loss\": ...}}; log: {run_dir / LOG})")
    if final.get("status", "done") not in ("done", "diverged"):  # the command's own verdict is final
        raise LaunchError(f"{run_dir / FINAL}: status = {printable(repr(final.get('status')))}: the command reported "
                          "that the run did not finish (only \"done\" or \"diverged\" record a result)")
    if "val_loss" not in final and final.get("status") != "diverged":
        raise LaunchError(f"{run_dir / FINAL}: has no val_loss (keys: {', '.join(sorted(final)) or 'none'})")
    reported_n = final.get("n_params")
    if reported_n is not None:
        n = number(reported_n)
        if n is None or abs(n - spec["n_params"]) > N_PARAMS_TOLERANCE * spec["n_params"]:
            raise LaunchError(
                f"{run_dir / FINAL}: n_params = {printable(repr(reported_n)[:60])}, but the plan counted {spec['n_params']:,} for "
                f"[model].arch = {spec['shape']['arch']!r}; make the arch build the script's model (a plug-in "
                f"\"package.module:factory\") so N is right")
    val = number(final.get("val_loss"))
    diverged = final.get("status") == "diverged" or (val is None and isinstance(final.get("val_loss"), float))
    if not diverged:
        why = implausible("val_loss", final.get("val_loss"))
        if why is not None:
            raise LaunchError(f"{run_dir / FINAL}: {printable(why)}")
    if final.get("train_loss") is not None and not diverged:  # reported: used as it is, never replaced
        why = implausible("train_loss", final.get("train_loss"))
        if why is not None:
            raise LaunchError(f"{run_dir / FINAL}: {printable(why)}")
    train = number(final.get("train_loss"))
    train_from = "command"
    if train is None:
        curve = [r["train_loss"] for r in read_metrics(run_dir) if number(r.get("train_loss")) is not None]
        train, train_from = (curve[-1], "metrics.jsonl") if curve else (val, "val_loss (none reported)")
    base = {
        "run_id": spec.get("run_id", run_dir.name), "n_params": spec["n_params"],
        "n_params_non_embedding": spec.get("n_params_non_embedding"), "n_tokens": spec["n_tokens"],
        "flops": float(spec["flops"]), "flops_6nd": float(spec.get("flops_6nd", 6.0 * spec["n_params"] * spec["n_tokens"])),
        "steps_done": spec.get("n_steps"), "wall_s": wall_s, "trainer": "command", "command": shlex.join(argv),
        "attempts": attempt, "reported": final, "python_version": sys.version.split()[0],
        "hostname": os.uname().nodename, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if diverged:
        reason = str(final.get("reason") or f"the command reported val_loss = {final.get('val_loss')!r}")
        return base | {"status": "diverged", "reason": reason, "train_loss": float("nan"), "val_loss": float("nan")}
    return base | {"status": "done", "val_loss": val, "train_loss": train, "train_loss_from": train_from}


def _last_step(run_dir: Path) -> int:
    records = read_metrics(run_dir)
    return int(records[-1]["step"]) if records else 0


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = [ln for ln in f.read().decode("utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    last = lines[-1] if lines and not lines[-1].startswith("--- attempt") else "(it printed nothing)"
    return " ".join(last.split())[:300]
