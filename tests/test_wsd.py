"""WSD sweeps: one trunk per size, a cooldown branch per budget, bitwise equal to fresh WSD runs."""

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import tiny_sweep, write_specs, write_sweep
from scaling.config import load_sweep
from scaling.errors import ConfigError
from scaling.launch import launch
from scaling.plan import Plan, plan_sweep
from scaling.results import CKPT, SPEC, load_results, read_result, write_json_atomic
from scaling.train import lr_at, train_run
from scaling.wsd import TRUNKS, train_trunk


def wsd_plan(tmp_path: Path, corpus: Path, *, n_tokens: list[int], schedule: str = "wsd",
             shapes: list[dict] | None = None, train: dict | None = None) -> Plan:
    """A tiny real WSD sweep (1 layer, d_model 32, seq_len 32, 256 tokens per step)."""
    grid = {"n_tokens": n_tokens} | ({"shapes": shapes} if shapes else {})
    cfg = tiny_sweep(schedule, corpus, results_dir=tmp_path / "results", grid=grid,
                     train={"log_every_steps": 5, "schedule": schedule, **(train or {})},
                     launch={"max_parallel": 2, "timeout_min": 10})
    return plan_sweep(load_sweep(write_sweep(tmp_path / f"{schedule}.toml", cfg)))


def test_wsd_lr_is_constant_until_the_fork_then_decays_to_min(tmp_path: Path, text_corpus: Path) -> None:
    plan = wsd_plan(tmp_path, text_corpus, n_tokens=[2560, 5120], train={"cooldown_shape": "1-sqrt"})
    short, long = plan.runs
    assert (short.n_steps, short.cooldown_steps, long.n_steps, long.cooldown_steps) == (10, 2, 20, 4)
    assert short.warmup_steps == long.warmup_steps == 1  # shared trunk: one warmup per size
    assert short.trunk_id == long.trunk_id and short.run_id != long.run_id
    for step in range(1, long.fork_step):  # the trunk: identical LR whatever the budget
        assert lr_at(step, long) == long.lr
        if step < short.fork_step:
            assert lr_at(step, short) == lr_at(step, long)
    assert lr_at(long.n_steps - 1, long) == pytest.approx(long.min_lr_ratio * long.lr)
    first = lr_at(long.fork_step, long)  # 1-sqrt: a quarter of the way in, half of the decay done
    assert first == pytest.approx(long.lr - math.sqrt(0.25) * (1 - long.min_lr_ratio) * long.lr)


def test_branch_from_trunk_equals_fresh_wsd_run_bitwise(tmp_path: Path, text_corpus: Path) -> None:
    plan = wsd_plan(tmp_path, text_corpus, n_tokens=[2560, 5120])
    dirs = write_specs(plan)
    train_trunk(dirs[-1], num_threads=1)
    assert all(read_result(d) is not None for d in dirs)
    trunk = plan.sweep.sweep_dir / TRUNKS / plan.runs[0].trunk_id
    assert torch.load(trunk / CKPT, weights_only=True)["step"] == plan.runs[-1].fork_step
    for run_dir, spec in zip(dirs, plan.runs):
        fresh = tmp_path / "fresh" / spec.run_id  # the same spec trained straight to D_i, no trunk
        fresh.mkdir(parents=True)
        write_json_atomic(fresh / SPEC, spec.to_dict())
        want, got = train_run(fresh, num_threads=1), read_result(run_dir)
        assert got["val_loss"] == want["val_loss"] and got["train_loss"] == want["train_loss"]
        a = torch.load(run_dir / CKPT, weights_only=True)
        b = torch.load(fresh / CKPT, weights_only=True)
        assert a["losses"] == b["losses"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        assert got["fork_step"] == spec.fork_step
        assert got["flops_spent"] == spec.cooldown_steps * spec.tokens_per_step * spec.flops_per_token
    # The branch's curve is complete: trunk records up to the fork, then its own cooldown.
    steps = [json.loads(line)["step"] for line in (dirs[0] / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == plan.runs[0].n_steps and 5 in steps


def test_resume_skips_finished_branches_and_reforks_a_lost_one(tmp_path: Path, text_corpus: Path) -> None:
    plan = wsd_plan(tmp_path, text_corpus, n_tokens=[2560, 5120])
    dirs = write_specs(plan)
    train_trunk(dirs[-1], num_threads=1)
    before = [read_result(d) for d in dirs]
    (dirs[-1] / "result.json").unlink()  # the last branch is lost: only its cooldown is redone
    (dirs[-1] / CKPT).unlink()
    again = train_trunk(dirs[-1], num_threads=1)
    assert read_result(dirs[0]) == before[0]  # untouched
    assert again["val_loss"] == before[1]["val_loss"]


def test_flops_saved_accounting_and_one_job_per_size(tmp_path: Path, text_corpus: Path) -> None:
    n_tokens = [2560, 5120, 7680]
    shapes = [{"n_layer": 1, "d_model": 32}, {"n_layer": 1, "d_model": 48}]
    cosine = wsd_plan(tmp_path, text_corpus, n_tokens=n_tokens, schedule="cosine", shapes=shapes)
    plan = wsd_plan(tmp_path, text_corpus, n_tokens=n_tokens, shapes=shapes)
    assert cosine.flops_saved == 0 and cosine.flops_to_train == cosine.total_flops
    assert plan.total_flops == cosine.total_flops  # same grid, same equivalent compute per row
    want = 0.0
    for trunk_id in {r.trunk_id for r in plan.runs}:
        branches = [r for r in plan.runs if r.trunk_id == trunk_id]
        step_flops = branches[0].tokens_per_step * branches[0].flops_per_token
        want += max(r.fork_step for r in branches) * step_flops  # the trunk, once
        want += sum(r.cooldown_steps for r in branches) * step_flops
    assert plan.flops_to_train == want and plan.flops_saved == plan.total_flops - want > 0

    report = launch(plan, verbose=False)
    assert report.failed == [] and len(report.submitted) == 6 and len(report.job_ids) == 2  # one job per size
    frame = load_results(plan.sweep.sweep_dir)
    assert len(frame) == 6 and set(frame["status"]) == {"done"}  # one row per grid point, trunks hidden
    spent, trunks = 0.0, {}
    for run_dir in frame["run_dir"]:
        result = read_result(Path(run_dir))
        spent += result["flops_spent"]
        trunks[result["trunk_id"]] = max(trunks.get(result["trunk_id"], 0), result["flops_trunk"])
    assert spent + sum(trunks.values()) == plan.flops_to_train
    assert launch(plan, verbose=False).submitted == []  # every branch done: the sizes are skipped


def test_cooldown_inside_warmup_is_a_config_error(tmp_path: Path, text_corpus: Path) -> None:
    with pytest.raises(ConfigError, match="cooldown"):
        wsd_plan(tmp_path, text_corpus, n_tokens=[2560, 51200],
                 train={"warmup_fraction": 0.5, "cooldown_fraction": 0.6})
    with pytest.raises(ConfigError, match="schedule"):
        wsd_plan(tmp_path, text_corpus, n_tokens=[2560], schedule="linear")
