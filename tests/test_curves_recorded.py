"""Loss curves recorded along every built-in run (issue 26, item 1): curve points in metrics.jsonl with the
LR of their step, the LR schedule rebuilt from the spec alone (scaling.schedule), run ids unchanged."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_sweep, write_specs, write_sweep
from scaling.config import load_sweep
from scaling.errors import ConfigError
from scaling.plan import plan_sweep
from scaling.results import read_metrics, read_result
from scaling.schedule import curve_eval_steps, curve_windows, lr_at, lr_at_steps, run_curve_steps
from scaling.train import train_run
from scaling.wsd import TRUNKS, train_trunk

REPO = Path(__file__).resolve().parent.parent


def plan(tmp_path: Path, corpus: Path, *, n_tokens: list[int], train: dict | None = None,
         data: dict | None = None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tiny_sweep("c", corpus, results_dir=tmp_path / "results", grid={"n_tokens": n_tokens},
                     train={"log_every_steps": 5, **(train or {})}, data={"val_tokens": 2048, **(data or {})})
    return plan_sweep(load_sweep(write_sweep(tmp_path / "c.toml", cfg)))


def curve(run_dir: Path) -> list[dict]:
    return [r for r in read_metrics(run_dir) if "curve_loss" in r]


def test_curve_points_are_log_and_evenly_spaced_and_leave_out_the_end() -> None:
    steps = curve_eval_steps(1000, 16)
    assert steps == tuple(sorted(set(steps))) and 12 <= len(steps) <= 16
    assert steps[0] == round(1000 / 64) and steps[-1] < 1000
    assert {111, 222, 333, 444, 556, 667, 778, 889} <= set(steps)  # the evenly spaced half
    assert curve_eval_steps(1000, 0) == () and curve_eval_steps(1, 16) == ()
    assert all(s > 700 for s in curve_eval_steps(1000, 16, start=700))
    assert len(curve_eval_steps(5, 16)) == 4  # steps 1..4: a short run is measured at every step


def test_curve_sample_is_strided_through_the_held_out_windows() -> None:
    assert list(curve_windows(64, 4096, 128)) == list(range(0, 64, 2))
    assert list(curve_windows(10, 10**6, 128)) == list(range(10))  # capped at every window
    assert list(curve_windows(64, 1, 128)) == [0]


def test_lr_at_steps_is_the_trainers_schedule_and_the_records_carry_it(tmp_path: Path, text_corpus: Path) -> None:
    p = plan(tmp_path, text_corpus, n_tokens=[40_000], train={"curve_evals": 8})
    (run_dir,) = write_specs(p)
    spec = p.runs[0]
    result = train_run(run_dir, num_threads=1)
    lrs = lr_at_steps(spec)
    assert lrs.shape == (spec.n_steps,) and lrs[0] == lr_at(0, spec)
    records = read_metrics(run_dir)
    for r in records:  # every record's LR is the spec's schedule at its step, exactly
        assert r["lr"] == lrs[r["step"] - 1]
    points = curve(run_dir)
    assert [r["step"] for r in points] == [*run_curve_steps(spec), spec.n_steps]
    assert all(math.isfinite(r["curve_loss"]) and r["tokens"] == r["step"] * spec.tokens_per_step for r in points)
    # the curve falls; the final record holds the full held-out loss beside the curve sample's
    assert points[-1]["curve_loss"] < points[0]["curve_loss"]
    assert points[-1]["val_loss"] == result["val_loss"]
    assert abs(points[-1]["curve_loss"] - result["val_loss"]) < 0.1 * result["val_loss"]


def test_curve_evals_zero_records_none_and_run_ids_do_not_change(tmp_path: Path, text_corpus: Path) -> None:
    with_curves = plan(tmp_path / "a", text_corpus, n_tokens=[20_000, 40_000])
    without = plan(tmp_path / "b", text_corpus, n_tokens=[20_000, 40_000], train={"curve_evals": 0,
                                                                                   "curve_tokens": 64})
    assert with_curves.runs[0].curve_evals == 16 and without.runs[0].curve_evals == 0
    assert [r.run_id for r in with_curves.runs] == [r.run_id for r in without.runs]
    run_dir = write_specs(without)[0]
    train_run(run_dir, num_threads=1)
    assert [r["step"] for r in curve(run_dir)] == [without.runs[0].n_steps]  # the final evaluation only


def test_default_sweeps_keep_their_run_ids() -> None:
    """Ids planned before curves were recorded (main at 2fc1134): the new keys are not part of them."""
    tiny = plan_sweep(load_sweep(REPO / "sweeps" / "tiny.toml"))
    assert [r.run_id for r in tiny.runs][:3] == ["gpt-L1-d32-T999K-s0-2f1c2289", "gpt-L1-d32-T2M-s0-c8bf2391",
                                                 "gpt-L1-d32-T4M-s0-46b6fb2a"]
    wsd = plan_sweep(load_sweep(REPO / "sweeps" / "wsd_vs_cosine.toml"))
    assert wsd.runs[0].run_id == "gpt-L1-d32-T500K-s0-029a6609"
    assert wsd.runs[0].trunk_id == "trunk-gpt-L1-d32-s0-4130c416"


def test_wsd_trunk_and_branches_record_their_curves(tmp_path: Path, text_corpus: Path) -> None:
    p = plan(tmp_path, text_corpus, n_tokens=[20_000, 40_000], train={"schedule": "wsd", "curve_evals": 8})
    dirs = write_specs(p)
    train_trunk(dirs[0], num_threads=1)
    trunk_dir = p.sweep.sweep_dir / TRUNKS / p.runs[0].trunk_id
    long = p.runs[1]
    trunk_steps = [r["step"] for r in curve(trunk_dir)]
    assert trunk_steps and max(trunk_steps) <= long.fork_step  # spread over the trunk's horizon, its last fork
    assert trunk_steps == [s for s in curve_eval_steps(long.fork_step, 8)]
    for run_dir, spec in zip(dirs, p.runs):
        steps = [r["step"] for r in curve(run_dir)]
        assert steps == sorted(set(steps)) and steps[-1] == spec.n_steps
        cooldown = [s for s in steps if s > spec.fork_step]
        assert len(cooldown) >= 2  # the branch measures its own cooldown
        lrs = lr_at_steps(spec)
        assert all(r["lr"] == lrs[r["step"] - 1] for r in read_metrics(run_dir) if "lr" in r)
        assert read_result(run_dir)["status"] == "done"


@pytest.mark.parametrize("key, value, message", [
    ("curve_evals", -1, "[train].curve_evals = -1: must be in [0, 10000]"),
    ("curve_tokens", 0, "[train].curve_tokens = 0: must be > 0"),
])
def test_bad_curve_keys_are_one_line_config_errors(tmp_path: Path, text_corpus: Path, key: str, value: int,
                                                   message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan(tmp_path, text_corpus, n_tokens=[20_000], train={key: value})


def test_lr_at_steps_takes_a_prefix_of_an_open_ended_trunk(tmp_path: Path, text_corpus: Path) -> None:
    from scaling.wsd import trunk_spec_of

    p = plan(tmp_path, text_corpus, n_tokens=[40_000], train={"schedule": "wsd"})
    trunk = trunk_spec_of(p.runs[0])
    lrs = lr_at_steps(trunk, n_steps=p.runs[0].fork_step)
    np.testing.assert_array_equal(lrs, lr_at_steps(p.runs[0])[:p.runs[0].fork_step])
    with pytest.raises(ValueError, match="10\\^8"):
        lr_at_steps(trunk)
    assert dataclasses.replace(p.runs[0], curve_evals=0).run_id == p.runs[0].run_id


def test_curves_design_trains_each_size_once_to_its_longest_budget() -> None:
    """design = "curves" (item 6): sweeps/tiny_curves.toml plans every size tiny trains, a WSD trunk per size
    with cooldown branches at the smallest and largest budget, at under half of tiny's FLOPs."""
    from scaling.plan import equivalent_grid

    cfg = load_sweep(REPO / "sweeps" / "tiny_curves.toml")
    p = plan_sweep(cfg)
    tiny = plan_sweep(load_sweep(REPO / "sweeps" / "tiny.toml"))
    sizes = {(r.shape.n_layer, r.shape.d_model) for r in p.runs}
    assert sizes == {(r.shape.n_layer, r.shape.d_model) for r in tiny.runs} and len(sizes) == 6
    assert len(p.runs) == 2 * len(sizes) and len({r.trunk_id for r in p.runs}) == len(sizes)
    for size in sizes:
        tokens = sorted(r.n_tokens_target for r in p.runs if (r.shape.n_layer, r.shape.d_model) == size)
        assert tokens == [min(cfg.grid.n_tokens), max(cfg.grid.n_tokens)]
    grid = equivalent_grid(cfg)
    assert len(grid.runs) == len(sizes) * len(cfg.grid.n_tokens) and {r.schedule for r in grid.runs} == {"cosine"}
    assert p.flops_to_train < 0.65 * grid.flops_to_train and p.flops_to_train < 0.4 * tiny.flops_to_train
    assert all(r.curve_evals == 32 for r in p.runs)


def test_curves_design_with_cosine_is_one_run_per_size(tmp_path: Path, text_corpus: Path) -> None:
    cfg = tiny_sweep("cc", text_corpus, grid={"design": "curves", "n_tokens": [20_000, 40_000, 80_000],
                                               "shapes": [{"n_layer": 1, "d_model": 32}, {"n_layer": 1, "d_model": 48}]})
    p = plan_sweep(load_sweep(write_sweep(tmp_path / "cc.toml", cfg)))
    assert [r.n_tokens_target for r in p.runs] == [80_000, 80_000] and {r.schedule for r in p.runs} == {"cosine"}


def test_curves_design_prints_its_flops_beside_the_grid(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "scaling.cli", "plan", str(REPO / "sweeps" / "tiny_curves.toml")],
                         capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"},
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Curves design: 12 runs, 1.69e+13 FLOPs; the equivalent grid (every size x every n_tokens, cosine): " \
           "18 runs, 2.63e+13 FLOPs (64% of it)" in out.stdout


def test_curves_design_needs_budgets(tmp_path: Path, text_corpus: Path) -> None:
    cfg = tiny_sweep("cb", text_corpus, grid={"design": "curves", "n_tokens": []})
    with pytest.raises(ConfigError, match="n_tokens"):
        load_sweep(write_sweep(tmp_path / "cb.toml", cfg))
