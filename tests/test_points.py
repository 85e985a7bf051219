"""Points are chosen once: every fit, table and figure of a report uses the same rows (scaling.analysis)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

import scaling.plot
from scaling.pipeline import fit_and_plot
from scaling.analysis import ChinchillaLaw, Points, fit_sweep, select_points
from scaling.plot import plot_isoloss, plot_loss_vs_params, plot_residuals, save_figures

TRUE = ChinchillaLaw.from_params(E=1.7, A=400.0, B=2000.0, alpha=0.34, beta=0.36)
LRS = (1e-3, 2e-3, 4e-3)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    """4 sizes x 4 token budgets, each trained at 3 LRs ([train].lr_sweep) x 2 seeds, plus one diverged run:
    96 done runs, 16 points (the middle LR is best everywhere), 32 with every seed its own point."""
    rng = np.random.default_rng(0)
    rows = []
    for N in np.geomspace(1e6, 1e8, 4):
        for D in np.geomspace(1e8, 1e10, 4):
            for lr in LRS:
                for seed in SEEDS:
                    penalty = 1 + 0.05 * np.log(lr / 2e-3) ** 2  # a worse LR: 2.4% higher loss
                    loss = float(TRUE.predict(N, D)) * penalty * float(np.exp(0.003 * rng.standard_normal()))
                    rows.append({"run_id": f"n{N:.0e}-d{D:.0e}-lr{lr:g}-s{seed}", "n_params": N, "n_tokens": D,
                                 "flops": 6 * N * D, "loss": loss, "lr": lr, "seed": seed, "status": "done"})
    rows.append({"run_id": "boom", "n_params": 1e7, "n_tokens": 1e9, "flops": 6e16, "loss": np.nan, "lr": 2e-3,
                 "seed": 0, "status": "diverged"})
    return pd.DataFrame(rows)


def offsets(ax) -> np.ndarray:
    """The (x, y) of every scatter point on an axes."""
    return np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])


def residual_points(points: pd.DataFrame, law: ChinchillaLaw) -> np.ndarray:
    resid = np.log(points["loss"]) - np.log(law.predict(points["n_params"].to_numpy(), points["n_tokens"].to_numpy()))
    return np.column_stack([points["flops"], resid])


def same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    order = lambda x: x[np.lexsort(x.T[::-1])]  # noqa: E731
    return a.shape == b.shape and np.allclose(order(a), order(b))


@pytest.mark.parametrize("all_seeds, n_points", [(False, 16), (True, 32)])
def test_residual_figure_shows_exactly_the_points_the_fit_used(runs: pd.DataFrame, all_seeds: bool,
                                                               n_points: int) -> None:
    report = fit_sweep(runs, n_boot=0, all_seeds=all_seeds)
    assert report.n_done == 96 and report.n_points == n_points == len(report.points.frame)
    fig = plot_residuals(report.points, report.law)
    assert same_rows(offsets(fig.axes[0]), residual_points(report.points.frame, report.law))
    assert fig.axes[0].get_title() == "Residuals of the Approach 3 fit"


def test_figures_of_a_frame_of_runs_show_the_points_fit_sweep_fits(runs: pd.DataFrame) -> None:
    # Given runs rather than points, a figure picks the rows fit_sweep would: the best LR, the seed mean
    # (it used to plot all 96 done runs, every LR and seed, around a law fitted to 16 points).
    report = fit_sweep(runs, n_boot=0)
    expected = residual_points(report.points.frame, report.law)
    assert same_rows(offsets(plot_residuals(runs, report.law).axes[0]), expected)
    assert len(offsets(plot_loss_vs_params(runs, report.law).axes[0])) == 16
    assert len(offsets(plot_isoloss(report.law, runs).axes[0])) == 16


def test_save_figures_draws_the_reports_points(runs: pd.DataFrame, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    report = fit_sweep(runs, n_boot=0, all_seeds=True)
    drawn: dict[str, np.ndarray] = {}
    for name in ("plot_residuals", "plot_loss_vs_params"):  # record what the real figures show
        real = getattr(scaling.plot, name)
        monkeypatch.setattr(scaling.plot, name, lambda *a, _real=real, _name=name, **k: drawn.setdefault(
            _name, offsets(_real(*a, **k).axes[0])))
    save_figures(runs, report, tmp_path)  # the runs frame is not chosen from again: the report has its points
    assert same_rows(drawn["plot_residuals"], residual_points(report.points.frame, report.law))
    assert len(drawn["plot_loss_vs_params"]) == 32


def test_the_pipeline_plots_the_points_it_fitted(runs: pd.DataFrame, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    shown: list[int] = []
    real = scaling.plot.plot_residuals
    monkeypatch.setattr(scaling.plot, "plot_residuals",
                        lambda *a, **k: shown.append(len(offsets(real(*a, **k).axes[0]))))
    fit_and_plot(runs, tmp_path, n_boot=0)
    fitted = json.loads((tmp_path / "fit.json").read_text())
    assert fitted["n_points"] == fitted["approach3"]["n_points"] == 16 and shown == [16]
    assert f"plot: {tmp_path / 'plots' / 'residuals.png'}" in capsys.readouterr().out


def test_points_are_not_chosen_again_by_the_fits(runs: pd.DataFrame) -> None:
    points = select_points(runs, all_seeds=True)
    assert isinstance(points, Points) and select_points(points) is points  # chosen once, returned as is
    assert (points.n_runs, points.n_done, len(points.frame)) == (97, 96, 32)
    assert points.diagnostics[0].startswith("excluded run boom: status=diverged")
    # A seed-per-point frame chosen again would average the seeds (16 points); given Points a fit does not.
    assert ChinchillaLaw().fit_frame(points).n_points_ == 32


def test_the_analysis_package_does_not_import_torch() -> None:
    code = ("import sys, scaling.analysis, scaling.pipeline; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
