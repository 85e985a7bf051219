"""Faults a sweep must survive, on tiny real runs: kills, corrupt files, concurrent launches, divergence,
and malicious pickles in a results folder.

Each guarantee is tested end to end (real launcher subprocesses or real `train_run`s), and the final
numbers are compared with an uninterrupted sweep: on CPU with one thread per job, training is bitwise
deterministic, so val losses must be equal, not merely close.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

import scaling
from conftest import tiny_sweep, write_sweep
from scaling.cli import main
from scaling.config import load_sweep
from scaling.analysis import fit_sweep, select_done
from scaling.launch import launch, sweep_status
from scaling.plan import Plan, plan_sweep
from scaling.results import (CKPT, METRICS, RESULT, SPEC, STATUS, load_results, read_json, read_metrics,
                             read_result, run_state, write_json_atomic)

REPO = Path(scaling.__file__).resolve().parent.parent
STEP_TOKENS = 8 * 32  # batch_size x seq_len of conftest.tiny_sweep


def write_toml(tmp_path: Path, corpus: Path, *, steps: list[int], results: str = "results",
               train: dict | None = None, max_parallel: int = 2) -> Path:
    """A tiny real sweep (1 layer, d_model 32, seq_len 32), one run per entry of `steps`."""
    cfg = tiny_sweep("rel", corpus, results_dir=tmp_path / results, data={"val_tokens": 1024},
                     grid={"n_tokens": [s * STEP_TOKENS for s in steps]},
                     train={"log_every_steps": 1, **(train or {})},
                     launch={"max_parallel": max_parallel, "threads_per_job": 1, "timeout_min": 10})
    return write_sweep(tmp_path / f"{results.replace('/', '_')}.toml", cfg)


def make_plan(tmp_path: Path, corpus: Path, **kwargs: object) -> Plan:
    return plan_sweep(load_sweep(write_toml(tmp_path, corpus, **kwargs)))


def train_in_process(plan: Plan) -> dict[str, float]:
    """Every run of the plan trained here, one after another (what a job does); run_id -> val_loss."""
    from scaling.train import train_run

    out = {}
    for spec in plan.runs:
        run_dir = plan.sweep.sweep_dir / spec.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / SPEC, spec.to_dict())
        out[spec.run_id] = train_run(run_dir, num_threads=1)["val_loss"]
    return out


def val_losses(plan: Plan) -> dict[str, float]:
    frame = load_results(plan.sweep.sweep_dir)
    return dict(zip(frame["run_id"], frame["loss"]))


def train_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir) if "train_loss" in r]


def scaling_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "scaling.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})


def wait_for(cond: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def ckpt_step(run_dir: Path) -> int:
    return int(torch.load(run_dir / CKPT, map_location="cpu", weights_only=True)["step"])


# ------------------------------------------------------------------------------------------ 1. kill -9


@pytest.mark.slow
def test_kill9_of_launcher_and_job_then_relaunch_equals_an_uninterrupted_sweep(
        tmp_path: Path, text_corpus: Path, count_case: Callable) -> None:
    steps = [10, 700, 800]  # on 3 slots all start; the short one ends before the kill
    train = {"checkpoint_every_s": 0.1}
    toml = write_toml(tmp_path, text_corpus, steps=steps, train=train, max_parallel=3)
    plan = plan_sweep(load_sweep(toml))
    reference = make_plan(tmp_path, text_corpus, steps=steps, train=train, results="reference")
    assert [r.run_id for r in reference.runs] == [r.run_id for r in plan.runs]
    short, orphan, killed = (plan.sweep.sweep_dir / r.run_id for r in plan.runs)

    launcher = scaling_cli("run", str(toml), "--no-fit")
    wait_for(lambda: ((killed / CKPT).exists() and is_done(short)) or launcher.poll() is not None,
             "the short run's result and the last run's first checkpoint")
    assert launcher.poll() is None, launcher.communicate()[0]
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    os.kill(read_json(killed / STATUS)["pid"], signal.SIGKILL)  # the job process training this run
    wait_for(lambda: run_state(killed) == "failed", "the killed run to read as failed", 30)
    assert read_result(killed) is None, "the run finished before the kill; make it longer"
    assert is_done(short)
    short_result = (short / RESULT).read_bytes()
    resume_step = ckpt_step(killed)
    assert 0 < resume_step < steps[2]
    before = [r for r in read_metrics(killed) if r["step"] <= resume_step]

    # Relaunch while the orphaned job of the second run may still be training it (its launcher is gone).
    relaunch = scaling_cli("run", str(toml), "--no-fit")
    out = relaunch.communicate(timeout=180)[0]
    assert relaunch.returncode == 0, out
    assert re.search(r"1 submitted \(local\), [12] already done, [01] running elsewhere, 0 failed", out), out
    wait_for(lambda: is_done(orphan), "the orphaned job to finish")

    assert (short / RESULT).read_bytes() == short_result  # the finished run was not retrained
    # Resumed, not restarted: the records up to the checkpoint are the first attempt's, byte for byte
    # (their elapsed_s would differ on a rerun), and each curve is one sequence without a restart.
    assert [r for r in read_metrics(killed) if r["step"] <= resume_step] == before
    for run_dir in (short, orphan, killed):
        assert train_steps(run_dir) == list(range(1, len(train_steps(run_dir)) + 1))
    assert not list(killed.glob(f"{CKPT}.bad-*"))

    want = train_in_process(reference)  # uninterrupted, one thread, like the jobs
    assert val_losses(plan) == want and all(math.isfinite(v) for v in want.values())
    count_case("fault", 3)  # launcher killed, job killed, orphaned job left running


def is_done(run_dir: Path) -> bool:
    return read_result(run_dir) is not None


# ------------------------------------------------------------------------------------------ 2. corrupt files


def test_corrupt_or_half_written_files_are_detected_and_the_run_redone(
        tmp_path: Path, text_corpus: Path, count_case: Callable) -> None:
    plan = make_plan(tmp_path, text_corpus, steps=[40, 50, 60, 70, 80, 90, 100])
    want = train_in_process(plan)
    dirs = [plan.sweep.sweep_dir / r.run_id for r in plan.runs]
    good_result = json.loads((dirs[0] / RESULT).read_text())

    def truncated_result(d: Path) -> None:
        text = (d / RESULT).read_text()
        (d / RESULT).write_text(text[: len(text) // 2])

    def result_missing_fields(d: Path) -> None:
        (d / RESULT).write_text(json.dumps({"status": "done", "val_loss": 0.01}))

    def result_with_bad_numbers(d: Path) -> None:
        (d / RESULT).write_text(json.dumps(good_result | {"val_loss": -1.0}))

    def cut_checkpoint_and_no_result(d: Path) -> None:
        (d / RESULT).unlink()
        data = (d / CKPT).read_bytes()
        (d / CKPT).write_bytes(data[: len(data) // 3])

    def stray_temp_files(d: Path) -> None:
        # A kill between write and rename leaves temp files; a "better" one must never be taken for the result.
        (d / RESULT).rename(d / f".{RESULT}.k3j2.tmp")
        (d / f".{CKPT}.x81q.tmp").write_bytes(b"PK\x03\x04 half a zip")
        with open(d / METRICS, "a") as f:
            f.write('{"step": 99999, "train_lo')  # a torn last line

    def corrupt_spec(d: Path) -> None:
        (d / SPEC).write_text('{"run_id": ')

    def corrupt_status_and_result(d: Path) -> None:
        (d / STATUS).write_bytes(b"\x00\xff garbage")
        (d / RESULT).write_bytes(b"")

    faults = [truncated_result, result_missing_fields, result_with_bad_numbers, cut_checkpoint_and_no_result,
              stray_temp_files, corrupt_spec, corrupt_status_and_result]
    for fault, d in zip(faults, dirs):
        fault(d)
    redo = [r.run_id for r, f in zip(plan.runs, faults) if f is not corrupt_spec]

    # Nothing corrupt enters a fit: those runs read as not done, with NaN loss, and fits exclude them; the
    # finished run with a corrupt spec.json is listed as damaged, not dropped without a word.
    frame = load_results(plan.sweep.sweep_dir)
    rows = frame.set_index("run_id")
    assert set(rows.index) == set(want)
    assert rows.loc[plan.runs[faults.index(corrupt_spec)].run_id, "status"] == "damaged"
    assert (rows.loc[redo, "status"] != "done").all() and rows.loc[redo, "loss"].isna().all()
    done, excluded = select_done(frame)
    assert len(done) == 0 and len(excluded) == len(faults)
    assert fit_sweep(frame, n_boot=0).n_done == 0

    status = sweep_status(plan).set_index("run_id")
    assert (status.loc[redo, "state"] != "done").all()  # what a relaunch submits

    from scaling.train import train_run

    for d in dirs:  # what the relaunched jobs do; the run with a bad spec.json is finished and kept
        if d.name in redo:
            assert train_run(d, num_threads=1)["status"] == "done"
    report = launch(plan, verbose=False)  # restores the lost spec.json of the finished run
    assert report.submitted == [] and len(report.skipped_done) == len(dirs)
    assert val_losses(plan) == want  # every run back, with the same loss as before the damage
    cut = dirs[faults.index(cut_checkpoint_and_no_result)]
    assert len(list(cut.glob(f"{CKPT}.bad-*"))) == 1  # the cut checkpoint was set aside, not loaded
    stray = dirs[faults.index(stray_temp_files)]
    assert not list(stray.glob(f".{CKPT}.*.tmp"))
    for d in dirs:
        assert train_steps(d) == list(range(1, len(train_steps(d)) + 1)), d.name
    count_case("fault", len(faults))


# ------------------------------------------------------------------------------------------ 3. two launches


@pytest.mark.slow
def test_two_concurrent_launches_train_each_run_once(tmp_path: Path, text_corpus: Path,
                                                     count_case: Callable) -> None:
    steps = [150, 200, 250, 300]
    toml = write_toml(tmp_path, text_corpus, steps=steps)
    plan = plan_sweep(load_sweep(toml))
    first, second = scaling_cli("run", str(toml), "--no-fit"), scaling_cli("run", str(toml), "--no-fit")
    outs = [p.communicate(timeout=240)[0] for p in (first, second)]
    for p, out in zip((first, second), outs):
        assert p.returncode == 0, out
    submitted = [int(re.search(r"launch: (\d+) submitted", out).group(1)) for out in outs]
    assert sum(submitted) > len(steps), outs  # the launches overlapped: some runs were submitted by both
    status = sweep_status(plan)
    assert (status["state"] == "done").all(), status.to_string()
    for spec, n in zip(plan.runs, steps):
        run_dir = plan.sweep.sweep_dir / spec.run_id
        # One training: a single step sequence 1..n, no restart, one final eval.
        assert train_steps(run_dir) == list(range(1, n + 1))
        assert sum("val_loss" in r for r in read_metrics(run_dir)) == 1
    count_case("fault")


# ------------------------------------------------------------------------------------------ 4. divergence

_HOOK = '''
"""Test hook: a TrainJob whose run diverges at step 30 (NaN via an infinite LR, or a spike via a huge one)."""
import os
from scaling.launch import TrainJob


class DivergingJob(TrainJob):
    def __call__(self):
        kind = dict(x.split("=") for x in os.environ["DIVERGE"].split(",")).get(os.path.basename(self.run_dir))
        if not kind:
            return super().__call__()
        import scaling.train as train
        lr_at, bad = train.lr_at, float("inf") if kind == "nan" else 50.0
        train.lr_at = lambda step, spec: bad if step == 30 else lr_at(step, spec)
        try:
            return super().__call__()
        finally:  # a worker process trains other runs after this one
            train.lr_at = lr_at
'''


@pytest.mark.slow
def test_diverged_runs_are_marked_kept_and_excluded_while_the_sweep_goes_on(
        tmp_path: Path, text_corpus: Path, monkeypatch: pytest.MonkeyPatch, count_case: Callable) -> None:
    plan = make_plan(tmp_path, text_corpus, steps=[60, 70, 80, 90])
    nan_id, spike_id = plan.runs[1].run_id, plan.runs[2].run_id
    (tmp_path / "diverge_hook.py").write_text(_HOOK)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("DIVERGE", f"{nan_id}=nan,{spike_id}=spike")
    import diverge_hook

    monkeypatch.setattr("scaling.launch.local.TrainJob", diverge_hook.DivergingJob)  # the local backend's job
    report = launch(plan, verbose=False)
    assert report.failed == [] and len(report.submitted) == 4

    frame = load_results(plan.sweep.sweep_dir).set_index("run_id")
    assert len(frame) == 4  # diverged rows stay in the table
    assert frame.loc[nan_id, "status"] == "diverged" and "non-finite loss" in frame.loc[nan_id, "reason"]
    assert frame.loc[spike_id, "status"] == "diverged" and "loss spike" in frame.loc[spike_id, "reason"]
    assert "at step 32" in frame.loc[spike_id, "reason"]  # the update at step 30 (0-based) blew up
    others = frame.drop(index=[nan_id, spike_id])
    assert (others["status"] == "done").all() and others["loss"].notna().all()  # the sweep went on

    report = fit_sweep(load_results(plan.sweep.sweep_dir), n_boot=0)
    assert report.n_runs == 4 and report.n_done == 2
    text = "\n".join(report.diagnostics)
    assert f"excluded run {nan_id}: status=diverged (non-finite loss" in text
    assert f"excluded run {spike_id}: status=diverged (loss spike" in text
    assert launch(plan, verbose=False).submitted == []  # diverged is final: never retried blindly
    count_case("fault", 2)


def test_normal_training_noise_is_not_a_spike(tmp_path: Path, text_corpus: Path, count_case: Callable) -> None:
    from scaling.train import SPIKE_FACTOR

    plan = make_plan(tmp_path, text_corpus, steps=[400], train={"warmup_fraction": 0.0, "lr": 0.02})
    train_in_process(plan)
    run_dir = plan.sweep.sweep_dir / plan.runs[0].run_id
    assert read_result(run_dir)["status"] == "done"
    losses = [r["train_loss"] for r in read_metrics(run_dir) if "train_loss" in r]
    assert max(losses[1:]) < SPIKE_FACTOR * min(losses)  # the rule has headroom on a noisy tiny run
    count_case("fault")


# ------------------------------------------------------------------------------------------ 6. pickles


class _Evil:
    """Unpickling this creates `path`: proof that a pickle was loaded with full pickle semantics."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def test_no_pickle_from_a_results_folder_is_ever_unpickled(tmp_path: Path, text_corpus: Path,
                                                           capsys: pytest.CaptureFixture,
                                                           count_case: Callable) -> None:
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Evil(marker))
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Evil(probe)))
    assert probe.exists()  # the payload works when someone does unpickle it

    toml = write_toml(tmp_path, text_corpus, steps=[40, 50, 60])
    plan = plan_sweep(load_sweep(toml))
    reference = make_plan(tmp_path, text_corpus, steps=[40, 50, 60], results="reference")
    want = train_in_process(reference)
    train_in_process(plan)
    dirs = [plan.sweep.sweep_dir / r.run_id for r in plan.runs]
    (dirs[0] / CKPT).write_bytes(payload)  # raw pickle as the checkpoint of a finished run
    torch.save({"model": _Evil(marker)}, dirs[1] / CKPT)  # torch's zip format, pickle inside
    for d in dirs:
        (d / "extra.pkl").write_bytes(payload)
        (d / "result.pkl").write_bytes(payload)
    (plan.sweep.sweep_dir / "table.pkl").write_bytes(payload)
    (plan.sweep.sweep_dir / ".submitit" / "x").mkdir(parents=True)
    (plan.sweep.sweep_dir / ".submitit" / "x" / "evil_submitted.pkl").write_bytes(payload)

    assert main(["status", str(toml)]) == 0
    assert main(["fit", str(plan.sweep.sweep_dir), "--n-boot", "0"]) in (0, 2)
    assert main(["plot", str(toml), "--n-boot", "0"]) in (0, 2)
    load_results(plan.sweep.sweep_dir)
    capsys.readouterr()
    assert not marker.exists()

    # A run to resume whose checkpoint is malicious: rejected, set aside, trained from scratch.
    for d in dirs[:2]:
        (d / RESULT).unlink()
    got = train_in_process(plan)
    assert not marker.exists()
    for d in dirs[:2]:
        assert len(list(d.glob(f"{CKPT}.bad-*"))) == 1
        assert train_steps(d) == list(range(1, len(train_steps(d)) + 1))
    assert got == want
    count_case("fault", 5)  # status, fit, plot, resume of a raw pickle, resume of a torch zip


def test_every_torch_load_is_weights_only_and_nothing_else_unpickles(count_case: Callable) -> None:
    sources = {p.name: p.read_text() for p in (REPO / "scaling").glob("*.py")}
    loads = [(name, line) for name, text in sources.items() for line in text.splitlines() if "torch.load(" in line]
    assert loads and all("weights_only=True" in line for _, line in loads), loads
    for name, text in sources.items():
        assert not re.search(r"\bpickle\.loads?\(|read_pickle\(|cloudpickle|dill\.", text), name
    count_case("fault")


# ------------------------------------------------------------------------------------------ 7. damaged files

_RESULT_DAMAGE = {  # result.json of a finished run, edited by a hostile user or a bad disk
    "val_loss 10**400 (an int no float holds)": {"val_loss": 10**400},
    "val_loss 1e300": {"val_loss": 1e300}, "val_loss 1e-300": {"val_loss": 1e-300},
    "train_loss a string": {"train_loss": "low"}, "n_params 1e300": {"n_params": 1e300},
    "status unknown": {"status": "maybe"},
}
_SPEC_DAMAGE = {
    "shape a list": {"shape": [1, 2]}, "arch a number": {"shape": {"arch": 5, "n_layer": 1}},
    "lr a string": {"lr": "fast"}, "n_layer a float": {"shape": {"arch": "gpt", "n_layer": 1.5}},
}
_STATUS_DAMAGE = {"time a string": {"time": "noon"}, "time a list": {"time": [1]}, "state a number": {"state": 3}}
_RAW_DAMAGE = {  # whole files
    "spec.json deleted": (SPEC, None), "spec.json random bytes": (SPEC, bytes(range(256))),
    "result.json a bare number": (RESULT, b"3.5"), "status.json random bytes": (STATUS, b"\xff\xfe\x00{"),
}


def test_damaged_run_files_are_reported_per_run_and_never_crash_or_enter_a_fit(
        tmp_path: Path, text_corpus: Path, capsys: pytest.CaptureFixture, count_case: Callable) -> None:
    toml = write_toml(tmp_path, text_corpus, steps=[5, 6, 7])
    plan = plan_sweep(load_sweep(toml))
    train_in_process(plan)
    victim = plan.sweep.sweep_dir / plan.runs[0].run_id
    pristine = {name: (victim / name).read_bytes() for name in (SPEC, RESULT, STATUS)}
    cases = ([(RESULT, edit) for edit in _RESULT_DAMAGE.values()] + [(SPEC, e) for e in _SPEC_DAMAGE.values()]
             + [(STATUS, e) for e in _STATUS_DAMAGE.values()] + list(_RAW_DAMAGE.values()))
    for name, edit in cases:
        for n, data in pristine.items():
            (victim / n).write_bytes(data)
        if isinstance(edit, dict):
            write_json_atomic(victim / name, json.loads(pristine[name]) | edit)
        elif edit is None:
            (victim / name).unlink()
        else:
            (victim / name).write_bytes(edit)
        if name == STATUS:  # a finished run's result.json outranks its status; damage an unfinished one
            (victim / RESULT).unlink()
        case = f"{name} {edit!r}"[:80]
        assert run_state(victim) == "damaged", case
        row = load_results(plan.sweep.sweep_dir).set_index("run_id").loc[victim.name]
        assert row["status"] == "damaged" and row["reason"].startswith(name), (case, row["reason"])
        done, excluded = select_done(load_results(plan.sweep.sweep_dir))
        assert victim.name not in set(done["run_id"]) and any(victim.name in e for e in excluded), case
        status = sweep_status(plan.sweep.sweep_dir).set_index("run_id")
        assert status.loc[victim.name, "state"] == "damaged" and name in status.loc[victim.name, "error"], case
        assert main(["status", str(toml)]) == 0, case
        assert main(["fit", str(plan.sweep.sweep_dir), "--n-boot", "0"]) == 0, case  # on the 2 good runs
        out = capsys.readouterr()
        assert f"excluded run {victim.name}: status=damaged ({name}: " in out.out, (case, out.out)
        assert "Traceback" not in out.err, (case, out.err)
        count_case("damage")

    # A lost spec.json beside a good result is repaired by a relaunch, without training.
    for n, data in pristine.items():
        (victim / n).write_bytes(data)
    (victim / SPEC).unlink()
    report = launch(plan, verbose=False)
    assert report.submitted == [] and run_state(victim) == "done"
    # A damaged result is redone by training, to the same loss.
    write_json_atomic(victim / RESULT, json.loads(pristine[RESULT]) | {"val_loss": 10**400})
    from scaling.train import train_run

    assert train_run(victim, num_threads=1)["val_loss"] == json.loads(pristine[RESULT])["val_loss"]


@pytest.mark.parametrize("lines", [b"7\n", b'{"step": "x", "train_loss": 1.0}\n', bytes(range(256)) + b"\n",
                                   b'{"step": true}\n[1, 2]\n"text"\n'],
                         ids=["bare number", "string step", "random bytes", "bool step, list, string"])
def test_damaged_metrics_lines_are_dropped_and_the_run_trains(tmp_path: Path, text_corpus: Path, lines: bytes,
                                                              count_case: Callable) -> None:
    from scaling.train import train_run

    plan = make_plan(tmp_path, text_corpus, steps=[6])
    run_dir = plan.sweep.sweep_dir / plan.runs[0].run_id
    run_dir.mkdir(parents=True)
    write_json_atomic(run_dir / SPEC, plan.runs[0].to_dict())
    (run_dir / METRICS).write_bytes(b'{"step": 1, "train_loss": 9.0}\n' + lines)
    assert train_run(run_dir, num_threads=1)["status"] == "done"
    assert train_steps(run_dir) == list(range(1, 7))  # the stale step-1 record was dropped too (resume at 0)
    assert (run_dir / METRICS).read_bytes().decode().count("\n") == len(read_metrics(run_dir))
    count_case("damage")


# ------------------------------------------------------------------------------------------ 8. signals

LONG = 10**6  # steps no test run reaches: the runs are stopped, never finished


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")  # zombies are dead


def training_pid(run_dir: Path) -> int | None:
    """The pid of the job process training run_dir (from its heartbeat), or None before it starts."""
    status = read_json(run_dir / STATUS) or {}
    return int(status["pid"]) if status.get("state") == "running" and "n_steps" in status else None


def kill_trainers(dirs: list[Path]) -> None:
    """Clean up after a failed assertion: no test leaves a 10^6-step job behind."""
    for d in dirs:
        pid = training_pid(d)
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("sig, group", [(signal.SIGTERM, False), (signal.SIGHUP, False), (signal.SIGINT, False),
                                        (signal.SIGINT, True)], ids=["SIGTERM", "SIGHUP", "SIGINT", "Ctrl-C"])
def test_a_stopped_launcher_cancels_its_jobs_and_leaves_its_runs_interrupted(
        tmp_path: Path, text_corpus: Path, sig: signal.Signals, group: bool, count_case: Callable) -> None:
    toml = write_toml(tmp_path, text_corpus, steps=[LONG, LONG + 1])
    dirs = [load_sweep(toml).sweep_dir / r.run_id for r in plan_sweep(load_sweep(toml)).runs]
    # Ctrl-C in a terminal signals the whole foreground process group: launcher, job controllers and jobs.
    launcher = subprocess.Popen([sys.executable, "-m", "scaling.cli", "run", str(toml), "--no-fit"], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=os.environ | {"PYTHONUNBUFFERED": "1"}, start_new_session=group)
    try:
        wait_for(lambda: all(training_pid(d) for d in dirs) or launcher.poll() is not None, "both jobs to train")
        assert launcher.poll() is None, launcher.communicate()[0]
        pids = [training_pid(d) for d in dirs]
        os.killpg(launcher.pid, sig) if group else os.kill(launcher.pid, sig)
        out = launcher.communicate(timeout=60)[0]
    finally:
        if launcher.poll() is None:
            launcher.kill()
            kill_trainers(dirs)
    assert launcher.returncode == 128 + sig, out
    assert "Traceback" not in out and "interrupted" in out.splitlines()[-1], out
    wait_for(lambda: not any(pid_alive(p) for p in pids), "the jobs to end", 20)  # no orphans
    assert [run_state(d) for d in dirs] == ["interrupted"] * 2
    assert all("rerun to resume" in e for e in sweep_status(load_sweep(toml).sweep_dir)["error"])
    count_case("signals")


@pytest.mark.slow
def test_after_a_kill9_a_rerun_counts_orphaned_jobs_against_max_parallel(
        tmp_path: Path, text_corpus: Path, count_case: Callable) -> None:
    toml = write_toml(tmp_path, text_corpus, steps=[LONG, LONG + 1, LONG + 2, LONG + 3])  # max_parallel 2
    # In the order the launcher starts them (longest first): two train, two wait for a slot.
    dirs = [load_sweep(toml).sweep_dir / r.run_id
            for r in sorted(plan_sweep(load_sweep(toml)).runs, key=lambda r: -r.flops)]
    first = scaling_cli("run", str(toml), "--no-fit")
    wait_for(lambda: all(training_pid(d) for d in dirs[:2]) or first.poll() is not None, "two jobs to train")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    orphans = [training_pid(d) for d in dirs[:2]]
    assert all(pid_alive(p) for p in orphans)

    rerun = scaling_cli("run", str(toml), "--no-fit")
    try:
        wait_for(lambda: all((read_json(d / STATUS) or {}).get("pid") == rerun.pid for d in dirs[2:]),
                 "the rerun to submit the two free runs")
        time.sleep(4)  # time enough to start jobs beside the orphans, had it not waited for a slot
        assert [training_pid(d) for d in dirs[2:]] == [None, None]
        assert sum(pid_alive(p) for p in orphans) == 2
        for pid in orphans:  # the orphans end: their slots go to the rerun's runs
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: all(training_pid(d) for d in dirs[2:]), "the rerun's jobs to start")
        assert not any(pid_alive(p) for p in orphans)
        started = [training_pid(d) for d in dirs[2:]]
        os.kill(rerun.pid, signal.SIGTERM)
        out = rerun.communicate(timeout=60)[0]
        assert "count against max_parallel = 2" in out and "Traceback" not in out, out
        wait_for(lambda: not any(pid_alive(p) for p in started), "the rerun's jobs to end", 20)
    finally:
        if rerun.poll() is None:
            rerun.kill()
        kill_trainers(dirs)
    count_case("signals")


# ------------------------------------------------------------------------------------------ 9. disk full


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """A real 1 MiB tmpfs at tmp_path/full; call it with the bytes to leave free and it fills the rest."""
    mount = tmp_path / "full"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")

    def fill(leave_free: int) -> Path:
        filler = mount / "filler"
        with open(filler, "ab", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        size = filler.stat().st_size
        os.truncate(filler, max(0, size - leave_free))
        return mount

    try:
        yield fill
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob(".*.tmp")]


def test_a_full_disk_is_one_clear_error_and_leaves_no_temp_file(
        tmp_path: Path, text_corpus: Path, full_disk: Callable, capsys: pytest.CaptureFixture,
        count_case: Callable) -> None:
    from scaling.errors import StorageError
    from scaling.results import export_csv
    from scaling.train import train_run

    disk = full_disk(0)
    with pytest.raises(StorageError, match=r"a\.json: cannot write: no space left on device"):
        write_json_atomic(disk / "a.json", {"x": "y" * 100_000})
    with pytest.raises(StorageError, match=r"t\.csv: cannot write: no space left on device"):
        export_csv(load_results(tmp_path), disk / "t.csv")
    assert no_temp_files(disk)
    count_case("disk-full", 2)

    # The launcher: spec.json of the first run cannot be written.
    toml = write_toml(tmp_path, text_corpus, steps=[5], results="full/results")
    assert main(["run", str(toml), "--no-fit"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "StorageError: " in err[0] and "no space left on device" in err[0], err
    count_case("disk-full")

    # A job: status and metrics fit in the space left, the first checkpoint (~250 KB) does not; torch.save
    # would say "RuntimeError ... unexpected pos".
    (disk / "filler").unlink()
    plan = plan_sweep(load_sweep(write_toml(tmp_path, text_corpus, steps=[400], results="full/results",
                                            train={"checkpoint_every_s": 0.01})))
    run_dir = plan.sweep.sweep_dir / plan.runs[0].run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / SPEC, plan.runs[0].to_dict())
    full_disk(64 * 1024)
    with pytest.raises(StorageError, match=r"ckpt\.pt: cannot write: no space left on device"):
        train_run(run_dir, num_threads=1)
    assert no_temp_files(disk) and not (run_dir / CKPT).exists()
    count_case("disk-full")

    # fit: the report cannot be written under --out.
    (disk / "filler").unlink()
    csv = tmp_path / "points.csv"
    csv.write_text("params,tokens,loss\n" + "".join(f"{n},{d},{2 + 1e3 / n + 1e3 / d}\n"
                                                     for n in (1e5, 1e6, 1e7) for d in (1e8, 1e9)))
    full_disk(0)
    assert main(["fit", str(csv), "--n-boot", "0", "--out", str(disk / "fit")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on device" in err[0].lower(), err
    assert no_temp_files(disk)
    count_case("disk-full")
