"""Tests for scaling.plot: each figure has the expected artists; save_figures writes PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
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
    UNIDENTIFIED_COLOR,
    loss_label,
    plot_loss_curves,
    plot_predicted_vs_observed,
    plot_residuals,
    save_figures,
)
from scaling.compare import published_laws

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


def gids(ax, gid: str) -> list:
    return [a for a in [*ax.lines, *ax.collections, *ax.texts] if a.get_gid() == gid]


def test_compute_optimal_solid_over_the_data_dashed_with_bands_beyond(law: ChinchillaLaw) -> None:
    # The fitted law's runs span C = 6ND 1e18..1e20; the stated law (same parameters) has no data range.
    fig = plot_compute_optimal({"fit": law, "same, no bands": ChinchillaLaw.from_params(
        **law.params_.to_dict())}, budgets=np.logspace(17, 24, 8))
    ax_n, ax_d = fig.axes
    for ax in (ax_n, ax_d):
        (solid,), (dashed,), (stated,) = gids(ax, "law-data"), gids(ax, "law-extrapolated"), gids(ax, "law")
        assert solid.get_linestyle() == "-" and dashed.get_linestyle() == "--" and stated.get_linestyle() == "-"
        x, y_solid, y_dashed = solid.get_xdata(), np.asarray(solid.get_ydata()), np.asarray(dashed.get_ydata())
        inside = (x >= 1e18 * (1 - 1e-9)) & (x <= 1e20 * (1 + 1e-9))
        assert np.isfinite(y_solid[inside]).all() and np.isnan(y_solid[~inside]).all()
        assert np.isfinite(y_dashed[~inside]).all()
        ends = np.isclose(x, 1e18, rtol=1e-9) | np.isclose(x, 1e20, rtol=1e-9)
        assert ends.sum() == 2 and np.isfinite(y_dashed[ends]).all()  # the dashed parts join the solid one
        assert len(gids(ax, "band")) == 1  # only the bootstrapped law has a band, over the whole range
        (limit,) = gids(ax, "extrapolation-limit")
        assert limit.get_xdata()[0] == pytest.approx(1e21)  # EXTRAPOLATION_FACTOR x the largest run
    assert not gids(ax_n, "not-identified")  # laws, not reports: nothing said about identification


def test_compute_optimal_shows_approach2_minima_and_says_what_is_not_identified(frame: pd.DataFrame) -> None:
    report = fit_sweep(frame, n_boot=10)
    report.identification = {**report.identification, "B": "too few token budgets", "E": "near 0"}
    fig = plot_compute_optimal({"this sweep": report}, budgets=np.logspace(17, 22, 6), isoflop=report.isoflop)
    ax_n = fig.axes[0]
    (note,) = gids(ax_n, "not-identified")
    assert note.get_text().startswith("not identified: ") and {"B", "E"} <= set(
        note.get_text().split(": ", 1)[1].split(" (")[0].split(", "))
    assert all(line.get_color() == UNIDENTIFIED_COLOR for line in gids(ax_n, "law-data"))
    (minima,) = gids(ax_n, "approach2")
    used = report.isoflop.curves[report.isoflop.curves["used"]]
    assert sorted(minima.get_ydata()) == pytest.approx(sorted(used["n_opt"]))
    # an identified report: coloured, no note
    report.identification = {k: "" for k in report.identification}
    fig = plot_compute_optimal({"this sweep": report}, budgets=np.logspace(17, 22, 6))
    assert not gids(fig.axes[0], "not-identified")
    assert gids(fig.axes[0], "law-data")[0].get_color() != UNIDENTIFIED_COLOR


def test_loss_axes_name_the_held_out_loss_and_its_unit(frame: pd.DataFrame, law: ChinchillaLaw) -> None:
    assert loss_label(frame.assign(vocab_size=256)) == "held-out loss (nats/byte)"
    assert loss_label(frame.assign(vocab_size=50_257)) == "held-out loss (nats/token)"
    assert loss_label(frame) == "loss (the source's units)"  # a CSV: its unit is not known here
    fig = plot_loss_vs_params(frame.assign(vocab_size=256), law)
    assert fig.axes[0].get_ylabel() == "held-out loss (nats/byte)"
    fig = plot_loss_vs_params(frame, law, not_identified=["E"])
    assert "not identified: E" in gids(fig.axes[0], "not-identified")[0].get_text()
    assert {line.get_color() for line in fig.axes[0].lines} == {UNIDENTIFIED_COLOR}


def test_isoloss_contours_and_frontier(frame: pd.DataFrame, law: ChinchillaLaw) -> None:
    fig = plot_isoloss(law, frame, n_levels=6)
    ax = fig.axes[0]
    assert len(ax.lines) == 1  # efficient frontier
    assert len(scatters(ax)) == 1
    assert len(fig.axes) == 2  # + colour bar
    assert len(plot_isoloss(law).axes) == 1


def test_residuals_label_the_outlying_runs_and_ticks_do_not_overlap(frame: pd.DataFrame) -> None:
    bumped = frame.copy()
    bumped.loc[3, "loss"] *= 1.10  # one run 10% off the law
    report = fit_sweep(bumped, n_boot=0)
    assert list(report.outliers["run_id"]) == [bumped.loc[3, "run_id"]]
    fig = plot_residuals(report.points, report.law, outliers=report.outliers)
    ax = fig.axes[0]
    assert len(scatters(ax)[0].get_offsets()) == 15
    (label,) = gids(ax, "outlier")
    assert label.get_text().startswith(bumped.loc[3, "run_id"]) and "%" in label.get_text()
    canvas = FigureCanvasAgg(fig)  # lay the ticks out as the PNG has them
    canvas.draw()
    renderer = canvas.get_renderer()
    for ax_ in fig.axes:
        for axis in (ax_.xaxis, ax_.yaxis):
            boxes = [t.get_window_extent(renderer) for t in axis.get_ticklabels(minor=False) + axis.get_ticklabels(
                minor=True) if t.get_visible() and t.get_text()]
            for i, a in enumerate(boxes):
                assert not any(a.overlaps(b) for b in boxes[i + 1:]), [t.get_text() for t in axis.get_ticklabels()]


def test_predicted_vs_observed(frame: pd.DataFrame) -> None:
    report = fit_sweep(frame, n_boot=0, n_holdout=2)
    fig = plot_predicted_vs_observed(report.points, report.law, holdout=report.holdout)
    ax = fig.axes[0]
    pred, obs = scatters(ax)[0].get_offsets().T
    assert len(obs) == 15 and np.abs(pred / obs - 1).max() < 0.02  # 0.3% noise: on the diagonal
    (identity,) = gids(ax, "identity")
    assert list(identity.get_xdata()) == list(identity.get_ydata())
    (held,) = gids(ax, "holdout")
    assert len(held.get_xdata()) == 2
    assert "observed" in ax.get_ylabel() and "predicted" in ax.get_xlabel()


def test_loss_curves_one_line_per_run() -> None:
    curves = {f"r{i}": pd.DataFrame({"step": [1, 2, 3, 4], "tokens": [100, 200, 300, 400],
                                     "train_loss": [5.0, 4.0, 3.5, 3.0 - 0.1 * i],
                                     "val_loss": [np.nan, 4.1, np.nan, 3.1 - 0.1 * i], "n_params": 1e4 * (i + 1)})
              for i in range(3)}
    fig = plot_loss_curves(curves, ylabel="loss (nats/byte)")
    ax = fig.axes[0]
    assert len(gids(ax, "curve")) == 3 and len(gids(ax, "held-out")) == 3
    assert [len(line.get_xdata()) for line in gids(ax, "held-out")] == [2, 2, 2]
    assert ax.get_ylabel() == "loss (nats/byte)" and len(fig.axes) == 2  # + log N colour bar
    with pytest.raises(ValueError, match="no run has a loss curve"):
        plot_loss_curves({"r0": pd.DataFrame({"step": [1]})})


def test_frontiers(law: ChinchillaLaw) -> None:
    fig = plot_frontiers()
    assert len(gids(fig.axes[0], "law")) == 5 and len(gids(fig.axes[0], "guide")) == 1  # + 20 tokens/param
    assert len(gids(fig.axes[1], "law")) == 5
    # a fitted law: solid over its data, dashed with its band beyond (here 1e17..1e25 around runs at 1e18..1e20)
    fig = plot_frontiers({"this sweep": law, **published_laws()})
    for ax in fig.axes:
        assert len(gids(ax, "law-data")) == len(gids(ax, "law-extrapolated")) == len(gids(ax, "band")) == 1
    lo, hi = gids(fig.axes[1], "band")[0].get_paths()[0].vertices[:, 1].min(), None
    assert lo > 0


def test_save_figures_writes_nonempty_pngs(frame: pd.DataFrame, tmp_path: Path) -> None:
    report = fit_sweep(frame, n_boot=10)
    paths = save_figures(frame, report, tmp_path / "figs")
    names = {p.name for p in paths}
    # an IsoFLOP design has no per-size loss curves, so no Approach 1 envelope figure
    assert {"loss_vs_params.png", "isoflop.png", "compute_optimal.png", "predicted_vs_observed.png",
            "isoloss.png", "residuals.png", "frontiers.png"} == names
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_plot_does_not_import_pyplot() -> None:
    import subprocess
    import sys

    code = "import sys, scaling.plot; print('matplotlib.pyplot' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
