"""Multi-process data parallel on CPU (gloo): two ranks train one run (or a WSD trunk) like one process would.

Each rank is a fresh process with the env:// variables set by hand (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT), as submitit's TorchDistributedEnvironment().export() sets them in a Slurm job.
"""

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import scaling
from conftest import tiny_sweep, write_sweep
from scaling.config import load_sweep
from scaling.errors import ConfigError
from scaling.plan import plan_sweep
from scaling.results import CKPT, read_json, read_metrics, read_result, write_json_atomic
from scaling.train import train_run
from scaling.wsd import TRUNKS, train_trunk

REPO = Path(scaling.__file__).resolve().parent.parent
WORLD = 2

# Runs in each rank: train_run, or with WSD=1 wsd.train_trunk. Ranks > 0 record every call that would write
# to a run or trunk folder or take its lock; KILL_AT_STEP makes rank 0 die by SIGKILL right after its
# checkpoint at that step (a node failure).
RANK_SCRIPT = """
import json, logging, os, signal, sys, pathlib
logging.basicConfig(level=logging.INFO, format="%(message)s")
import scaling.train as t
import scaling.wsd as w
rank, writes = int(os.environ["RANK"]), []
if rank > 0:
    spied = [(t, name) for name in ("write_result", "write_status", "append_metrics", "_save_checkpoint",
                                    "_drop_metrics_after")]
    spied += [(w, name) for name in ("write_spec", "write_result", "append_metrics", "_fork",
                                     "_add_accounting", "_write_trunk_diverged")]
    for module, name in spied:
        def spy(*a, _name=f"{module.__name__}.{name}", _orig=getattr(module, name), **k):
            writes.append(_name)
            return _orig(*a, **k)
        setattr(module, name, spy)
    from scaling.results import RunLock  # the lock claim() takes (the class, so every user of it is spied)
    acquire = RunLock.acquire
    RunLock.acquire = lambda self: writes.append("RunLock.acquire") or acquire(self)
kill_at = int(os.environ.get("KILL_AT_STEP", "0"))
if kill_at and rank == 0:
    save = t._save_checkpoint
    def save_then_die(run):
        save(run)
        if run.step >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    t._save_checkpoint = save_then_die
entry = w.train_trunk if os.environ.get("WSD") else t.train_run
result = entry(pathlib.Path(sys.argv[1]), num_threads=1)
print("RESULT " + json.dumps({"rank": rank, "writes": writes, "val_loss": result["val_loss"],
                              "pid": os.getpid()}), flush=True)
"""


def make_run(folder: Path, corpus: Path, **fields: object) -> Path:
    """A run folder with spec.json for a 1-layer GPT, batch 8 (4 rows per rank); `fields` override the spec."""
    folder.mkdir(parents=True)
    toml = write_sweep(folder / "sweep.toml", tiny_sweep("ddp", corpus, grid={"n_tokens": [20480]},
                                                         train={"lr": 3e-3, "log_every_steps": 1}))
    spec = dataclasses.replace(plan_sweep(load_sweep(toml)).runs[0], **fields)
    run_dir = folder / spec.run_id
    run_dir.mkdir()
    write_json_atomic(run_dir / "spec.json", spec.to_dict())
    return run_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(run_dir: Path, extra_env: dict[str, str] | None = None,
              timeout_s: float = 60) -> list[subprocess.CompletedProcess]:
    """Start WORLD ranks of train_run on run_dir and wait for all of them."""
    port = str(free_port())
    procs = []
    for rank in range(WORLD):
        env = dict(os.environ, PYTHONPATH=str(REPO), RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port, OMP_NUM_THREADS="1", **(extra_env or {}))
        procs.append(subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(run_dir)], env=env, cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    done = []
    try:
        for rank, proc in enumerate(procs):
            if rank > 0 and done[0].returncode != 0:
                proc.kill()  # rank 0 died: Slurm ends the job's other tasks (gloo would only time out)
            out, err = proc.communicate(timeout=timeout_s)
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def rank_report(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, text_corpus: Path) -> dict:
    """The same run trained by one process."""
    run_dir = make_run(tmp_path_factory.mktemp("single") / "sweep", text_corpus)
    return train_run(run_dir, num_threads=1)


def assert_matches_single_process(run_dir: Path, reference: dict) -> dict:
    result = read_result(run_dir)
    assert result is not None and result["status"] == "done" and result["world_size"] == WORLD
    assert result["steps_done"] == reference["steps_done"] == 80
    assert result["n_tokens"] == reference["n_tokens"]  # the global batch is the single-process batch
    # Same batches, same math; only the order of float reductions differs (mean of per-rank means).
    assert result["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-5)
    assert result["val_loss"] == pytest.approx(reference["val_loss"], rel=1e-5)
    steps = [r["step"] for r in read_metrics(run_dir) if "train_loss" in r]
    assert steps == list(range(1, 81))  # one writer: every step logged once
    return result


def test_two_ranks_train_like_one_process_and_only_rank_0_writes(tmp_path: Path, text_corpus: Path,
                                                                  reference: dict) -> None:
    run_dir = make_run(tmp_path / "sweep", text_corpus)
    reports = [rank_report(p) for p in run_ranks(run_dir)]
    result = assert_matches_single_process(run_dir, reference)
    assert [r["writes"] for r in reports[1:]] == [[]]  # rank 1 never wrote nor locked
    assert {r["val_loss"] for r in reports} == {result["val_loss"]}  # every rank returns rank 0's result
    assert read_json(run_dir / "status.json")["pid"] == reports[0]["pid"]
    assert (run_dir / CKPT).exists()

    # A finished run is not retrained: both ranks return the result at once.
    again = [rank_report(p) for p in run_ranks(run_dir)]
    assert {r["val_loss"] for r in again} == {result["val_loss"]}
    assert read_result(run_dir)["finished_at"] == result["finished_at"]


def test_interrupted_ddp_run_resumes_from_rank_0s_checkpoint(tmp_path: Path, text_corpus: Path,
                                                             reference: dict) -> None:
    # Rank 0 checkpoints after every step here, and is killed right after the one at step 30.
    run_dir = make_run(tmp_path / "sweep", text_corpus, checkpoint_every_s=1e-6)
    first = run_ranks(run_dir, {"KILL_AT_STEP": "30"})
    assert first[0].returncode == -9, first[0].stderr[-3000:]
    assert read_result(run_dir) is None and (run_dir / CKPT).exists()

    spec = read_json(run_dir / "spec.json")  # the checkpoint interval is not part of the spec hash
    write_json_atomic(run_dir / "spec.json", spec | {"checkpoint_every_s": 600.0})
    second = run_ranks(run_dir)
    for proc in second:
        rank_report(proc)
    assert "resumed from step 30 (ckpt.pt)" in second[0].stderr
    assert "resumed from step 30 (ckpt.pt)" in second[1].stderr  # every rank loaded the checkpoint
    assert_matches_single_process(run_dir, reference)


def test_tasks_per_job_is_validated(tmp_path: Path, text_corpus: Path) -> None:
    base = {"name": "v", "data": {"source": str(text_corpus)}, "grid": {"n_params": [1e5], "n_tokens": [1e6]}}
    toml = write_sweep(tmp_path / "s.toml", base | {"train": {"batch_size": 6},
                                                    "launch": {"backend": "slurm", "tasks_per_job": 4}})
    with pytest.raises(ConfigError, match=r"\[train\].batch_size = 6: .*4 processes"):
        load_sweep(toml)
    write_sweep(toml, base | {"launch": {"backend": "slurm", "gpus_per_job": 2, "tasks_per_job": 3}})
    with pytest.raises(ConfigError, match=r"\[launch\].tasks_per_job = 3: .*gpus_per_job"):
        load_sweep(toml)
    write_sweep(toml, base | {"launch": {"tasks_per_job": 2}})
    with pytest.raises(ConfigError, match=r"\[launch\].tasks_per_job = 2: .*slurm"):
        load_sweep(toml)
    # WSD trunks and their branches train with DDP too (test_wsd_trunk_and_branches_with_two_ranks_...)
    write_sweep(toml, base | {"train": {"schedule": "wsd"}, "launch": {"backend": "slurm", "tasks_per_job": 2}})
    cfg = load_sweep(toml)
    assert (cfg.train.schedule, cfg.launch.tasks_per_job) == ("wsd", 2)


def wsd_branches(folder: Path, corpus: Path) -> list[Path]:
    """A WSD sweep of one size and 3 budgets (10, 20, 30 steps): its branch folders with spec.json, as launch
    writes them, in plan order."""
    folder.mkdir(parents=True)
    toml = write_sweep(folder / "wsd.toml", tiny_sweep("wsd", corpus, results_dir=folder,
                                                       grid={"n_tokens": [2560, 5120, 7680]},
                                                       train={"schedule": "wsd", "lr": 3e-3, "log_every_steps": 1}))
    plan = plan_sweep(load_sweep(toml))
    dirs = []
    for spec in plan.runs:
        run_dir = plan.sweep.sweep_dir / spec.run_id
        run_dir.mkdir(parents=True)
        write_json_atomic(run_dir / "spec.json", spec.to_dict())
        dirs.append(run_dir)
    return dirs


def test_wsd_trunk_and_branches_with_two_ranks_train_like_one_process(tmp_path: Path, text_corpus: Path) -> None:
    single = wsd_branches(tmp_path / "single", text_corpus)
    longest = max(single, key=lambda d: read_json(d / "spec.json")["n_steps"])
    train_trunk(longest, num_threads=1)
    multi = wsd_branches(tmp_path / "ddp", text_corpus)
    reports = [rank_report(p) for p in run_ranks(multi[single.index(longest)], {"WSD": "1"})]
    assert [r["writes"] for r in reports[1:]] == [[]]  # rank 1 never wrote nor locked, in train or wsd
    assert len({r["val_loss"] for r in reports}) == 1  # every rank returns rank 0's result
    for one, two in zip(single, multi, strict=True):
        want, got = read_result(one), read_result(two)
        assert got["status"] == "done" and (got["world_size"], want["world_size"]) == (WORLD, 1)
        # Same trunk, same forks, same batches; only the order of float reductions differs.
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-5)
        assert {k: got[k] for k in ("steps_done", "fork_step", "flops_trunk", "flops_spent")} == \
               {k: want[k] for k in ("steps_done", "fork_step", "flops_trunk", "flops_spent")}
        steps = [r["step"] for r in read_metrics(two) if "train_loss" in r]
        assert steps == list(range(1, got["steps_done"] + 1))  # trunk records to the fork, then the cooldown
    trunk = read_json(multi[0] / "spec.json")["trunk_id"]
    fork = read_result(multi[single.index(longest)])["fork_step"]
    assert torch.load(multi[0].parent / TRUNKS / trunk / CKPT, weights_only=True)["step"] == fork

    # Everything finished: both ranks return the result without training or writing.
    again = [rank_report(p) for p in run_ranks(multi[single.index(longest)], {"WSD": "1"})]
    assert [r["writes"] for r in again[1:]] == [[]]
    assert {r["val_loss"] for r in again} == {r["val_loss"] for r in reports}
