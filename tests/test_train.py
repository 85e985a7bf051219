import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import scaling
from conftest import tiny_sweep, write_sweep
from scaling.config import WandbConfig, load_sweep
from scaling.errors import LaunchError
from scaling.plan import RunSpec, plan_sweep
from scaling.results import CKPT, RunLock, read_metrics, read_result, write_json_atomic
from scaling.train import keep_freed_memory, lr_at, train_run

REPO = Path(scaling.__file__).resolve().parent.parent


def make_run(tmp_path: Path, corpus: Path, *, n_tokens: int = 20_000, arch: str = "gpt",
             train: dict | None = None, **fields: object) -> Path:
    """A run folder with spec.json, planned from a TOML like a real sweep; `fields` override the spec."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tiny_sweep("t", corpus, model={"arch": arch}, grid={"n_tokens": [n_tokens]},
                     train={"lr": 3e-3, "log_every_steps": 1, **(train or {})})
    toml = write_sweep(tmp_path / "sweep.toml", cfg)
    spec = dataclasses.replace(plan_sweep(load_sweep(toml)).runs[0], **fields)
    run_dir = tmp_path / spec.run_id
    run_dir.mkdir()
    write_json_atomic(run_dir / "spec.json", spec.to_dict())
    return run_dir


def train_losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["train_loss"]) for r in read_metrics(run_dir) if "train_loss" in r]


def start_training(run_dir: Path, code: str = "") -> subprocess.Popen:
    """train_run in a fresh process (1 thread), as a launcher job would run it."""
    script = ("import sys, pathlib; from scaling.train import train_run\n" + code +
              "train_run(pathlib.Path(sys.argv[1]), num_threads=1)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", script, str(run_dir)], env=env, cwd=REPO)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "training process ended before the interrupt"
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_training_lowers_loss_and_writes_a_full_result(tmp_path: Path, text_corpus: Path) -> None:
    run_dir = make_run(tmp_path, text_corpus, n_tokens=40_000, train={"eval_every_steps": 50})
    result = train_run(run_dir, num_threads=1)
    losses = [loss for _, loss in train_losses(run_dir)]
    assert result["status"] == "done" and result["steps_done"] == len(losses) == 156
    assert losses[0] == pytest.approx(math.log(256), abs=0.1)  # uniform at init
    assert result["train_loss"] < 3.2 and result["val_loss"] < 3.5
    assert read_result(run_dir) == json.loads((run_dir / "result.json").read_text())
    for key in ("n_params", "n_params_non_embedding", "n_tokens", "flops", "flops_6nd", "wall_s", "train_s",
                "tokens_per_s", "git_sha", "torch_version", "python_version", "device", "num_threads",
                "hostname", "corpus", "finished_at"):
        assert key in result
    assert result["corpus"]["n_train_tokens"] > 0 and result["num_threads"] == 1
    evals = [r["step"] for r in read_metrics(run_dir) if "val_loss" in r]
    assert evals == [50, 100, 150, 156]
    curve_only = [r["step"] for r in read_metrics(run_dir) if "curve_loss" in r and "val_loss" not in r]
    assert len(curve_only) >= 10  # the loss curve's points ([train].curve_evals), besides the evaluations
    # A finished run is never retrained.
    again = train_run(run_dir)
    assert again["finished_at"] == result["finished_at"]
    assert len(read_metrics(run_dir)) == len(losses) + len(evals) + len(curve_only)


def test_lstm_trains(tmp_path: Path, text_corpus: Path) -> None:
    result = train_run(make_run(tmp_path, text_corpus, arch="lstm", n_tokens=10_000), num_threads=1)
    assert result["status"] == "done" and result["val_loss"] < math.log(256)


def test_lr_schedule(tmp_path: Path, text_corpus: Path) -> None:
    spec = RunSpec.from_dict(json.loads((make_run(tmp_path, text_corpus) / "spec.json").read_text()))
    spec = dataclasses.replace(spec, n_steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, spec) == pytest.approx(0.1)
    assert lr_at(9, spec) == pytest.approx(1.0)
    assert lr_at(55, spec) == pytest.approx(0.55)
    assert lr_at(100, spec) == pytest.approx(0.1)


def test_sigkill_then_resume_is_bitwise_identical(tmp_path: Path, text_corpus: Path) -> None:
    reference = train_run(make_run(tmp_path / "a", text_corpus, n_tokens=80_000), num_threads=1)

    run_dir = make_run(tmp_path / "b", text_corpus, n_tokens=80_000, checkpoint_every_s=0.02)
    proc = start_training(run_dir)
    wait_for(lambda: (run_dir / CKPT).exists() and len(train_losses(run_dir)) > 100, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_result(run_dir) is None
    resumed = train_run(run_dir, num_threads=1)

    steps = [s for s, _ in train_losses(run_dir)]
    assert steps == list(range(1, 313))  # no duplicates from the steps redone after the checkpoint
    assert train_losses(run_dir) == train_losses(reference_dir := tmp_path / "a" / resumed["run_id"])
    assert resumed["val_loss"] == reference["val_loss"] and resumed["train_loss"] == reference["train_loss"]
    assert reference_dir.exists()


def test_requeue_signal_checkpoint_then_resume_is_bitwise_identical(tmp_path: Path, text_corpus: Path) -> None:
    """What submitit does on SIGUSR2: call our checkpoint() in the main thread, then exit."""
    reference = train_run(make_run(tmp_path / "a", text_corpus, n_tokens=80_000, eval_every_steps=3),
                          num_threads=1)
    run_dir = make_run(tmp_path / "b", text_corpus, n_tokens=80_000, eval_every_steps=3,
                       checkpoint_every_s=1e9)
    # checkpoint_active_run() declines inside optimizer.step(); this job then keeps going (submitit
    # would fall back to the last on-disk checkpoint), so the test signals again until one lands.
    handler = ("import os, signal\nfrom scaling.train import checkpoint_active_run\n"
               "signal.signal(signal.SIGUSR2, lambda *a: checkpoint_active_run() and os._exit(3))\n")
    proc = start_training(run_dir, handler)
    wait_for(lambda: len(train_losses(run_dir)) > 100, proc)
    assert not (run_dir / CKPT).exists()
    while proc.poll() is None:
        proc.send_signal(signal.SIGUSR2)
        time.sleep(0.01)
    assert proc.returncode == 3 and (run_dir / CKPT).exists()
    step = torch.load(run_dir / CKPT, weights_only=True)["step"]
    assert 100 < step < 312
    resumed = train_run(run_dir, num_threads=1)
    assert resumed["val_loss"] == reference["val_loss"] and resumed["train_loss"] == reference["train_loss"]
    assert train_losses(run_dir) == train_losses(tmp_path / "a" / resumed["run_id"])
    val_curve = [(r["step"], r["val_loss"]) for r in read_metrics(run_dir) if "val_loss" in r]
    assert val_curve == [(r["step"], r["val_loss"]) for r in read_metrics(tmp_path / "a" / resumed["run_id"])
                         if "val_loss" in r]


def test_corrupt_checkpoint_is_moved_aside_and_the_run_restarts(tmp_path: Path, text_corpus: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    reference = train_run(make_run(tmp_path / "a", text_corpus), num_threads=1)
    run_dir = make_run(tmp_path / "b", text_corpus)
    (run_dir / CKPT).write_bytes(b"PK\x03\x04 truncated")
    (run_dir / "metrics.jsonl").write_text('{"step": 40, "train_loss": 1.0}\n')  # from the lost attempt
    result = train_run(run_dir, num_threads=1)
    assert "checkpoint unusable" in caplog.text
    assert list(run_dir.glob(f"{CKPT}.bad-*"))
    assert result["val_loss"] == reference["val_loss"]
    assert train_losses(run_dir) == train_losses(tmp_path / "a" / result["run_id"])


def test_checkpoint_of_another_spec_is_rejected(tmp_path: Path, text_corpus: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    other = make_run(tmp_path / "a", text_corpus, lr=1e-3)
    train_run(other, num_threads=1)
    run_dir = make_run(tmp_path / "b", text_corpus)
    (run_dir / CKPT).write_bytes((other / CKPT).read_bytes())
    result = train_run(run_dir, num_threads=1)
    assert "different spec" in caplog.text
    assert result["steps_done"] == len(train_losses(run_dir)) == 78


def test_locked_run_is_not_trained_twice(tmp_path: Path, text_corpus: Path) -> None:
    run_dir = make_run(tmp_path, text_corpus)
    with RunLock(run_dir) as lock:
        assert lock.acquire()
        with pytest.raises(LaunchError, match="is being trained by another process"):
            train_run(run_dir)


def test_non_finite_loss_marks_the_run_diverged(tmp_path: Path, text_corpus: Path) -> None:
    # A real divergence: with lr = 1e30 the first update overflows the weights, the next loss is nan.
    run_dir = make_run(tmp_path, text_corpus, lr=1e30)
    result = train_run(run_dir, num_threads=1)
    assert result["status"] == "diverged"
    assert result["reason"] == "non-finite loss (nan) at step 2"
    assert math.isnan(result["val_loss"]) and result["steps_done"] == 1
    assert read_result(run_dir)["status"] == "diverged"


def test_wandb_offline_writes_its_run_dir(tmp_path: Path, text_corpus: Path) -> None:
    run_dir = make_run(tmp_path, text_corpus, n_tokens=3000,
                       wandb=dataclasses.replace(WandbConfig(), enabled=True, mode="offline"))
    assert train_run(run_dir, num_threads=1)["status"] == "done"
    assert list((run_dir / "wandb").glob("offline-run-*"))


def test_broken_wandb_never_fails_training(tmp_path: Path, text_corpus: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    run_dir = make_run(tmp_path, text_corpus, n_tokens=3000,
                       wandb=dataclasses.replace(WandbConfig(), enabled=True, mode="offline"))
    (run_dir / "wandb").write_text("a file where wandb wants its folder")  # wandb.init raises
    assert train_run(run_dir, num_threads=1)["status"] == "done"
    assert "wandb init failed" in caplog.text




def test_compile_that_fails_warns_once_and_trains_eagerly_with_the_same_losses(
        tmp_path: Path, text_corpus: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # torch.compile fails for real (torch rejects the backend; a missing C++ compiler fails the same way, only
    # after ~45 s of tracing here): each run trains eagerly, bitwise as without compile, and the process warns
    # once however many runs it trains (a worker trains many).
    import scaling.train

    eager = make_run(tmp_path / "eager", text_corpus, n_tokens=2560)
    compiled = [make_run(tmp_path / f"compiled{i}", text_corpus, n_tokens=2560, compile=True) for i in range(2)]
    train_run(eager, num_threads=1)
    monkeypatch.setattr(scaling.train, "COMPILE_BACKEND", "no-such-backend")
    monkeypatch.setattr(scaling.train, "_COMPILE_WARNED", False)
    with caplog.at_level("INFO", logger="scaling.train"):
        for run_dir in compiled:
            train_run(run_dir, num_threads=1)
    failed = [r for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert [r.levelname for r in failed] == ["WARNING", "INFO"], caplog.text
    assert "InvalidBackend" in failed[0].getMessage() and "training eagerly" in failed[0].getMessage()
    for run_dir in compiled:
        assert train_losses(run_dir) == train_losses(eager)
        assert read_result(run_dir)["val_loss"] == read_result(eager)["val_loss"]


def test_compile_keeps_run_ids_and_checkpoints(tmp_path: Path, text_corpus: Path) -> None:
    # Turning [train].compile on keeps finished runs (same folders) and resumes their checkpoints.
    from scaling.results import checkpoint_id as spec_hash

    plans = []
    for compile in (False, True):
        cfg = tiny_sweep("t", text_corpus, grid={"n_tokens": [2560, 5120]}, train={"compile": compile})
        plans.append(plan_sweep(load_sweep(write_sweep(tmp_path / f"{compile}.toml", cfg))).runs)
    eager, compiled = plans
    assert [r.compile for r in compiled] == [True, True] and [r.compile for r in eager] == [False, False]
    assert [r.run_id for r in compiled] == [r.run_id for r in eager]
    assert [spec_hash(r) for r in compiled] == [spec_hash(r) for r in eager]


FAULTS_PER_STEP = """
import resource, torch
from torch.nn import functional as F
from scaling.accounting import ModelShape
from scaling.model import build_model
from scaling.train import keep_freed_memory
torch.set_num_threads(1)
torch.manual_seed(0)
model = build_model(ModelShape(arch="gpt", n_layer=1, d_model=32, n_head=2, seq_len=128, vocab_size=256))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
x = torch.randint(0, 256, (16, 128))
def faults_per_step():
    for _ in range(10):  # optimizer state, the first buffers, the heap's growth
        F.cross_entropy(model(x).view(-1, 256), x.view(-1)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        F.cross_entropy(model(x).view(-1, 256), x.view(-1)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
without = faults_per_step()
kept = keep_freed_memory()
print(kept, without, faults_per_step())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_training_steps_reuse_freed_memory_instead_of_page_faulting_it_in_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A step frees and reallocates the same few MiB of activations and gradients. glibc's defaults hand such
    # blocks back to the OS and fault them in afresh every step (hundreds of faults per step of this model in a
    # fresh process); keep_freed_memory (called by train_run) keeps them for reuse.
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP], capture_output=True, text=True, check=True,
                         cwd=REPO).stdout.split()
    kept, without, with_keep = out[0], float(out[1]), float(out[2])
    assert kept == "True"
    assert with_keep <= min(50, without / 4), f"{with_keep:.0f} page faults per step kept, {without:.0f} without"
    monkeypatch.setenv("SCALING_MALLOC_KEEP", "0")  # the opt-out
    assert keep_freed_memory.__wrapped__() is False
