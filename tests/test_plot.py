"""Tests for scaling.plot: each figure has the expected artists; save_figures writes PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure

from scaling.analysis import ChinchillaLaw, fit_envelope, fit_isoflop, fit_sweep
from scaling.plot import (
    plot_compute_optimal,
    plot_envelope,
    plot_frontiers,
    plot_isoflop,
    plot_isoloss,
    plot_loss_vs_params,
    plot_residuals,
    save_figures,
)

TRUE = ChinchillaLaw.from_params(E=1.7, A=400.0, B=2000.0, alpha=0.34, beta=0.36)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """An IsoFLOP design: 3 budgets x 5 sizes, plus one diverged run."""
    rng = np.random.default_rng(0)
    rows = []
    for C in (1e18, 1e19, 1e20):
        n_opt, _ = TRUE.compute_optimal(C)
        for m in np.logspace(-0.7, 0.7, 5):
            N = float(n_opt) * m
            D = C / (6 * N)
            rows.append({"run_id": f"c{C:.0e}-{m:.2f}", "n_params": N, "n_tokens": D, "flops": C,
                         "loss": float(TRUE.predict(N, D)) * float(np.exp(0.003 * rng.standard_normal())),
                         "status": "done"})
    rows.append({"run_id": "boom", "n_params": 1e8, "n_tokens": 1e9, "flops": 6e17, "loss": np.nan,
                 "status": "diverged"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def law(frame: pd.DataFrame) -> ChinchillaLaw:
    done = frame[frame["status"] == "done"]
    return ChinchillaLaw().bootstrap(done["n_params"], done["n_tokens"], done["loss"], n_boot=20)


def scatters(ax) -> list[PathCollection]:
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def test_loss_vs_params_one_curve_per_token_budget(frame: pd.DataFrame, law: ChinchillaLaw) -> None:
    # Token counts differ per run here, so they are binned into at most max_curves budgets.
    fig = plot_loss_vs_params(frame, law, max_curves=4)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert 1 <= len(ax.lines) <= 4 and len(ax.lines) == len(scatters(ax))
    assert ax.get_xscale() == "log"
    assert sum(len(s.get_offsets()) for s in scatters(ax)) == 15  # the diverged run is not drawn
    assert len(plot_loss_vs_params(frame).axes[0].lines) == 0  # points only without a law


def test_isoflop_parabolas_and_minima(frame: pd.DataFrame) -> None:
    result = fit_isoflop(frame)
    fig = plot_isoflop(frame, result)
    ax, ax_n = fig.axes
    assert len(ax.lines) == 3 + 1  # a parabola per budget + the minima markers
    assert len(ax.lines[-1].get_xdata()) == 3
    assert len(scatters(ax)) == 3
    assert len(ax_n.lines) == 2  # N_opt and D_opt power laws


def test_isoflop_plot_marks_the_planned_centres(frame: pd.DataFrame) -> None:
    # Runs planned by a centred IsoFLOP design carry the prior's N_opt they were centred on.
    planned = frame.assign(isoflop_centre=[float(TRUE.compute_optimal(f)[0]) if f >= 1e18 else 0.0
                                           for f in frame["flops"]])
    ax = plot_isoflop(planned, fit_isoflop(planned)).axes[0]
    assert len(ax.lines) == 3 + 1 + 1  # + one line of planned-centre ticks
    ticks = ax.lines[-1]
    assert sorted(ticks.get_xdata()) == pytest.approx([float(TRUE.compute_optimal(c)[0]) for c in (1e18, 1e19, 1e20)])


def test_envelope_highlighted() -> None:
    N, D = (x.ravel() for x in np.meshgrid(np.geomspace(1e8, 1e10, 5), np.geomspace(1e9, 1e12, 6)))
    grid = pd.DataFrame({"n_params": N, "n_tokens": D, "flops": 6 * N * D, "loss": TRUE.predict(N, D),
                         "status": "done"})
    env = fit_envelope(grid)
    fig = plot_envelope(grid, env)
    ax = fig.axes[0]
    # one fitted L(D) curve per size (as loss vs compute), then the envelope itself
    assert len(ax.lines) == len(env.curves) + 1 == 6
    assert len(ax.lines[-1].get_xdata()) == len(env.points)
    assert len(scatters(ax)) == 1


def test_compute_optimal_bands(law: ChinchillaLaw) -> None:
    fig = plot_compute_optimal({"fit": law, "same, no bands": ChinchillaLaw.from_params(
        **law.params_.to_dict())}, budgets=np.logspace(18, 24, 7))
    ax_n, ax_d = fig.axes
    assert len(ax_n.lines) == 2 and len(ax_d.lines) == 2
    assert len([c for c in ax_n.collections if isinstance(c, PolyCollection)]) == 1


def test_isoloss_contours_and_frontier(frame: pd.DataFrame, law: ChinchillaLaw) -> None:
    fig = plot_isoloss(law, frame, n_levels=6)
    ax = fig.axes[0]
    assert len(ax.lines) == 1  # efficient frontier
    assert len(scatters(ax)) == 1
    assert len(fig.axes) == 2  # + colour bar
    assert len(plot_isoloss(law).axes) == 1


def test_residuals_and_frontiers(frame: pd.DataFrame, law: ChinchillaLaw) -> None:
    fig = plot_residuals(frame, law)
    assert len(scatters(fig.axes[0])[0].get_offsets()) == 15
    fig = plot_frontiers()
    assert len(fig.axes[0].lines) == 5 + 1  # 5 published laws + the 20 tokens/param guide
    assert len(fig.axes[1].lines) == 5


def test_save_figures_writes_nonempty_pngs(frame: pd.DataFrame, tmp_path: Path) -> None:
    report = fit_sweep(frame, n_boot=10)
    paths = save_figures(frame, report, tmp_path / "figs")
    names = {p.name for p in paths}
    # an IsoFLOP design has no per-size loss curves, so no Approach 1 envelope figure
    assert {"loss_vs_params.png", "isoflop.png", "compute_optimal.png",
            "isoloss.png", "residuals.png", "frontiers.png"} == names
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_plot_does_not_import_pyplot() -> None:
    import subprocess
    import sys

    code = "import sys, scaling.plot; print('matplotlib.pyplot' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
