"""External trainers: `[train] command = ...` runs a script as each run's job on the local pool (the Slurm
path, requeue included, is in tests/test_slurm.py). The script is tests/data/toy_train.py (no torch)."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import tiny_sweep, write_sweep
from scaling.config import load_sweep
from scaling.errors import ConfigError
from scaling.launch import launch, sweep_status
from scaling.plan import Plan, plan_sweep
from scaling.results import METRICS, RESULT, STATUS, read_json, read_metrics, read_result

DATA = Path(__file__).parent / "data"
COMMAND = ("{python} toy_train.py --n_params={n_params} --n_tokens={n_tokens} --n_steps={n_steps} --seed={seed} "
           "--out={run_dir}")


def law(n_params: float, n_tokens: float) -> float:  # the toy script's loss (Chinchilla's Approach 3 law)
    return 1.69 + 406.4 / n_params ** 0.34 + 410.7 / n_tokens ** 0.28


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The directory `scaling run` is started from, holding the user's script (the command's cwd)."""
    shutil.copy(DATA / "toy_train.py", tmp_path / "toy_train.py")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def command_plan(workdir: Path, corpus: Path, command: str, *, n_tokens: list[int] | None = None,
                 seeds: list[int] | None = None, launch_opts: dict | None = None) -> Plan:
    cfg = tiny_sweep("ext", corpus, results_dir=workdir / "results", grid={"n_tokens": n_tokens or [2560, 5120]},
                     train={"command": command, "seeds": seeds or [0]},
                     launch={"max_parallel": 2, "timeout_min": 10, **(launch_opts or {})})
    return plan_sweep(load_sweep(write_sweep(workdir / "ext.toml", cfg)))


def test_a_command_trains_every_run_on_the_local_pool_and_a_failing_or_silent_one_fails(workdir: Path,
                                                                                     text_corpus: Path) -> None:
    # seed 0 exits 3, seed 1 exits 0 without final.json, seed 2 trains both budgets: one pool launch for all
    plan = command_plan(workdir, text_corpus, COMMAND + " --fail_seed=0 --silent_seed=1", seeds=[0, 1, 2])
    report = launch(plan, verbose=False)
    good = [r for r in plan.runs if r.seed == 2]
    bad = {r.seed: plan.sweep.sweep_dir / r.run_id for r in plan.runs if r.seed != 2 and r.n_tokens == 2560}
    assert sorted(report.failed) == sorted(r.run_id for r in plan.runs if r.seed != 2)
    for spec in good:
        run_dir = plan.sweep.sweep_dir / spec.run_id
        result = read_result(run_dir)
        assert result["val_loss"] == law(spec.n_params, spec.n_tokens)  # what the script wrote, unrounded
        assert result["trainer"] == "command" and result["n_params"] == spec.n_params
        assert f"--n_steps={spec.n_steps}" in result["command"] and f"--out={run_dir.resolve()}" in result["command"]
        curve = read_metrics(run_dir)
        assert [r["step"] for r in curve] == list(range(1, spec.n_steps + 1))
        assert result["train_loss"] == curve[-1]["train_loss"] and result["train_loss_from"] == "metrics.jsonl"
        assert f"in {workdir}" in (run_dir / "command.log").read_text()  # cwd: where the launch started
    errors = {seed: read_json(run_dir / STATUS)["error"] for seed, run_dir in bad.items()}
    assert errors[0].startswith("LaunchError: the command exited with status 3: toy_train: CUDA out of memory")
    assert "exited 0 but wrote no final.json" in errors[1]
    for seed, run_dir in bad.items():
        assert "\n" not in errors[seed] and not (run_dir / RESULT).exists()
    states = dict(zip(sweep_status(plan)["run_id"], sweep_status(plan)["state"]))
    assert [states[r.run_id] for r in plan.runs] == ["failed", "failed", "done"] * 2
    from scaling import load_results  # the table and fits see the done runs only

    table = load_results(plan.sweep.sweep_dir)
    done = table[table["status"] == "done"]
    assert sorted(done["loss"]) == sorted(law(r.n_params, r.n_tokens) for r in good)


@pytest.mark.parametrize("command, match", [
    ("{python} toy_train.py --layers={n_layers}", r"\[train\].command = .*unknown field \{n_layers\} \(fields: .*n_layer,"),
    ("{python} toy_train.py --x={}", r"positional \{\} fields are not allowed"),
    ("{python} toy_train.py --x={lr", r"expected '\}' before end of string"),
    ("python 'toy_train.py", r"not a command line: No closing quotation"),
    ("   ", r"\[train\].command = '   ': is empty"),
])
def test_a_bad_template_is_a_one_line_config_error_before_anything_runs(workdir: Path, text_corpus: Path,
                                                                      command: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        command_plan(workdir, text_corpus, command)
    assert str(err.value).startswith(str(workdir / "ext.toml")) and "\n" not in str(err.value)
    assert not (workdir / "results").exists()


@pytest.mark.slow
def test_a_timed_out_command_gets_sigterm_is_requeued_and_resumes_in_its_run_folder(workdir: Path,
                                                                                    text_corpus: Path) -> None:
    # 1-minute limit, USR2 55 s before it: every attempt is signalled 5 s after it starts; 24 steps of 0.25 s
    # need at least two attempts. The run's loss is the script's, its curve has each step once.
    plan = command_plan(workdir, text_corpus, COMMAND + " --step_s=0.25", n_tokens=[6144],
                        launch_opts={"timeout_min": 1, "max_num_timeout": 5})
    spec = plan.runs[0]
    assert spec.n_steps == 24
    report = launch(plan, verbose=False, signal_delay_s=55)
    run_dir = plan.sweep.sweep_dir / spec.run_id
    assert report.failed == [], read_json(run_dir / STATUS)
    result = read_result(run_dir)
    assert result["attempts"] >= 2 and 0 < result["reported"]["resumed_from"] < 24
    assert result["val_loss"] == law(spec.n_params, spec.n_tokens)
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, 25))
    log = (run_dir / "command.log").read_text()
    assert "SIGTERM at step" in log and "attempt 2, starting at step" in log
    assert read_json(run_dir / STATUS)["checkpoint_saved"] is True


def test_scaling_train_runs_a_command_run_in_this_process(workdir: Path, text_corpus: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    from scaling.cli import main
    from scaling.results import SPEC, write_json_atomic

    spec = command_plan(workdir, text_corpus, COMMAND, n_tokens=[2560]).runs[0]
    run_dir = workdir / "results" / "ext" / spec.run_id
    run_dir.mkdir(parents=True)
    write_json_atomic(run_dir / SPEC, spec.to_dict())
    assert main(["train", str(run_dir)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["val_loss"] == law(spec.n_params, spec.n_tokens)
    assert read_json(run_dir / STATUS)["command_attempt"] == 1 and (run_dir / RESULT).exists()


def test_scaling_run_ends_with_the_same_report_as_scaling_fit_lr_law_included(workdir: Path, text_corpus: Path,
                                                                               capsys: pytest.CaptureFixture) -> None:
    # An lr_sweep of the toy script (its loss has a known LR optimum): the fit after `scaling run` and a later
    # `scaling fit` are one body (pipeline.report_frame), so both print the LR law, the same line.
    from scaling.cli import main
    cfg = tiny_sweep("lr", text_corpus, results_dir=workdir / "results",
                     grid={"n_tokens": [2560, 10240], "shapes": [{"n_layer": 1, "d_model": 32},
                                                                  {"n_layer": 2, "d_model": 64}]},
                     train={"command": COMMAND + " --lr={lr}", "lr": 0.01, "lr_sweep": [0.5, 1, 2, 4]},
                     launch={"max_parallel": 2, "timeout_min": 10})
    toml = write_sweep(workdir / "lr.toml", cfg)
    assert main(["run", str(toml), "--n-boot", "40"]) == 0
    after_run = [line for line in capsys.readouterr().out.splitlines() if line.startswith("LR law:")]
    assert main(["fit", str(toml), "--n-boot", "40"]) == 0
    after_fit = [line for line in capsys.readouterr().out.splitlines() if line.startswith("LR law:")]
    assert len(after_run) == 1 and after_run == after_fit, (after_run, after_fit)
    assert "b = -0.500" in after_run[0] and "c = -0.000" in after_run[0]  # the script's lr_opt ~ N^-0.5, no D
