"""Train one run: read run_dir/spec.json, train (resuming from ckpt.pt), write result.json.

One visible nanoGPT-style loop. Everything a job needs to resume is on disk: the checkpoint holds
model, optimizer, step and the per-step losses; the data position is implied by the step because
batches are a pure function of (seed, step) (scaling.data.get_batch). On CPU with the same thread
count, a resumed run is bitwise identical to an uninterrupted one (tests/test_train.py checks it).
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import math
import os
import platform
import socket
import subprocess
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from scaling import ddp, mup
from scaling.data import Corpus, data_warnings, get_batch, load_corpus, unique_subset
from scaling.errors import ConfigError, LaunchError
from scaling.evaluate import held_out, held_out_losses, window_losses
from scaling.model import build_model, check_built, check_logits
from scaling.results import (CKPT, METRICS, RunResult, RunSpec, append_metrics, atomic_path, checkpoint_id, claim,
                             read_metrics, read_spec, write_result, write_status)
from scaling.schedule import lr_at, run_curve_steps

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
"""How often status.json's heartbeat and the progress line are refreshed."""
TRAIN_LOSS_TAIL = 0.05
"""result.train_loss is the mean step loss over this final fraction of steps (at least the last step)."""
SPIKE_FACTOR = 3.0
"""After warmup, a step loss above this multiple of the lowest step loss so far marks the run diverged."""
@dataclass
class _ActiveRun:
    """What checkpoint_active_run() needs to save the current run from a signal handler."""

    run_dir: Path
    spec_hash: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: int
    """Optimizer steps completed; model and optimizer hold exactly the state after them."""
    losses: list[float] = field(default_factory=list)
    """Training loss of each completed step (losses[k] was computed before update k + 1)."""
    train_s: float = 0.0
    """Training seconds of earlier attempts (up to their checkpoint)."""
    attempt_t0: float = 0.0
    attempt_step0: int = 0
    data_fingerprint: str = ""
    subset_fingerprint: str = ""
    """[grid].unique_tokens runs: the fingerprint of the unique subset trained on (recorded in result.json)."""
    """Fingerprint of the corpus this attempt trains on; a checkpoint made on another corpus is not resumed."""
    in_update: bool = False
    """True from optimizer.step() until the step's metrics record is written: a checkpoint taken then
    would not match the weights or would lack its step's record."""


_ACTIVE: _ActiveRun | None = None

MALLOC_KEEP_ENV = "SCALING_MALLOC_KEEP"
"""Set to 0 to leave glibc's malloc at its defaults (see keep_freed_memory)."""
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # mallopt parameters, from glibc's <malloc.h>
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's largest allowed M_MMAP_THRESHOLD on 64-bit (4 MiB * sizeof(long))


@functools.cache
def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of returning it to the OS; once per process.

    Why: a CPU training step frees and allocates the same activation and gradient buffers every step. With
    glibc's defaults, blocks above the mmap threshold are mapped and unmapped each time and the heap's top
    is trimmed, so every step page-faults its buffers in afresh (and zero-fills them in the kernel). This is
    what PyTorch's CPU performance guide gets from LD_PRELOADing jemalloc or tcmalloc; mallopt does it
    without a new dependency or a launcher wrapper, and the same on Slurm. Measured by
    benchmarks/bench_malloc.py (page faults and tokens/s, side by side in fresh processes). Returns whether it applied:
    not on other C libraries (macOS, musl), nor with SCALING_MALLOC_KEEP=0.
    """
    if os.environ.get(MALLOC_KEEP_ENV, "1") == "0" or platform.system() != "Linux":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Blocks up to 32 MiB come from the heap (a fixed threshold also stops glibc's own adjustment), the heap
    # keeps up to 1 GiB free at its top, and grows 64 MiB at a time.
    return all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX), (_M_TRIM_THRESHOLD, 2**30), (_M_TOP_PAD, 64 * 2**20)))


def checkpoint_active_run() -> bool:
    """Save the running job's state to ckpt.pt now, if it is consistent; safe in a signal handler.

    Returns False (and saves nothing) when no run is active in this process or it is inside an
    optimizer update; the checkpoint already on disk is then the resume point.
    """
    run = _ACTIVE
    if run is None or run.in_update:
        return False
    _save_checkpoint(run)
    return True


def _save_checkpoint(run: _ActiveRun) -> None:
    step = run.step  # read once: the handler may run between any two bytecodes of the loop
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "step": step,
        "losses": list(run.losses[:step]),
        "train_s": run.train_s + (time.perf_counter() - run.attempt_t0 if step > run.attempt_step0 else 0.0),
        "spec_hash": run.spec_hash,
        "data_fingerprint": run.data_fingerprint,
        "torch_rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    # Readers see the old checkpoint or the new one, never half of one; a full disk is a StorageError.
    with atomic_path(run.run_dir / CKPT, "wb") as f:
        torch.save(state, f)


def train_run(run_dir: Path, *, num_threads: int | None = None, device: str = "auto",
              stop_at_step: int | None = None) -> dict[str, Any]:
    """Train the run in run_dir to completion (or divergence) and return its result dict.

    A run with a valid result.json is never retrained: its result is returned as is. Raises
    LaunchError if another process is training this run. With WORLD_SIZE > 1 in the environment every
    rank calls this and they train the run together (scaling.ddp); all of them return rank 0's result.

    stop_at_step (a WSD trunk, scaling.wsd) pauses the run there: rank 0 saves ckpt.pt, no result.json is
    written, and every rank returns {"status": "paused", ...}.
    """
    global _ACTIVE
    t_call = time.perf_counter()
    run_dir = Path(run_dir)
    keep_freed_memory()
    env = ddp.env_from_os()
    if env.world > 1:
        return _train_run_ddp(run_dir, env, num_threads, device, t_call, stop_at_step)
    done, lock = claim(run_dir)
    if done is not None:
        log.info("%s: already finished (%s); not retraining", run_dir.name, done["status"])
        return done
    prev_threads = torch.get_num_threads()
    try:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        try:
            return _train(run_dir, device, t_call, stop_at_step=stop_at_step)
        except Exception as exc:
            write_status(run_dir, "failed", error=f"{type(exc).__name__}: {exc}")
            raise
    finally:
        _ACTIVE = None
        torch.set_num_threads(prev_threads)
        lock.release()


def _train_run_ddp(run_dir: Path, env: ddp.DistEnv, num_threads: int | None, device: str,
                   t_call: float, stop_at_step: int | None = None) -> dict[str, Any]:
    """train_run for one rank of a multi-process run: rank 0 checks, locks and writes; all ranks train.

    Joins the process group a caller already holds (a WSD trunk trains several runs in one), else makes
    its own for this run.
    """
    global _ACTIVE
    prev_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    lock = None
    try:
        with ddp.process_group(env, device) as device:
            done, refused = None, None
            if env.is_main:  # one decision for all ranks, so none trains alone or waits for a rank that left
                try:
                    done, lock = claim(run_dir)
                except LaunchError as exc:
                    refused = str(exc)
            done, refused = ddp.broadcast((done, refused))
            if done is not None:
                return done
            if refused:
                raise LaunchError(refused)
            try:
                result = _train(run_dir, device, t_call, env, stop_at_step)
            except Exception as exc:
                if env.is_main:
                    write_status(run_dir, "failed", error=f"{type(exc).__name__}: {exc}")
                raise
            return ddp.broadcast(result)  # only rank 0 made the result (the others return None from _train)
    finally:
        _ACTIVE = None
        torch.set_num_threads(prev_threads)
        if lock is not None:
            lock.release()


def _train(run_dir: Path, device: str, t_call: float, env: ddp.DistEnv = ddp.SINGLE,
           stop_at_step: int | None = None) -> dict[str, Any] | None:
    global _ACTIVE
    spec = read_spec(run_dir)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    on_cuda = device.startswith("cuda")
    if spec.batch_size % env.world:
        raise LaunchError(f"{run_dir}: batch_size {spec.batch_size} does not split evenly over "
                          f"{env.world} processes")
    if env.is_main:
        write_status(run_dir, "running", step=0, n_steps=spec.n_steps, device=device)

    corpus = load_corpus(spec.data, seq_len=spec.shape.seq_len)
    # [grid].unique_tokens: batches come from a fixed subset of the training split, seen n_tokens / U_D times
    subset = unique_subset(corpus.train, spec.unique_tokens) if spec.unique_tokens else None
    train_split = subset.tokens if subset is not None else corpus.train
    if env.is_main and subset is None:
        for warning in data_warnings(spec.tokens_per_step * spec.n_steps, spec.data.val_tokens,
                                     corpus.n_train_tokens, corpus.n_val_tokens, f"{run_dir.name}: {spec.data.source}"):
            log.warning(warning)
    model, optimizer = _build(spec, device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda else nullcontext()

    run = _ActiveRun(run_dir=run_dir, spec_hash=checkpoint_id(spec), model=model, optimizer=optimizer, step=0,
                     data_fingerprint=corpus.fingerprint, subset_fingerprint=subset.fingerprint if subset else "")
    if env.is_main:
        _resume(run, spec, device)
    if env.world > 1:
        ddp.barrier()  # rank 0 has moved an unusable checkpoint aside: the others load what it kept
        if not env.is_main:
            _resume(run, spec, device)
        if ddp.broadcast(run.step) != run.step:
            raise LaunchError(f"{run_dir}: rank {env.rank} resumed at step {run.step}, unlike rank 0")
    model, optimizer = run.model, run.optimizer
    fwd = ddp.wrap(model, device) if env.world > 1 else model  # run.model stays the bare module (checkpoints)
    if spec.compile:
        fwd = _compiled(fwd, spec, train_split, run.step, env, device, autocast)
    if env.is_main:
        _drop_metrics_after(run_dir, run.step)
    best = min(run.losses, default=math.inf)  # running minimum for the loss-spike rule
    tracker = _Wandb(spec, run_dir, enabled=env.is_main)

    B, T, V = spec.batch_size, spec.shape.seq_len, spec.shape.vocab_size
    tokens_per_step = spec.tokens_per_step
    run.attempt_t0 = t0 = time.perf_counter()
    run.attempt_step0 = run.step
    last_ckpt = last_beat = last_log_t = t0
    last_log_step = run.step
    curve_steps = frozenset(run_curve_steps(spec))
    if env.is_main and _eval_missing(run_dir, run.step, spec):
        # A requeue signal can checkpoint a step whose periodic eval had not been written yet.
        _log_eval(run, spec, corpus, device, autocast, tracker, run.train_s)
    elif env.is_main and run.step in curve_steps and _curve_missing(run_dir, run.step):
        _log_curve(run, spec, corpus, device, autocast, tracker, run.train_s)
    _ACTIVE = run if env.is_main else None  # only rank 0 may checkpoint (submitit signals rank 0 alone)
    model.train()
    # stop_at_step (a WSD trunk reaching a fork, scaling.wsd): pause there with ckpt.pt and no result.json
    stop = spec.n_steps if stop_at_step is None else min(stop_at_step, spec.n_steps)
    while run.step < stop:
        step = run.step
        lr = lr_at(step, spec)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # muP's per-layer LR (1 under SP; scaling.mup)
        x, y = get_batch(train_split, step, B, T, spec.seed)  # (B, T), (B, T)
        if env.world > 1:
            x, y = ddp.shard(x, y, env)  # (B / world, T): rows rank::world of the same global batch
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast:
            logits = fwd(x)  # (B, T, V)
            if step == run.attempt_step0:  # a (T, B, V) output has the same size: the loss would not notice
                check_logits(spec.shape, logits, x.size(0))
            loss = F.cross_entropy(logits.view(-1, V).float(), y.view(-1))
        loss_value = ddp.mean_over_ranks(loss, env) if env.world > 1 else loss.item()
        if not math.isfinite(loss_value) or (step >= spec.warmup_steps and loss_value > SPIKE_FACTOR * best):
            _ACTIVE = None
            if not env.is_main:  # every rank saw the same global loss and stops here
                return None
            return _diverged(run, spec, corpus, device, loss_value, step + 1, t_call, tracker, best)
        best = min(best, loss_value)
        loss.backward()
        if spec.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        run.in_update = True
        optimizer.step()
        run.losses.append(loss_value)
        run.step = step = step + 1
        now = time.perf_counter()
        record = None
        if step % spec.log_every_steps == 0 or step == spec.n_steps:
            tok_s = (step - last_log_step) * tokens_per_step / max(now - last_log_t, 1e-9)
            record = {"step": step, "tokens": step * tokens_per_step,
                      "flops": step * tokens_per_step * spec.flops_per_token, "train_loss": loss_value,
                      "lr": lr, "elapsed_s": run.train_s + now - t0, "tokens_per_s": tok_s}
            # Inside the update window: a checkpoint at this step must never be ahead of the curve.
            if env.is_main:
                append_metrics(run_dir, record)
            last_log_t, last_log_step = now, step
        run.in_update = False
        optimizer.zero_grad(set_to_none=True)  # free the gradients now; backward allocates them again

        if record is not None:
            tracker.log(record, step)
        if not env.is_main:  # below: evaluation and files, rank 0's alone (the others wait in backward)
            continue
        if spec.eval_every_steps > 0 and step % spec.eval_every_steps == 0 and step < spec.n_steps:
            _log_eval(run, spec, corpus, device, autocast, tracker, run.train_s + now - t0)
        elif step in curve_steps:  # a loss-curve point: the small fixed held-out sample only
            _log_curve(run, spec, corpus, device, autocast, tracker, run.train_s + now - t0)
        if now - last_beat >= HEARTBEAT_S:
            last_beat = now
            _progress(spec, run, t0, loss_value)
            write_status(run_dir, "running", step=step, n_steps=spec.n_steps, device=device)
        if now - last_ckpt >= spec.checkpoint_every_s and step < spec.n_steps:
            _save_checkpoint(run)
            last_ckpt = time.perf_counter()

    if run.step < spec.n_steps:  # paused at stop_at_step: rank 0's ckpt.pt is the hand-over point
        run.train_s += time.perf_counter() - t0
        run.attempt_t0, run.attempt_step0 = time.perf_counter(), run.step
        _ACTIVE = None
        if env.is_main:
            _save_checkpoint(run)
        return {"status": "paused", "step": run.step, "train_s": run.train_s}
    train_s = run.train_s + time.perf_counter() - t0
    _ACTIVE = None
    if not env.is_main:  # rank 0 saves, evaluates and writes the result; train_run broadcasts it
        return None
    _save_checkpoint(run)  # the finished state: a crash before result.json below then costs no training
    val_loss = _log_eval(run, spec, corpus, device, autocast, tracker, train_s)
    tail = max(1, round(TRAIN_LOSS_TAIL * len(run.losses)))
    record = _result(spec, corpus, device, run.step, t_call, status="done", **_subset_fields(spec, run),
                     train_loss=sum(run.losses[-tail:]) / tail, val_loss=val_loss, train_s=train_s,
                     tokens_per_s=run.step * tokens_per_step / max(train_s, 1e-9), world_size=env.world)
    write_result(run_dir, record)
    result = record.to_dict()
    tracker.finish(result)
    log.info("%s: done in %.1fs: val_loss %.4f, train_loss %.4f, %.0f tok/s", spec.run_id,
             result["wall_s"], val_loss, result["train_loss"], result["tokens_per_s"])
    return result


COMPILE_BACKEND = "inductor"
"""The torch.compile backend of [train].compile (inductor: generated C++ on CPU, Triton on CUDA)."""
_COMPILE_WARNED = False
"""Whether this process has warned that torch.compile failed (a worker training many runs warns once)."""


def _compiled(fwd: torch.nn.Module, spec: RunSpec, train_split: Any, step: int, env: ddp.DistEnv, device: str,
              autocast: Any) -> Any:
    """`fwd` through torch.compile, or `fwd` itself if compiling fails (warned once per process).

    torch.compile is lazy: it compiles at the first call (and the backward at the first backward), so it is
    tried here on the run's next batch, forward and backward, and the gradients are dropped. Weights,
    optimizer state and the data order are untouched, so the loop then trains exactly as it would have.
    """
    global _COMPILE_WARNED
    B, T, V = spec.batch_size, spec.shape.seq_len, spec.shape.vocab_size
    x, y = get_batch(train_split, step, B, T, spec.seed)  # (B, T), (B, T)
    if env.world > 1:
        x, y = ddp.shard(x, y, env)
    try:
        # A worker trains run after run in one process: drop the graphs of its earlier runs, or after
        # torch._dynamo.config.recompile_limit (8) shapes dynamo would silently run the rest eagerly.
        torch._dynamo.reset()
        compiled = torch.compile(fwd, backend=COMPILE_BACKEND)
        with autocast:
            loss = F.cross_entropy(compiled(x.to(device)).view(-1, V).float(), y.to(device).view(-1))
        loss.backward()
    except Exception as exc:  # no C++ compiler, an unsupported op or platform, ...: eager still trains
        say = log.info if _COMPILE_WARNED else log.warning
        _COMPILE_WARNED = True
        say("%s: torch.compile failed (%s: %s); training eagerly", spec.run_id, type(exc).__name__,
            str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "")
        return fwd
    finally:
        fwd.zero_grad(set_to_none=True)
    return compiled


def _build(spec: RunSpec, device: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(spec.seed)  # the initial weights are a function of the seed
    model = build_model(spec.shape)
    check_built(model, spec.shape, spec.n_params, spec.n_params_non_embedding)  # N as planned, or no training
    model = model.to(device)
    # Decay matrices (linear, embedding, LSTM weights) only; norm weights and biases are left alone. muP
    # splits the matrices further, each group with its own LR scale and decay (scaling.mup).
    optimizer = torch.optim.AdamW(
        mup.param_groups(model, spec.shape, spec.weight_decay),
        lr=spec.lr, betas=(spec.beta1, spec.beta2), fused=True)  # one kernel per step; also shrinks the window checkpoint_active_run() must skip
    return model, optimizer


def _resume(run: _ActiveRun, spec: RunSpec, device: str) -> None:
    """Load ckpt.pt into run if it is valid; move a corrupt or foreign one aside and start fresh."""
    for stale in run.run_dir.glob(f".{CKPT}.*.tmp"):  # left by a kill during a save
        stale.unlink(missing_ok=True)
    path = run.run_dir / CKPT
    if not path.exists():
        return
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if state.get("spec_hash") != run.spec_hash:
            raise ValueError(f"it was made for a different spec (hash {state.get('spec_hash')}, "
                             f"this spec {run.spec_hash})")
        if state.get("data_fingerprint", run.data_fingerprint) != run.data_fingerprint:
            # The corpus was edited in place (same path, same spec): its weights saw other data.
            raise ValueError(f"it was trained on corpus {state['data_fingerprint']}, the corpus is now "
                             f"{run.data_fingerprint}")
        mup.refuse_before_tied_group(path, state, run.optimizer.param_groups, spec.shape)
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        losses = [float(v) for v in state["losses"]]
        if len(losses) != step:
            raise ValueError(f"it holds {len(losses)} losses for {step} steps")
    except ConfigError:
        raise  # the user decides (mup.refuse_before_tied_group): the checkpoint stays where it is
    except Exception as exc:  # any unreadable checkpoint: retraining beats failing the sweep
        aside = path.with_name(f"{CKPT}.bad-{int(time.time())}")
        os.replace(path, aside)
        log.warning("%s: checkpoint unusable (%s: %s); moved to %s, training from scratch",
                    run.run_dir, type(exc).__name__, str(exc)[:200], aside.name)
        # A load_state_dict that failed half way leaves mixed weights: rebuild from the seed.
        run.model, run.optimizer = _build(spec, device)
        return
    run.step, run.losses, run.train_s = step, losses, float(state.get("train_s", 0.0))
    torch.set_rng_state(state["torch_rng"].cpu())
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    log.info("%s: resumed from step %d (%s)", run.run_dir.name, step, CKPT)
    print(f"{run.run_dir.name}: resumed from step {step} of {spec.n_steps} ({CKPT})", flush=True)  # the job's log


def _eval_missing(run_dir: Path, step: int, spec: RunSpec) -> bool:
    if not (spec.eval_every_steps > 0 and 0 < step < spec.n_steps and step % spec.eval_every_steps == 0):
        return False
    return not any(r.get("step") == step and "val_loss" in r for r in read_metrics(run_dir))


def _curve_missing(run_dir: Path, step: int) -> bool:
    return not any(r.get("step") == step and "curve_loss" in r for r in read_metrics(run_dir))


def _drop_metrics_after(run_dir: Path, step: int) -> None:
    """Keep only records up to the resume step, so a resumed curve has no duplicate steps."""
    path = run_dir / METRICS
    if not path.exists():
        return
    records = read_metrics(run_dir)
    kept = [r for r in records if r.get("step", 0) <= step]
    if len(kept) == len(records) and path.read_bytes().count(b"\n") == len(records):
        return
    with atomic_path(path) as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)


def _update_lr(spec: RunSpec, step: int) -> float | None:
    """The LR of the update that made `step` (None before the first)."""
    return lr_at(step - 1, spec) if step > 0 else None


def _log_eval(run: _ActiveRun, spec: RunSpec, corpus: Corpus, device: str, autocast: Any,
              tracker: _Wandb, elapsed_s: float) -> float:
    val_loss, curve_loss = held_out_losses(run.model, corpus, spec, device, autocast)
    tokens = run.step * spec.tokens_per_step
    record = {"step": run.step, "tokens": tokens, "flops": tokens * spec.flops_per_token,
              "lr": _update_lr(spec, run.step), "val_loss": val_loss, "curve_loss": curve_loss,
              "elapsed_s": elapsed_s}
    append_metrics(run.run_dir, record)
    tracker.log(record, run.step)
    return val_loss


def _log_curve(run: _ActiveRun, spec: RunSpec, corpus: Corpus, device: str, autocast: Any,
               tracker: _Wandb, elapsed_s: float) -> None:
    """One loss-curve point: held-out loss on the curve sample alone ([train].curve_tokens)."""
    x_all, y_all, idx = held_out(corpus, spec.shape.seq_len, spec.data.val_tokens, spec.curve_tokens)
    per_window = window_losses(run.model, x_all[idx], y_all[idx], spec.batch_size, device, autocast)
    tokens = run.step * spec.tokens_per_step
    record = {"step": run.step, "tokens": tokens, "flops": tokens * spec.flops_per_token,
              "lr": _update_lr(spec, run.step), "curve_loss": float(per_window.sum()) / (len(idx) * y_all.shape[1]),
              "elapsed_s": elapsed_s}
    append_metrics(run.run_dir, record)
    tracker.log(record, run.step)


def _progress(spec: RunSpec, run: _ActiveRun, t0: float, loss: float) -> None:
    dt = time.perf_counter() - t0
    done = run.step - run.attempt_step0
    tok_s = done * spec.tokens_per_step / max(dt, 1e-9)
    eta = (spec.n_steps - run.step) * dt / max(done, 1)
    log.info("%s: step %d/%d (%.0f%%) loss %.4f, %.0f tok/s, ETA %.0fs", spec.run_id, run.step,
             spec.n_steps, 100 * run.step / spec.n_steps, loss, tok_s, eta)


def _diverged(run: _ActiveRun, spec: RunSpec, corpus: Corpus, device: str, loss: float, step: int,
              t_call: float, tracker: _Wandb, best: float = math.inf) -> dict[str, Any]:
    reason = (f"non-finite loss ({loss}) at step {step}" if not math.isfinite(loss) else
              f"loss spike: {loss:.4g} > {SPIKE_FACTOR:g} x running minimum {best:.4g} at step {step}")
    log.warning("%s: diverged: %s", spec.run_id, reason)
    train_s = run.train_s + time.perf_counter() - run.attempt_t0
    record = _result(spec, corpus, device, run.step, t_call, status="diverged", reason=reason,
                     **_subset_fields(spec, run),
                     train_loss=math.nan, val_loss=math.nan, train_s=train_s,
                     tokens_per_s=run.step * spec.tokens_per_step / max(train_s, 1e-9))
    write_result(run.run_dir, record)
    result = record.to_dict()
    tracker.finish(result)
    return result


def _subset_fields(spec: RunSpec, run: _ActiveRun) -> dict[str, Any]:
    """result.json's record of a [grid].unique_tokens run: U_D, the epochs trained and the subset's fingerprint."""
    if not spec.unique_tokens:
        return {}
    return {"unique_tokens": spec.unique_tokens, "epochs": run.step * spec.tokens_per_step / spec.unique_tokens,
            "subset_fingerprint": run.subset_fingerprint}


def _result(spec: RunSpec, corpus: Corpus, device: str, steps_done: int, t_call: float, **how: Any) -> RunResult:
    """The run's result record: its accounting for the steps done, where and on what it ran, and `how` it
    ended (status, losses, timing)."""
    n_tokens = steps_done * spec.tokens_per_step
    return RunResult(
        run_id=spec.run_id, n_params=spec.n_params, n_params_non_embedding=spec.n_params_non_embedding,
        n_tokens=n_tokens, flops=float(n_tokens * spec.flops_per_token), flops_6nd=6.0 * spec.n_params * n_tokens,
        steps_done=steps_done, wall_s=time.perf_counter() - t_call, git_sha=git_sha(),
        torch_version=torch.__version__, python_version=platform.python_version(), device=device,
        num_threads=torch.get_num_threads(), hostname=socket.gethostname(),
        corpus={"source": corpus.source, "fingerprint": corpus.fingerprint,
                "n_train_tokens": corpus.n_train_tokens, "n_val_tokens": corpus.n_val_tokens},
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **how)


@functools.cache
def git_sha() -> str | None:
    """HEAD of the repo holding the scaling package, with "-dirty" if it has uncommitted changes."""
    repo = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha


class _Wandb:
    """Optional wandb logging. Any wandb failure is logged once and turns it off; training goes on."""

    def __init__(self, spec: RunSpec, run_dir: Path, enabled: bool = True):
        self.run: Any = None
        if not enabled or not spec.wandb.enabled or spec.wandb.mode == "disabled":
            return
        try:
            import wandb  # lazy: a few hundred ms of import that most runs do not need

            self.run = wandb.init(project=spec.wandb.project, group=spec.sweep, id=spec.run_id,
                                  name=spec.run_id, mode=spec.wandb.mode, dir=str(run_dir),
                                  resume="allow", config=spec.to_dict())
        except Exception as exc:  # wandb raises many types (network, config, service start)
            self._fail("init", exc)

    def log(self, record: dict[str, Any], step: int) -> None:
        if self.run is None:
            return
        try:
            self.run.log({k: v for k, v in record.items() if k != "step"}, step=step)
        except Exception as exc:
            self._fail("log", exc)

    def finish(self, result: dict[str, Any]) -> None:
        if self.run is None:
            return
        try:
            for key in ("status", "train_loss", "val_loss", "n_params", "n_tokens", "flops"):
                self.run.summary[key] = result[key]
            self.run.finish()
        except Exception as exc:
            self._fail("finish", exc)
        self.run = None

    def _fail(self, what: str, exc: Exception) -> None:
        log.warning("wandb %s failed (%s: %s); continuing without wandb", what, type(exc).__name__,
                    str(exc).splitlines()[0][:200] if str(exc) else "")
        self.run = None
