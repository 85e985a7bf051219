"""The local launcher: a bounded pool of real submitit jobs running the real trainer on tiny runs."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from submitit.helpers import CommandFunction

import scaling
from conftest import tiny_sweep, write_sweep
from scaling.config import load_sweep
from scaling.errors import ConfigError
from scaling.launch import LaunchReport, launch, parse_sbatch_extra, run_pool, sweep_status
from scaling.plan import Plan, plan_sweep
from scaling.results import CKPT, STATUS, read_json, read_result, run_state

REPO = Path(scaling.__file__).resolve().parent.parent


def make_plan(tmp_path: Path, corpus: Path, *, n_tokens: list[int], results: str = "results",
              train: dict | None = None) -> Plan:
    """A tiny real sweep (1 layer, d_model 32, seq_len 32), planned from TOML like a user's."""
    cfg = tiny_sweep("tiny", corpus, results_dir=tmp_path / results, grid={"n_tokens": n_tokens},
                     train={"log_every_steps": 10, **(train or {})},
                     launch={"max_parallel": 2, "threads_per_job": 1, "timeout_min": 10})
    return plan_sweep(load_sweep(write_sweep(tmp_path / f"{results}.toml", cfg)))


def test_launch_module_does_not_import_torch() -> None:
    code = "import sys, scaling.launch; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_pool_never_runs_more_than_max_parallel(tmp_path: Path) -> None:
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    # Each job records when it starts and ends (wall clock, ns) and sleeps in between.
    items = [(str(i), CommandFunction(["sh", "-c", f"date +%s%N > {stamps}/{i}.start; sleep 0.3; "
                                                    f"date +%s%N > {stamps}/{i}.end"]))
             for i in range(20)]
    finished = run_pool(items, tmp_path / "submitit", max_parallel=2, timeout_min=5, poll_s=0.05)
    assert sorted(finished) == sorted(str(i) for i in range(20))
    intervals = [(int((stamps / f"{i}.start").read_text()), int((stamps / f"{i}.end").read_text()))
                 for i in range(20)]
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running, peak = 0, 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2, f"{peak} jobs ran at once on 2 slots"


def test_pool_rejects_missing_limits(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="timeout_min"):
        run_pool([], tmp_path, max_parallel=2, timeout_min=0)
    with pytest.raises(ConfigError, match="max_parallel"):
        run_pool([], tmp_path, max_parallel=0, timeout_min=1)


def test_launch_validates_options_before_anything_runs(tmp_path: Path, text_corpus: Path) -> None:
    plan = make_plan(tmp_path, text_corpus, n_tokens=[2560])
    with pytest.raises(ConfigError, match="timeout_min"):
        launch(plan, timeout_min=0)
    with pytest.raises(ConfigError, match="unknown option"):
        launch(plan, max_paralel=3)
    with pytest.raises(ConfigError, match="backend"):
        launch(plan, backend="kubernetes")
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("spec.json"))


def test_sbatch_extra_parsing() -> None:
    assert parse_sbatch_extra(["--constraint=a100", "--exclusive", "--comment x y"]) == {
        "constraint": "a100", "exclusive": True, "comment": "x y"}
    with pytest.raises(ConfigError, match="sbatch_extra"):
        parse_sbatch_extra(["-c 4"])


def test_sweep_runs_then_relaunch_submits_nothing(tmp_path: Path, text_corpus: Path) -> None:
    plan = make_plan(tmp_path, text_corpus, n_tokens=[2560, 5120, 7680])
    before = sweep_status(plan)
    assert list(before["state"]) == ["pending"] * 3  # planned, no folders yet

    # Launch only the first two runs; the third stays planned.
    first = launch(Plan(sweep=plan.sweep, runs=plan.runs[:2]), verbose=False)
    assert isinstance(first, LaunchReport)
    assert first.submitted == [r.run_id for r in plan.runs[:2]] and not first.failed
    status = sweep_status(plan)
    assert list(status["state"]) == ["done", "done", "pending"]
    assert status["val_loss"].iloc[:2].notna().all()
    assert list(status["n_tokens"]) == [r.n_tokens for r in plan.runs]
    from_disk = sweep_status(plan.sweep.sweep_dir)  # the folder alone: only runs that have one
    assert list(from_disk["run_id"]) == sorted(r.run_id for r in plan.runs[:2])
    for run in plan.runs[:2]:
        result = read_result(plan.sweep.sweep_dir / run.run_id)
        assert result["num_threads"] == 1  # threads_per_job reached torch in the job
        status_json = read_json(plan.sweep.sweep_dir / run.run_id / STATUS)
        assert Path(status_json["stderr"]).is_file() and Path(status_json["stdout"]).is_file()
        assert str(first.folder) in status_json["stderr"]

    second = launch(plan, verbose=False)
    assert second.submitted == [plan.runs[2].run_id]
    assert second.skipped_done == [r.run_id for r in plan.runs[:2]]
    assert second.folder != first.folder  # one submitit folder per launch
    third = launch(plan, verbose=False)
    assert third.submitted == [] and len(third.skipped_done) == 3


def test_failed_run_is_marked_with_its_log_and_others_finish(tmp_path: Path, text_corpus: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    plan = make_plan(tmp_path, text_corpus, n_tokens=[2560, 5120])
    bad = plan.sweep.sweep_dir / plan.runs[0].run_id
    (bad / "metrics.jsonl").mkdir(parents=True)  # the trainer cannot append its metrics: a real failure
    report = launch(plan)
    assert report.failed == [plan.runs[0].run_id]
    assert run_state(plan.sweep.sweep_dir / plan.runs[1].run_id) == "done"
    status = sweep_status(plan)
    row = status.set_index("run_id").loc[plan.runs[0].run_id]
    assert row["state"] == "failed"
    assert Path(row["log"]).is_file() and "IsADirectoryError" in Path(row["log"]).read_text()
    assert "IsADirectoryError" in row["error"]
    err = capsys.readouterr().err
    assert f"FAILED {plan.runs[0].run_id}" in err and str(row["log"]) in err
    assert "[2/2]" in err


@pytest.mark.slow
def test_sigkilled_run_resumes_from_its_checkpoint_with_the_same_loss(tmp_path: Path,
                                                                      text_corpus: Path) -> None:
    n_tokens = [256 * 600]  # 600 steps
    train = {"checkpoint_every_s": 0.2}
    reference = make_plan(tmp_path, text_corpus, n_tokens=n_tokens, results="reference", train=train)
    plan = make_plan(tmp_path, text_corpus, n_tokens=n_tokens, train=train)
    run_id = plan.runs[0].run_id
    run_dir = plan.sweep.sweep_dir / run_id
    assert reference.runs[0].run_id == run_id  # same spec, other results folder

    reports: list[LaunchReport] = []
    thread = threading.Thread(target=lambda: reports.append(launch(plan, verbose=False)))
    thread.start()
    deadline = time.monotonic() + 120
    while not (run_dir / CKPT).exists():
        assert time.monotonic() < deadline and thread.is_alive(), "no checkpoint was written"
        time.sleep(0.01)
    pid = read_json(run_dir / STATUS)["pid"]  # the job process that trains
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=60)
    assert reports and reports[0].failed == [run_id]
    assert read_result(run_dir) is None, "the run finished before it was killed; make it longer"
    killed = sweep_status(plan).iloc[0]
    assert killed["state"] == "failed" and Path(killed["log"]).exists()

    resumed = launch(plan, verbose=False)
    assert resumed.submitted == [run_id] and not resumed.failed
    assert launch(reference, verbose=False).failed == []
    got, want = read_result(run_dir), read_result(reference.sweep.sweep_dir / run_id)
    assert got["steps_done"] == want["steps_done"] == 600
    assert got["val_loss"] == want["val_loss"] and got["train_loss"] == want["train_loss"]


@pytest.mark.slow
def test_wait_false_returns_and_a_detached_pool_finishes_the_sweep(tmp_path: Path, text_corpus: Path) -> None:
    plan = make_plan(tmp_path, text_corpus, n_tokens=[2560, 5120, 7680])
    t0 = time.monotonic()
    report = launch(plan, wait=False, max_parallel=1, verbose=False)
    assert time.monotonic() - t0 < 5 and len(report.submitted) == 3
    deadline = time.monotonic() + 120
    while not (sweep_status(plan)["state"] == "done").all():
        assert time.monotonic() < deadline, sweep_status(plan).to_string()
        assert not (sweep_status(plan)["state"] == "failed").any(), sweep_status(plan).to_string()
        time.sleep(0.2)
    assert (Path(report.folder) / "pool.log").is_file()


def test_pool_gives_each_job_its_own_gpus(tmp_path: Path) -> None:
    """LocalExecutor alone gives every job GPU 0; the pool hands out distinct ids (checked via the env)."""
    code = "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'))"
    items = [(f"j{i}", CommandFunction([sys.executable, "-c", code])) for i in range(4)]
    jobs = run_pool(items, tmp_path, max_parallel=2, timeout_min=5, gpus_per_job=1, visible_gpus=[3, 5])
    seen = {key: job.result().strip() for key, job in jobs.items()}
    assert set(seen.values()) <= {"3", "5"} and len(set(seen.values())) == 2
    with pytest.raises(scaling.errors.LaunchError, match="needs 4 GPUs; this machine shows 2"):
        run_pool(items, tmp_path, max_parallel=2, timeout_min=5, gpus_per_job=2, visible_gpus=[0, 1])


def test_a_requeue_signal_during_start_up_requeues_without_a_checkpoint(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # On a loaded node the time limit can strike while scaling.train is still importing: the handler must
    # not re-import the half-initialised module (that failed the job), just requeue from the last checkpoint.
    import json
    import types

    from submitit.core.utils import DelayedSubmission

    from scaling.launch import TrainJob

    half = types.ModuleType("scaling.train")  # partially initialised: no functions defined yet
    monkeypatch.setitem(sys.modules, "scaling.train", half)
    monkeypatch.setattr(scaling, "train", half, raising=False)
    delayed = TrainJob(str(tmp_path), 1).checkpoint()
    assert isinstance(delayed, DelayedSubmission)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "requeued" and status["checkpoint_saved"] is False
