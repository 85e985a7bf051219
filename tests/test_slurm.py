"""The Slurm launcher against a real single-node Slurm 22.05 (scripts/slurm_ci.sh), started for this module.

Job arrays, chunking below MaxArraySize, a real time limit and a real partition preemption that both
requeue the job and resume it from its checkpoint, `wait=False` + status from disk, relaunch.
"""

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import scaling
from conftest import tiny_sweep, write_sweep
from scaling.config import load_sweep
from scaling.launch import launch, sweep_status
from scaling.plan import Plan, plan_sweep
from scaling.results import CKPT, RESULT, STATUS, read_json, read_result

REPO = Path(scaling.__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "slurm_ci.sh"
CANNOT_INSTALL = 3  # slurm_ci.sh's exit status when Slurm is missing and cannot be installed here

# One worker runs this whole module under pytest-xdist (--dist loadgroup): one Slurm per machine.
pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]


@pytest.fixture(scope="module")
def slurm() -> Iterator[str]:
    """A running Slurm with accounting; SLURM_CONF is set for this module and the cluster stopped after."""
    # Not under pytest's 0700 tmp dirs: munged wants every parent of its socket world-executable.
    base = Path(tempfile.mkdtemp(prefix="scaling-slurm-", dir="/tmp"))
    base.chmod(0o755)
    env = dict(os.environ, SLURM_CI_BASE=str(base))
    t0 = time.monotonic()
    proc = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode == CANNOT_INSTALL and not os.environ.get("SCALING_REQUIRE_SLURM"):
        pytest.skip(f"Slurm is not installed and cannot be installed here: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, f"slurm_ci.sh start failed:\n{proc.stdout}\n{proc.stderr}"
    conf = str(base / "slurm.conf")
    assert f"export SLURM_CONF={conf}" in proc.stdout
    print(f"Slurm up in {time.monotonic() - t0:.1f} s ({base})")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", conf)
        try:
            yield conf
        finally:
            subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
            shutil.rmtree(base, ignore_errors=True)


def make_plan(tmp_path: Path, corpus: Path, *, n_tokens: list[int], results: str = "results",
              shape: dict | None = None, seq_len: int = 32, batch_size: int = 8,
              launch: dict | None = None) -> Plan:
    options = {"backend": "slurm", "partition": "debug", "max_parallel": 2, "threads_per_job": 1,
               "timeout_min": 5, **(launch or {})}
    cfg = tiny_sweep("slurm", corpus, results_dir=tmp_path / results, model={"seq_len": seq_len},
                     grid={"shapes": [shape or {"n_layer": 1, "d_model": 32}], "n_tokens": n_tokens},
                     train={"batch_size": batch_size, "log_every_steps": 10, "checkpoint_every_s": 3},
                     launch=options)
    return plan_sweep(load_sweep(write_sweep(tmp_path / f"{results}.toml", cfg)))


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.25) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(poll_s)


def test_sweep_runs_as_job_arrays_chunked_below_max_array_size(slurm: str, tmp_path: Path,
                                                               text_corpus: Path) -> None:
    plan = make_plan(tmp_path, text_corpus, n_tokens=[2560, 5120, 7680],
                     launch={"max_array_size": 2, "sbatch_extra": ["--comment=scaling-ci"]})
    report = launch(plan, poll_s=0.5)
    assert report.failed == [] and len(report.submitted) == 3
    assert report.n_arrays == 2  # 3 runs, at most 2 per array
    assert len({job_id.split("_")[0] for job_id in report.job_ids.values()}) == 2
    # Array tasks in longest-first order (Slurm starts them by index): the largest run is the first array's _0.
    by_task = sorted(report.job_ids, key=lambda r: tuple(int(x) for x in report.job_ids[r].split("_")))
    assert by_task == [r.run_id for r in sorted(plan.runs, key=lambda r: -r.flops)]
    assert (sweep_status(plan)["state"] == "done").all()
    scripts = "\n".join(p.read_text() for p in Path(report.folder).rglob("*.sh"))
    for option in ("--array=0-1%2", "--partition=debug", "--time=5", "--cpus-per-task=1",
                   "--signal=USR2@", "--comment=scaling-ci", "export OMP_NUM_THREADS=1"):
        assert option in scripts, option

    def all_completed() -> bool:  # accounting works, so submitit's states are real too (jobs exit after writing)
        sacct = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State"], capture_output=True, text=True,
                               check=True).stdout
        return all(f"{job_id}|COMPLETED" in sacct for job_id in report.job_ids.values())

    wait_until(all_completed, 30, "sacct to report every job COMPLETED")


def test_wait_false_returns_then_status_reads_disk_and_relaunch_submits_only_missing(
        slurm: str, tmp_path: Path, text_corpus: Path) -> None:
    plan = make_plan(tmp_path, text_corpus, n_tokens=[2560, 5120, 7680])
    first = Plan(sweep=plan.sweep, runs=plan.runs[:2])
    t0 = time.monotonic()
    report = launch(first, wait=False)
    assert time.monotonic() - t0 < 10 and len(report.submitted) == 2
    states = set(sweep_status(plan)["state"])
    assert states <= {"pending", "running", "done"}
    wait_until(lambda: list(sweep_status(plan)["state"]) == ["done", "done", "pending"], 120,
               "the two submitted runs")
    # one result lost (e.g. a deleted folder): the relaunch redoes it and the never-launched run, nothing else
    (plan.sweep.sweep_dir / plan.runs[0].run_id / RESULT).unlink()
    again = launch(plan, poll_s=0.5)
    assert again.submitted == [plan.runs[0].run_id, plan.runs[2].run_id]
    assert again.skipped_done == [plan.runs[1].run_id] and again.failed == []
    assert (sweep_status(plan)["state"] == "done").all()


# Long enough to be interrupted (6000 steps: ~100 s of training on an idle 2-core CI machine, ~60 steps/s,
# more than one 2-minute attempt can train); shared with its uninterrupted reference.
LONG = dict(n_tokens=[1024 * 6000], shape={"n_layer": 2, "d_model": 64}, seq_len=64, batch_size=16)
# A preemption comes a few seconds after the first checkpoint (3 s of training): 2500 steps (~25-40 s) are
# enough to be preempted mid-run and cost less than half of LONG's training.
SHORT = dict(LONG, n_tokens=[1024 * 2500])


def background_reference(tmp: Path, corpus: Path, run: dict) -> dict:
    """`run` trained without interruption by the local launcher, in the background while other tests run.

    Returns its run_id, the steps its spec plans and `get()`, which waits for its result.json and returns it."""
    plan = make_plan(tmp, corpus, results="reference", launch={"backend": "local"}, **run)
    launch(plan, wait=False)
    run_dir = plan.sweep.sweep_dir / plan.runs[0].run_id
    result: dict = {}

    def get() -> dict:
        if not result:
            wait_until(lambda: read_result(run_dir) is not None, 600, "the reference run")
            result.update(read_result(run_dir))
        return result

    return {"run_id": plan.runs[0].run_id, "get": get, "steps": plan.runs[0].n_steps}


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory: pytest.TempPathFactory, text_corpus: Path) -> dict:
    return background_reference(tmp_path_factory.mktemp("long"), text_corpus, LONG)


@pytest.fixture(scope="module")
def short_reference(tmp_path_factory: pytest.TempPathFactory, text_corpus: Path) -> dict:
    return background_reference(tmp_path_factory.mktemp("short"), text_corpus, SHORT)


def assert_same_final_loss(run_dir: Path, reference: dict) -> None:
    got, want = read_result(run_dir), reference["get"]()
    assert got["steps_done"] == want["steps_done"] == reference["steps"]
    assert got["val_loss"] == want["val_loss"] and got["train_loss"] == want["train_loss"]


@pytest.mark.slow
def test_real_timeout_requeues_and_resumes_with_the_same_loss(slurm: str, tmp_path: Path, text_corpus: Path,
                                                             long_reference: dict) -> None:
    plan = make_plan(tmp_path, text_corpus, launch={"timeout_min": 2, "max_num_timeout": 8}, **LONG)
    run_dir = plan.sweep.sweep_dir / plan.runs[0].run_id
    assert plan.runs[0].run_id == long_reference["run_id"]
    # USR2 35 s before the 2-minute limit. Slurm sends --signal up to 60 s early (sbatch(1): "due to the
    # resolution of event handling"): with a 1-minute limit it once came before Python had started and
    # killed the job. Here it comes 25-85 s into each attempt, after start-up and before the run's ~100 s
    # of training is done; max_num_timeout = 8 leaves room for short attempts on a slow machine.
    report = launch(plan, signal_delay_s=35, poll_s=0.5)
    assert report.failed == []
    status = read_json(run_dir / STATUS)
    # Whether the last signal itself saved (False when it came inside an optimizer update, and the periodic
    # checkpoint was the resume point) is chance; that the job was requeued and ended bitwise the same is not.
    assert status.get("requeues", 0) >= 1, f"the job was never requeued: {status}"
    assert_same_final_loss(run_dir, long_reference)


@pytest.mark.slow
def test_partition_preemption_requeues_and_resumes_with_the_same_loss(slurm: str, tmp_path: Path,
                                                                      text_corpus: Path,
                                                                      short_reference: dict) -> None:
    plan = make_plan(tmp_path, text_corpus, launch={"partition": "low", "timeout_min": 30}, **SHORT)
    run_dir = plan.sweep.sweep_dir / plan.runs[0].run_id
    assert plan.runs[0].run_id == short_reference["run_id"]
    launch(plan, wait=False)
    wait_until(lambda: (run_dir / CKPT).exists(), 120, "the first checkpoint")
    # A job on the high-priority partition that needs every CPU of the node preempts ours.
    high = subprocess.run(["sbatch", "--parsable", "-p", "high", f"--cpus-per-task={os.cpu_count()}",
                           "-o", str(tmp_path / "high.out"), "--wrap", "sleep 2"],
                          capture_output=True, text=True, check=True).stdout.strip()
    wait_until(lambda: read_json(run_dir / STATUS).get("state") == "requeued", 60, "the requeue")
    wait_until(lambda: read_result(run_dir) is not None, 400, "the preempted run to finish")
    sacct = subprocess.run(["sacct", "-n", "-X", "-P", "-j", high, "-o", "State"], capture_output=True,
                           text=True, check=True).stdout
    assert "COMPLETED" in sacct
    assert sweep_status(plan).iloc[0]["state"] == "done"
    assert_same_final_loss(run_dir, short_reference)


@pytest.mark.slow
def test_two_tasks_per_job_train_one_run_with_ddp(slurm: str, tmp_path: Path, text_corpus: Path) -> None:
    plan = make_plan(tmp_path, text_corpus, n_tokens=[5120], launch={"tasks_per_job": 2})
    report = launch(plan, poll_s=0.5)
    assert report.failed == []
    run_dir = plan.sweep.sweep_dir / plan.runs[0].run_id
    result = read_result(run_dir)
    assert result["world_size"] == 2 and result["steps_done"] == 20
    scripts = "\n".join(p.read_text() for p in Path(report.folder).rglob("*.sh"))
    assert "--ntasks-per-node=2" in scripts
    assert len(list(Path(report.folder).rglob("*_1_log.err"))) == 1  # submitit started a second task

    # The same spec trained by one process in this one: the same run up to float reduction order.
    from scaling.train import train_run

    single = tmp_path / "single" / run_dir.name
    single.mkdir(parents=True)
    shutil.copy(run_dir / "spec.json", single / "spec.json")
    assert train_run(single, num_threads=1)["val_loss"] == pytest.approx(result["val_loss"], rel=1e-5)


def test_slurm_ci_script_is_self_contained() -> None:
    text = SCRIPT.read_text()
    for setting in ("cred_expire=5", "batch_sched_delay=0", "CR_Core", "PreemptMode=REQUEUE",
                    "preempt_send_user_signal", "GraceTime", "slurmdbd", "apt-get update"):
        assert setting in text, setting
    assert shutil.which("bash")


@pytest.mark.slow
def test_a_plug_in_model_trains_on_slurm_imported_from_the_submission_directory(
        slurm: str, tmp_path: Path, text_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(REPO / "tests" / "data" / "toy_models.py", tmp_path / "slurm_models.py")
    monkeypatch.chdir(tmp_path)  # the jobs start here (sbatch's default) and import slurm_models from it
    cfg = tiny_sweep("plugin", text_corpus, results_dir=tmp_path / "results", grid={"n_tokens": [2560]},
                     model={"arch": "slurm_models:build"},
                     launch={"backend": "slurm", "partition": "debug", "threads_per_job": 1, "timeout_min": 5})
    plan = plan_sweep(load_sweep(write_sweep(tmp_path / "plugin.toml", cfg)))
    assert launch(plan, poll_s=0.5).failed == []
    result = read_result(plan.sweep.sweep_dir / plan.runs[0].run_id)
    assert result["status"] == "done" and result["n_params"] == plan.runs[0].n_params


@pytest.mark.slow
def test_an_external_command_runs_on_slurm_and_a_usr2_requeue_resumes_it(slurm: str, tmp_path: Path,
                                                                        text_corpus: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # [train].command on Slurm: the job runs tests/data/toy_train.py from the submission directory. USR2 (what
    # Slurm sends on preemption or before the time limit, here by scancel) reaches submitit, which forwards
    # SIGTERM to the script (USR2 itself is ignored there), requeues, and the script resumes in its run folder.
    shutil.copy(REPO / "tests" / "data" / "toy_train.py", tmp_path / "toy_train.py")
    monkeypatch.chdir(tmp_path)
    command = ("{python} toy_train.py --n_params={n_params} --n_tokens={n_tokens} --n_steps={n_steps} "
               "--seed={seed} --out={run_dir} --step_s=0.25")
    cfg = tiny_sweep("ext", text_corpus, results_dir=tmp_path / "results", grid={"n_tokens": [256 * 40]},
                     train={"command": command},
                     launch={"backend": "slurm", "partition": "debug", "threads_per_job": 1, "timeout_min": 5})
    plan = plan_sweep(load_sweep(write_sweep(tmp_path / "ext.toml", cfg)))
    spec = plan.runs[0]
    run_dir = plan.sweep.sweep_dir / spec.run_id
    report = launch(plan, wait=False)
    job_id = report.job_ids[spec.run_id]

    def checkpointed() -> bool:
        ckpt = read_json(run_dir / "toy_ckpt.json")
        return ckpt is not None and ckpt["step"] >= 4

    wait_until(checkpointed, 120, "the script's first checkpoints")
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, capture_output=True)
    wait_until(lambda: read_result(run_dir) is not None, 180, "the requeued command to finish")
    result = read_result(run_dir)
    assert result["status"] == "done" and result["attempts"] >= 2 and result["reported"]["resumed_from"] >= 4
    assert result["val_loss"] == 1.69 + 406.4 / spec.n_params ** 0.34 + 410.7 / spec.n_tokens ** 0.28
    assert read_json(run_dir / STATUS)["checkpoint_saved"] is True  # it exited on SIGTERM, not killed by USR2
    log = (run_dir / "command.log").read_text()
    assert "SIGTERM at step" in log and f"in {tmp_path}" in log
    assert sweep_status(plan).iloc[0]["state"] == "done"
