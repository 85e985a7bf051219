"""Per-size hyperparameter rules, LR sweeps with best-LR selection, seed means, cost preview."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scaling
from scaling import hparams
from scaling.cli import main
from scaling.config import load_sweep
from scaling.errors import ConfigError
from scaling.analysis import ChinchillaLaw, fit_points, fit_sweep, keep_best_lr
from scaling.plan import plan_sweep

from conftest import small_grid_sweep

REPO = Path(scaling.__file__).resolve().parent.parent


def test_published_rules_give_their_values() -> None:
    # Kaplan et al. 2020 eq. D.1 and DeepSeek LLM 2024 eq. 1, evaluated by hand.
    assert hparams.kaplan_lr(1e6) == pytest.approx(0.003239 - 0.0001395 * math.log(1e6))
    assert hparams.kaplan_lr(1e30) == hparams.KAPLAN_MIN_LR
    assert hparams.deepseek_lr(1e20) == pytest.approx(0.3118 * 10 ** -2.5)
    assert hparams.deepseek_batch_tokens(1e20) == pytest.approx(0.2920 * 1e20 ** 0.3271)
    assert hparams.batch_size("deepseek", 8, 128, 1e20) == round(0.2920 * 1e20 ** 0.3271 / 128)
    assert hparams.peak_lr("constant", 3e-3, 1e6, 1e20) == 3e-3


def test_warmup_rules(tmp_path: Path) -> None:
    assert hparams.warmup_steps("fraction", 0.05, 200, 3e4, 2048) == 10
    assert hparams.warmup_steps("fraction", 0.0, 200, 3e4, 2048) == 0
    assert hparams.warmup_steps("params", 0.05, 200, 3e4, 2048) == 15  # N tokens: 30K / 2048 per step
    assert hparams.warmup_steps("kaplan", 0.05, 200, 3e4, 2048) == 3000
    # "params": one warmup per size, whatever the budget, longer for larger models (Porian et al. 2024)
    plan = plan_sweep(load_sweep(small_grid_sweep(tmp_path, 'warmup_rule = "params"')))
    for r in plan.runs:
        assert r.warmup_steps == max(1, round(r.n_params / r.tokens_per_step))
    small, large = sorted({r.warmup_steps for r in plan.runs})
    assert small < large
    # a warmup longer than the run would never reach the peak LR: refused before anything runs
    with pytest.raises(ConfigError, match=r"s\.toml: \[train\]\.warmup_rule = 'kaplan': gives 3000 warmup steps "
                                          r"for L\d+ d\d+ at \[grid\]\.n_tokens\[0\] = 100000, .* 391 steps"):
        plan_sweep(load_sweep(small_grid_sweep(tmp_path, 'warmup_rule = "kaplan"')))


def test_lr_rules_and_lr_sweep_in_the_plan(tmp_path: Path) -> None:
    plan = plan_sweep(load_sweep(small_grid_sweep(tmp_path, 'lr_rule = "kaplan"\nbatch_rule = "deepseek"')))
    for r in plan.runs:
        assert r.lr == pytest.approx(hparams.kaplan_lr(r.n_params_non_embedding))
        assert r.batch_size == max(1, round(hparams.deepseek_batch_tokens(r.flops_per_token
                                                                         * r.n_tokens_target) / 32))
    assert len({r.lr for r in plan.runs}) == 2  # one LR per size
    swept = plan_sweep(load_sweep(small_grid_sweep(tmp_path, "lr = 2e-3\nlr_sweep = [0.5, 1, 2]")))
    assert len(swept.runs) == 12 and len({r.run_id for r in swept.runs}) == 12
    assert sorted({r.lr for r in swept.runs}) == pytest.approx([1e-3, 2e-3, 4e-3])
    plain = plan_sweep(load_sweep(small_grid_sweep(tmp_path, "lr = 2e-3")))
    assert {r.lr for r in plain.runs} == {2e-3} and {r.batch_size for r in plain.runs} == {8}


def test_keep_best_lr_and_edge_warning() -> None:
    rows = []
    for n, losses in ((1e5, (3.0, 2.9, 2.95)), (2e5, (2.8, 2.85, 2.9))):  # middle best; smallest LR best
        for lr, loss in zip((1e-3, 2e-3, 4e-3), losses):
            rows.append({"arch": "gpt", "n_params": n, "n_tokens": 1e6, "seed": 0, "lr": lr, "loss": loss})
    best, notes = keep_best_lr(pd.DataFrame(rows))
    assert best["lr"].tolist() == [2e-3, 1e-3] and best["loss"].tolist() == [2.9, 2.8]
    assert len(notes) == 1 and "edge" in notes[0] and "N=2e+05" in notes[0]
    points, diagnostics = fit_points(pd.DataFrame(rows).assign(status="done"))
    assert points["loss"].tolist() == [2.9, 2.8] and diagnostics == notes


def test_fits_use_the_seed_mean_and_report_the_spread() -> None:
    truth = ChinchillaLaw.from_params(E=1.8, A=400.0, B=2000.0, alpha=0.35, beta=0.37)
    rng = np.random.default_rng(0)
    rows = []
    for n in (1e7, 3e7, 1e8, 3e8):
        for d in (1e9, 3e9, 1e10, 3e10):
            for seed in range(3):
                loss = float(truth.predict(n, d)) * math.exp(0.01 * rng.standard_normal())
                rows.append({"run_id": f"{n}-{d}-{seed}", "status": "done", "arch": "gpt", "n_params": n,
                             "n_tokens": d, "seed": seed, "lr": 1e-3, "loss": loss})
    frame = pd.DataFrame(rows)
    worse_lr = frame.assign(lr=3e-3, loss=frame["loss"] + 0.5, run_id=frame["run_id"] + "-lr3")
    points, _ = fit_points(frame)
    assert len(points) == 16 and set(points["n_seeds"]) == {3}
    one = frame[(frame.n_params == 1e7) & (frame.n_tokens == 1e9)]["loss"].mean()
    assert points.loc[(points.n_params == 1e7) & (points.n_tokens == 1e9), "loss"].item() == pytest.approx(one)
    report = fit_sweep(pd.concat([frame, worse_lr], ignore_index=True), n_boot=0)  # best LR, then mean
    assert report.law.n_points_ == 16 and report.n_done == 96
    assert any("edge of the swept range" in d for d in report.diagnostics)
    assert "seed spread" in report.to_text() and "seed mean" in report.to_text()
    assert report.seed_spread["loss_std"].between(0, 0.2).all()
    every = fit_sweep(frame, n_boot=0, all_seeds=True)
    assert every.law.n_points_ == 48 and "--all-seeds" in every.to_text()
    assert abs(report.law.params_.alpha - 0.35) < 0.1


def test_plan_prints_cost_and_wsd_savings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = small_grid_sweep(tmp_path, 'schedule = "wsd"')
    assert main(["plan", str(toml), "--flops-per-s", "1e9"]) == 0
    out = capsys.readouterr().out
    plan = plan_sweep(load_sweep(toml))
    assert "WSD trunk reuse" in out and f"{plan.flops_to_train:.3g} FLOPs" in out
    assert f"{plan.flops_to_train / 1e9 / 3600:.2f} job-hours" in out and "1e+09 FLOP/s per job (--flops-per-s)" in out


def test_measured_throughput_is_positive(tmp_path: Path) -> None:
    from scaling.throughput import measure_flops_per_s

    assert measure_flops_per_s(plan_sweep(load_sweep(small_grid_sweep(tmp_path))), seconds=0.2) > 1e6
