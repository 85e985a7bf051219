"""The local launcher: a bounded pool of real submitit jobs running the real trainer on tiny runs."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from submitit.helpers import CommandFunction

import scaling
from conftest import tiny_sweep, write_sweep
from scaling.config import LaunchConfig, load_sweep
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
    finished = run_pool(items, tmp_path / "submitit", LaunchConfig(max_parallel=2, timeout_min=5), poll_s=0.05)
    assert sorted(finished) == sorted(str(i) for i in range(20))
    intervals = [(int((stamps / f"{i}.start").read_text()), int((stamps / f"{i}.end").read_text()))
                 for i in range(20)]
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running, peak = 0, 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2, f"{peak} jobs ran at once on 2 slots"


def test_launch_validates_options_before_anything_runs(tmp_path: Path, text_corpus: Path) -> None:
    plan = make_plan(tmp_path, text_corpus, n_tokens=[2560])
    with pytest.raises(ConfigError, match="timeout_min"):
        launch(plan, timeout_min=0)
    with pytest.raises(ConfigError, match=r"\[launch\].max_parallel = 0: must be > 0"):
        launch(plan, max_parallel=0)  # checked where it enters, once (the pool takes the checked config)
    with pytest.raises(ConfigError, match=r"\[launch\].runs_per_gpu = 2: sharing a GPU needs gpus_per_job = 1"):
        launch(plan, runs_per_gpu=2)
    with pytest.raises(ConfigError, match="sbatch_extra"):
        launch(plan, backend="slurm", sbatch_extra=["-c 4"])
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
    jobs = run_pool(items, tmp_path, LaunchConfig(max_parallel=2, timeout_min=5, gpus_per_job=1), visible_gpus=[3, 5])
    seen = {key: job.result().strip() for key, job in jobs.items()}
    assert set(seen.values()) <= {"3", "5"} and len(set(seen.values())) == 2
    with pytest.raises(scaling.errors.LaunchError, match="needs 4 GPUs; this machine shows 2"):
        run_pool(items, tmp_path, LaunchConfig(max_parallel=2, timeout_min=5, gpus_per_job=2), visible_gpus=[0, 1])


def test_a_requeue_signal_during_start_up_requeues_without_a_checkpoint(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # On a loaded node the time limit can strike while scaling.train is still importing: the handler must
    # not re-import the half-initialised module (that failed the job), just requeue from the last checkpoint.
    import json
    import types

    from submitit.core.utils import DelayedSubmission

    from scaling.launch import TrainJob, TrainWorker

    half = types.ModuleType("scaling.train")  # partially initialised: no functions defined yet
    monkeypatch.setitem(sys.modules, "scaling.train", half)
    monkeypatch.setattr(scaling, "train", half, raising=False)
    job_run, worker_run = tmp_path / "job", tmp_path / "worker"
    for run_dir in (job_run, worker_run):
        run_dir.mkdir()
    worker = TrainWorker(tmp_path / "pool", "w0", 1, pool_pid=os.getpid(), time_limit_s=60.0)
    worker.current = str(worker_run)  # a worker of the local pool, between claiming a run and training it
    for run_dir, delayed in ((job_run, TrainJob(str(job_run), 1).checkpoint()), (worker_run, worker.checkpoint())):
        assert isinstance(delayed, DelayedSubmission)
        status = json.loads((run_dir / "status.json").read_text())
        assert status["state"] == "requeued" and status["checkpoint_saved"] is False and status["requeues"] == 1

# ---------------------------------------------------------------------------------------------- throughput


def test_worker_per_slot_gives_bitwise_the_losses_of_one_process_per_run(tmp_path: Path,
                                                                         text_corpus: Path) -> None:
    n_tokens = [2560, 5120, 7680, 3840]
    per_run = make_plan(tmp_path, text_corpus, n_tokens=n_tokens, results="per_run")
    per_slot = make_plan(tmp_path, text_corpus, n_tokens=n_tokens, results="per_slot")
    assert not launch(per_run, verbose=False, process_per_run=True).failed
    report = launch(per_slot, verbose=False)  # the default: a worker process per slot
    assert not report.failed and len(report.submitted) == 4
    for spec in per_run.runs:
        a, b = (read_json(p.sweep.sweep_dir / spec.run_id / "result.json") for p in (per_run, per_slot))
        assert (a["val_loss"], a["train_loss"]) == (b["val_loss"], b["train_loss"]), spec.run_id
    # 4 runs on 2 slots: 2 processes trained them (start-up paid once per slot), not 4.
    pids = {p: {read_json(p.sweep.sweep_dir / r.run_id / STATUS)["pid"] for r in p.runs} for p in (per_run, per_slot)}
    assert len(pids[per_run]) == 4 and len(pids[per_slot]) == 2, pids


def test_runs_start_longest_first(tmp_path: Path, text_corpus: Path) -> None:
    from scaling.launch import job_costs, longest_first

    plan = make_plan(tmp_path, text_corpus, n_tokens=[2560, 7680, 5120])
    costs = job_costs(plan)
    dirs = [plan.sweep.sweep_dir / r.run_id for r in plan.runs]
    assert [costs[d.name] for d in longest_first(dirs, costs)] == sorted(costs.values(), reverse=True)
    assert longest_first(dirs[:1] * 0, costs) == []
    # One slot: the runs are trained in that order (each result.json is written after the previous one).
    assert not launch(plan, verbose=False, max_parallel=1).failed
    finished = sorted(dirs, key=lambda d: (d / "result.json").stat().st_mtime_ns)
    assert [r.run_id for r in sorted(plan.runs, key=lambda r: -r.flops)] == [d.name for d in finished]


def test_work_queue_claims_each_run_once_and_a_requeued_worker_resumes_its_own(tmp_path: Path) -> None:
    from scaling.launch import WorkQueue

    runs = [(tmp_path / name, cost) for name, cost in (("big", 8e9), ("mid", 4e9), ("small", 1e9))]
    queue = WorkQueue.write(tmp_path / "launch", runs)
    assert queue.claim_next("w0") == tmp_path / "big"
    assert queue.claim_next("w1") == tmp_path / "mid"
    assert queue.claim_next("w0") == tmp_path / "big"  # not ended: a requeued w0 trains it first
    queue.end(tmp_path / "big")
    # At 1e9 FLOP/s "small" takes 1 s: it does not fit in 1 s left (80% rule), it does in 10 s.
    assert queue.claim_next("w0", rate=1e9, seconds_left=1.0) is None
    assert queue.claim_next("w0", rate=1e9, seconds_left=10.0, pool_alive=False) is None  # orphan: stop
    assert queue.claim_next("w0", rate=1e9, seconds_left=10.0) == tmp_path / "small"
    assert queue.claim_next("w2") is None
    assert queue.claims() == {"big": "w0", "mid": "w1", "small": "w0"}


def status_table(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["state", "n_params", "flops", "flops_done", "time_s"])


def test_progress_summary_replays_the_longest_first_schedule() -> None:
    from scaling.launch import progress_line, summarize

    table = status_table([
        ("done", 1e5, 4e9, 4e9, 4.0),  # size 1e5 runs at 1e9 FLOP/s
        ("running", 1e6, 8e9, 2e9, 1.0),  # size 1e6 at 2e9 FLOP/s: 3 s left
        ("pending", 1e6, 2e9, 0.0, 0.0),  # 1 s
        ("pending", 1e5, 3e9, 0.0, 0.0),  # 3 s
        ("pending", 1e7, 3.5e9, 0.0, 0.0),  # unmeasured size: overall 6e9 / 5 s = 1.2e9 FLOP/s, ~2.92 s
        ("failed", 1e5, 9e9, 0.0, 0.0),  # not work left
    ])
    p = summarize(table, slots=2, est_flops_per_s=1.0)
    assert (p.n_done, p.n_running, p.n_pending, p.n_failed) == (1, 1, 3, 1)
    assert p.flops_done == 6e9 and p.flops_total == 29.5e9 and p.measured
    assert p.flops_per_s == pytest.approx(1.2e9)
    # Slots free at 3 s (running) and 0 s; longest first: 3.5e9 (2.92 s) -> slot 0, 3e9 (3 s) -> slot 2.92,
    # 2e9 (1 s) -> slot 3: ends at 4 s; the other ends at 5.92 s.
    assert p.eta_s == pytest.approx(3.5e9 / 1.2e9 + 3.0)
    line = progress_line(p, elapsed_s=65)
    assert line == ("1/6 done, 1 running, 3 pending, 1 failed | 6e+09/2.95e+10 FLOPs (20%) | "
                    "1.2e+09 FLOP/s per job | 1m05s elapsed | ETA 6s on 2 slots")
    before = summarize(status_table([("pending", 1e5, 1e10, 0.0, 0.0)] * 3), slots=2, est_flops_per_s=1e9)
    assert not before.measured and before.eta_s == 20.0  # two rounds of 10 s at the plan's estimate
    assert "estimate" in progress_line(before)
    finished = summarize(status_table([("done", 1e5, 1e9, 1e9, 1.0)]), slots=2, est_flops_per_s=1.0)
    assert finished.eta_s == 0 and "nothing left to train" in progress_line(finished)


def test_live_progress_rewrites_one_line_on_a_terminal_and_prints_lines_in_a_log() -> None:
    import io

    from scaling.launch import LiveProgress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    table = status_table([("running", 1e5, 4e9, 1e9, 1.0), ("pending", 1e5, 1e9, 0.0, 0.0)])
    term, log = Terminal(), io.StringIO()
    for stream in (term, log):
        live = LiveProgress(lambda: table, slots=1, est_flops_per_s=1e9, stream=stream, every_s=10)
        live.tick()
        live.tick()  # within the interval: nothing new
        live.say("[1/2] done run-a")
        live.tick(force=True)
        live.close()
    assert term.getvalue().count("\r\033[K") == 3 and term.getvalue().count("\n") == 2  # say + close
    lines = log.getvalue().splitlines()
    assert len(lines) == 3 and lines[1] == "[1/2] done run-a" and "\r" not in log.getvalue()
    assert lines[0].startswith("progress: 0/2 done, 1 running, 1 pending | 1e+09/5e+09 FLOPs (20%)")
    assert lines[0].endswith("ETA 4s on 1 slot")


def test_status_prints_the_progress_line_from_disk(tmp_path: Path, text_corpus: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    from scaling.cli import main
    from scaling.launch.progress import _duration

    cfg = tiny_sweep("tiny", text_corpus, results_dir=tmp_path / "results", grid={"n_tokens": [2560, 5120]},
                     launch={"max_parallel": 2, "est_flops_per_s": 1e6})
    toml = write_sweep(tmp_path / "s.toml", cfg)
    plan = plan_sweep(load_sweep(toml))
    assert main(["status", str(toml)]) == 0
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if line.startswith("progress: ")]
    eta = _duration(max(r.flops for r in plan.runs) / 1e6)  # one run per slot
    assert progress == [f"progress: 0/2 done, 0 running, 2 pending | 0/{plan.total_flops:.3g} FLOPs (0%) | "
                        f"1e+06 FLOP/s per job (estimate, nothing measured yet) | ETA {eta} on 2 slots"], out
    assert "flops_done" not in out


def test_a_worker_that_cannot_start_fails_the_runs_one_by_one(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from scaling.launch import run_workers

    # The job class lives in a module the job processes cannot import (not on their PYTHONPATH): every
    # worker dies unpickling itself, before it takes a run.
    (tmp_path / "only_here.py").write_text("from scaling.launch import TrainJob\nclass Job(TrainJob):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_here

    dirs = [tmp_path / f"run{i}" for i in range(3)]
    seen: list[str] = []
    reported = run_workers(dirs, tmp_path / "launch", LaunchConfig(max_parallel=2, timeout_min=5),
                           costs={d.name: 1.0 for d in dirs}, poll_s=0.05, job_cls=only_here.Job,
                           on_run=lambda d, job: seen.append(d.name))
    assert sorted(seen) == sorted(reported) == ["run0", "run1", "run2"]  # each once, then the pool ends


def test_gpu_slots_spread_runs_over_gpus_before_sharing_one() -> None:
    from scaling.launch import gpu_slots, take_gpus

    free = gpu_slots([3, 5], runs_per_gpu=2)
    assert sorted(free) == [3, 3, 5, 5]
    got = []
    for _ in range(4):
        taken, free = take_gpus(free, 1)
        got += taken
    assert got == [3, 5, 3, 5] and free == []
    taken, free = take_gpus([5, 3, 5], 1)  # GPU 5 has two free slots, GPU 3 one: the emptier GPU first
    assert taken == [5] and sorted(free) == [3, 5]
    # One slot per GPU: the first n free GPUs in order, as the pool always gave them.
    assert take_gpus(gpu_slots([2, 0, 1]), 2) == ([2, 0], [1])
    with pytest.raises(scaling.errors.LaunchError, match="2 distinct GPUs"):
        take_gpus([4, 4], 2)


def test_pool_runs_two_jobs_per_gpu_with_runs_per_gpu(tmp_path: Path) -> None:
    # All four jobs run at once on two GPUs, two on each (read back from the env each job saw).
    code = "import os, time; time.sleep(0.5); print(os.environ.get('CUDA_VISIBLE_DEVICES'))"
    items = [(f"j{i}", CommandFunction([sys.executable, "-c", code])) for i in range(4)]
    jobs = run_pool(items, tmp_path, LaunchConfig(max_parallel=4, timeout_min=5, gpus_per_job=1, runs_per_gpu=2),
                    visible_gpus=[3, 5])
    seen = sorted(job.result().strip() for job in jobs.values())
    assert seen == ["3", "3", "5", "5"]
    with pytest.raises(scaling.errors.LaunchError, match=r"needs 5 GPU slots \(2 runs per GPU\)"):
        run_pool(items, tmp_path, LaunchConfig(max_parallel=5, timeout_min=5, gpus_per_job=1, runs_per_gpu=2),
                 visible_gpus=[0, 1])


def test_runs_per_gpu_is_checked_in_the_config(tmp_path: Path, text_corpus: Path) -> None:
    base = tiny_sweep("gpus", text_corpus, results_dir=tmp_path / "results", grid={"n_tokens": [2560]})
    for launch_cfg, match in [({"runs_per_gpu": 0}, r"\[launch\].runs_per_gpu = 0: must be >= 1"),
                              ({"runs_per_gpu": 2},
                               r"\[launch\].runs_per_gpu = 2: sharing a GPU needs gpus_per_job = 1"),
                              ({"runs_per_gpu": 2, "gpus_per_job": 1, "backend": "slurm"},
                               r"\[launch\].runs_per_gpu = 2: must be 1 on Slurm")]:
        toml = tmp_path / "s.toml"
        write_sweep(toml, base | {"launch": base.get("launch", {}) | launch_cfg})
        with pytest.raises(ConfigError, match=match):
            load_sweep(toml)
    write_sweep(toml, base | {"launch": base.get("launch", {}) | {"runs_per_gpu": 4, "gpus_per_job": 1}})
    assert load_sweep(toml).launch.runs_per_gpu == 4
