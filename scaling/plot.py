"""Figures for a fitted sweep: frame + fit results in, `matplotlib.figure.Figure` out.

Figures are built with `matplotlib.figure.Figure` directly, which needs no pyplot and no GUI
backend (savefig renders PNG with Agg), so importing this module never changes global state
and nothing here calls plt.show(). Only `save_figures` and the `path=` arguments touch disk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from scaling.compare import compare_table, law_of, published_laws
from scaling.errors import FitError
from scaling.safe import no_symlink
from scaling.analysis import (
    ChinchillaLaw,
    EnvelopeResult,
    FitReport,
    IsoFlopResult,
    Points,
    group_by_relative,
    points_of,
)

log = logging.getLogger(__name__)

DEFAULT_PLOT_BUDGETS = np.logspace(17, 25, 33)
"""FLOPs grid for compute-optimal curves."""


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        no_symlink(path.parent)  # a linked plots/ or figure would put the PNG wherever the link points
        fig.savefig(no_symlink(path), dpi=120)
        log.info("wrote %s", path)
    return fig


def _as_mapping(laws: object) -> Mapping[str, object]:
    if isinstance(laws, Mapping):
        return laws
    return {"fit": laws}


def _slices(values: np.ndarray, rel_tol: float, max_slices: int) -> np.ndarray:
    """Each value's slice representative: groups within rel_tol, or log bins when too many groups."""
    groups = group_by_relative(values, rel_tol)
    if len(np.unique(groups)) <= max_slices:
        return groups
    # Not a grid design (e.g. the Chinchilla reference runs): bin log values instead.
    logs = np.log(values)
    edges = np.linspace(logs.min(), logs.max(), max_slices + 1)
    idx = np.clip(np.searchsorted(edges, logs, side="right") - 1, 0, max_slices - 1)
    reps = np.array([np.exp(logs[idx == i].mean()) if (idx == i).any() else np.nan
                     for i in range(max_slices)])
    return reps[idx]


def plot_loss_vs_params(frame: pd.DataFrame | Points, law: ChinchillaLaw | None = None,
                        rel_tol: float = 0.05, max_curves: int = 8,
                        path: str | Path | None = None) -> Figure:
    """Loss vs N (log x), one colour per token budget, with the fitted L(N, D) at that budget.

    Artists: one scatter collection per token budget and, with a law, one line per budget. Points: those of
    a `Points`, else the ones fit_sweep fits (`points_of`), as in every figure here that takes a frame.
    """
    done = points_of(frame)
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    d_slice = _slices(done["n_tokens"].to_numpy(), rel_tol, max_curves)
    budgets = np.unique(d_slice)
    cmap = colormaps["viridis"]
    n_grid = np.logspace(np.log10(done["n_params"].min()) - 0.1,
                         np.log10(done["n_params"].max()) + 0.1, 100)
    for i, d in enumerate(budgets):
        color = cmap(i / max(1, len(budgets) - 1))
        sub = done[d_slice == d]
        ax.scatter(sub["n_params"], sub["loss"], color=color, s=18, label=f"D ≈ {d:.2g}")
        if law is not None:
            ax.plot(n_grid, law.predict(n_grid, d), color=color, lw=1.2)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("final loss")
    ax.set_title("Loss vs parameters per token budget" + (" (Approach 3 fit)" if law else ""))
    ax.legend(fontsize=7, ncol=2)
    return _finish(fig, path)


def plot_isoflop(frame: pd.DataFrame, isoflop: IsoFlopResult,
                 path: str | Path | None = None) -> Figure:
    """Left: IsoFLOP curves (runs, fitted parabola in ln N, minimum as a star; flagged curves
    dashed; where the plan recorded them, the windows' planned centres as ticks). Right: parabola minima
    N_opt vs C with the fitted power law.

    Artists (left axes): one parabola line per curve plus one line of minima markers (plus one line of
    planned-centre ticks for planned IsoFLOP designs).
    """
    fig = Figure(figsize=(12, 5))
    ax, ax_n = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    points = isoflop.points
    curves = isoflop.curves
    cmap = colormaps["plasma"]
    for i, row in enumerate(curves.itertuples(index=False)):
        color = cmap(i / max(1, len(curves) - 1) * 0.85)
        sub = points[np.isclose(points["budget"], row.budget)]
        ax.scatter(sub["n_params"], sub["loss"], color=color, s=18)
        x = np.linspace(np.log(row.n_min) - 0.2, np.log(row.n_max) + 0.2, 100)
        ax.plot(np.exp(x), row.c0 + row.c1 * x + row.c2 * x ** 2, color=color,
                ls="-" if row.used and not row.flag else "--", lw=1.2, label=f"C = {row.budget:.2g}")
    ok = curves[np.isfinite(curves["n_opt"])]
    ax.plot(ok["n_opt"], ok["loss_opt"], ls="none", marker="*", ms=12, color="k", label="minimum")
    planned = curves[np.isfinite(curves["planned_centre"])] if "planned_centre" in curves else curves.iloc[:0]
    if len(planned):  # where the plan centred each window (the prior's N_opt), on its parabola
        x = np.log(planned["planned_centre"])
        ax.plot(planned["planned_centre"], planned["c0"] + planned["c1"] * x + planned["c2"] * x ** 2,
                ls="none", marker="|", ms=14, mew=2, color="0.4", label="planned centre (prior)")
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("final loss")
    ax.set_title("IsoFLOP profiles (Approach 2)")
    ax.legend(fontsize=7)
    used = curves[curves["used"]]
    _draw_power_laws(ax_n, isoflop, used["budget"], used["n_opt"], used["d_opt"],
                     labels=("N_opt (parabola minima)", "D_opt"), ylabel="N_opt, D_opt")
    return _finish(fig, path)


def _draw_power_laws(ax: Axes, result: EnvelopeResult | IsoFlopResult, C: pd.Series, N: pd.Series,
                     D: pd.Series, labels: tuple[str, str], ylabel: str) -> None:
    """The points behind Approach 1 or 2 and their fitted N_opt ∝ C^a, D_opt ∝ C^b, on log axes."""
    ax.scatter(C, N, color="C0", label=labels[0])
    ax.scatter(C, D, color="C1", label=labels[1])
    c = np.logspace(np.log10(C.min()) - 0.5, np.log10(C.max()) + 0.5, 50)
    n_fit, d_fit = result.compute_optimal(c)
    ax.plot(c, n_fit, color="C0", label=f"N_opt ∝ C^{result.a:.3f}")
    ax.plot(c, d_fit, color="C1", label=f"D_opt ∝ C^{result.b:.3f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def plot_envelope(frame: pd.DataFrame | Points, envelope: EnvelopeResult,
                  path: str | Path | None = None) -> Figure:
    """Left: loss vs compute, all runs grey, each size's fitted loss curve thin, their minimum-loss
    envelope red. Right: the envelope's N and D vs C with the fitted power laws (Approach 1)."""
    done = points_of(frame)
    env = envelope.points
    fig = Figure(figsize=(12, 5))
    ax, ax_n = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ax.scatter(done["flops"], done["loss"], color="0.6", s=12, label="runs")
    k = float(np.median(done["flops"] / (done["n_params"] * done["n_tokens"])))
    for i, (size, curve) in enumerate(sorted(envelope.curves.items())):
        d_lo, d_hi = envelope.token_ranges[size]
        d = np.geomspace(d_lo, d_hi, 40)
        ax.plot(k * size * d, curve.predict(d), color="0.75", lw=0.8,
                label="fitted L(D) per size" if i == 0 else None)
    ax.plot(env["flops"], env["loss"], color="C3", lw=1.6, label="minimum-loss envelope")
    ax.set_xscale("log")
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel("final loss")
    ax.set_title("Loss vs compute (Approach 1)")
    ax.legend(fontsize=8)
    _draw_power_laws(ax_n, envelope, env["flops"], env["n_params"], env["n_tokens"],
                     labels=("envelope N", "envelope D"), ylabel="N, D")
    return _finish(fig, path)


def plot_compute_optimal(laws_or_reports: object, budgets: Iterable[float] = DEFAULT_PLOT_BUDGETS,
                         level: float = 0.95, path: str | Path | None = None) -> Figure:
    """N_opt(C) (left) and D_opt(C) (right), one line per law, with bootstrap bands where the law
    has bootstrap samples. Accepts one law/report or a mapping label -> law/report."""
    budgets = np.asarray(list(budgets), dtype=float)
    fig = Figure(figsize=(12, 5))
    ax_n, ax_d = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, (label, obj) in enumerate(_as_mapping(laws_or_reports).items()):
        law = law_of(obj)
        color = f"C{i % 10}"
        n_opt, d_opt = law.compute_optimal(budgets)
        ax_n.plot(budgets, n_opt, color=color, label=label)
        ax_d.plot(budgets, d_opt, color=color, label=label)
        if hasattr(law, "bootstrap_params_"):
            band = law.compute_optimal_interval(budgets, level)
            ax_n.fill_between(budgets, band["n_opt_lo"], band["n_opt_hi"], color=color, alpha=0.2)
            ax_d.fill_between(budgets, band["d_opt_lo"], band["d_opt_hi"], color=color, alpha=0.2)
    for ax, name in ((ax_n, "N_opt (parameters)"), (ax_d, "D_opt (tokens)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    ax_n.set_title(f"Compute-optimal allocation ({100 * level:g}% bootstrap bands)")
    return _finish(fig, path)


def plot_isoloss(law: ChinchillaLaw, frame: pd.DataFrame | Points | None = None, n_levels: int = 12,
                 path: str | Path | None = None) -> Figure:
    """Iso-loss contours of the parametric fit over (C, N) with C = 6ND, the efficient frontier
    N_opt(C) (Hoffmann et al. 2022, fig. 4 left), and the runs coloured by loss."""
    if frame is not None:
        done = points_of(frame)
        c_lo, c_hi = np.log10(done["flops"].min()) - 0.5, np.log10(done["flops"].max()) + 1.5
        n_lo, n_hi = np.log10(done["n_params"].min()) - 0.5, np.log10(done["n_params"].max()) + 1.0
    else:
        done = None
        c_lo, c_hi, n_lo, n_hi = 17.0, 25.0, 7.0, 12.0
    c = np.logspace(c_lo, c_hi, 200)
    n = np.logspace(n_lo, n_hi, 200)
    cc, nn = np.meshgrid(c, n)
    loss = law.predict(nn, cc / (6.0 * nn))
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    levels = np.geomspace(np.nanmin(loss) * 1.001, np.nanquantile(loss, 0.9), n_levels)
    cs = ax.contour(cc, nn, loss, levels=levels, cmap="viridis", norm=LogNorm(), linewidths=0.8)
    ax.clabel(cs, fontsize=6, fmt="%.2f")
    n_opt, _ = law.compute_optimal(c)
    ax.plot(c, n_opt, color="C3", lw=2, label="efficient frontier N_opt(C)")
    if done is not None:
        sc = ax.scatter(done["flops"], done["n_params"], c=done["loss"], cmap="viridis",
                        norm=LogNorm(), s=12, edgecolors="k", linewidths=0.3)
        fig.colorbar(sc, ax=ax, label="final loss")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(c[0], c[-1])
    ax.set_ylim(n[0], n[-1])
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel("parameters N")
    ax.set_title("Iso-loss contours of L(N, D)")
    ax.legend(fontsize=8, loc="upper left")
    return _finish(fig, path)


def plot_residuals(frame: pd.DataFrame | Points, law: ChinchillaLaw, path: str | Path | None = None) -> Figure:
    """Log residuals log L - log L_hat of the fit vs compute (left) and their histogram (right), at the
    fit's points: a `Points` (a report's), or those fit_sweep fits of a frame of runs (best LR, seed mean)."""
    done = points_of(frame)
    resid = np.log(done["loss"].to_numpy()) - np.log(law.predict(done["n_params"].to_numpy(),
                                                                  done["n_tokens"].to_numpy()))
    fig = Figure(figsize=(12, 4))
    ax, ax_h = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    sc = ax.scatter(done["flops"], resid, c=np.log10(done["n_params"]), cmap="viridis", s=14)
    fig.colorbar(sc, ax=ax, label="log10 N")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel("log L - log L_hat")
    ax.set_title("Residuals of the Approach 3 fit")
    ax_h.hist(resid, bins=30, color="C0")
    ax_h.axvline(0.0, color="k", lw=0.8)
    ax_h.set_xlabel("log residual")
    ax_h.set_ylabel("runs")
    return _finish(fig, path)


def plot_frontiers(laws: Mapping[str, object] | None = None,
                   budgets: Iterable[float] = DEFAULT_PLOT_BUDGETS,
                   path: str | Path | None = None) -> Figure:
    """Tokens per parameter (left) and N_opt (right) vs compute for fitted and published laws
    side by side (default: `compare.published_laws()`). One line per law per axes."""
    laws = published_laws() if laws is None else laws
    table = compare_table(laws, budgets)
    fig = Figure(figsize=(12, 5))
    ax_t, ax_n = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, label in enumerate(laws):
        color = f"C{i % 10}"
        ax_t.plot(table["flops"], table[f"{label}/tokens_per_param"], color=color, label=label)
        ax_n.plot(table["flops"], table[f"{label}/n_opt"], color=color, label=label)
    ax_t.axhline(20.0, color="0.5", ls=":", lw=1)
    for ax, name in ((ax_t, "D_opt / N_opt (tokens per parameter)"), (ax_n, "N_opt (parameters)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_ylabel(name)
    ax_t.legend(fontsize=7)
    ax_t.set_title("Compute-optimal frontiers compared")
    return _finish(fig, path)


def save_figures(frame: pd.DataFrame | Points, report: FitReport, out_dir: str | Path,
                 compare_with: Mapping[str, object] | None = None) -> list[Path]:
    """Write every figure the report supports as PNG under out_dir; returns the paths written.

    Every figure shows the report's points (`report.points`, the rows its fits used), not rows chosen
    again from `frame`, which is used only for a report without them.
    compare_with: laws for the frontier comparison (default: the published laws).
    """
    frame = report.points if report.points is not None else frame
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, object]] = []
    law = report.law
    if law is not None:
        jobs += [
            ("loss_vs_params.png", lambda p: plot_loss_vs_params(frame, law, path=p)),
            # the report's budgets: the sweep's own compute and two decades beyond, not 1e17-1e25 for a CPU sweep
            ("compute_optimal.png", lambda p: plot_compute_optimal(
                {"this sweep": law}, budgets=np.geomspace(min(report.budgets), max(report.budgets), 33), path=p)),
            ("isoloss.png", lambda p: plot_isoloss(law, frame, path=p)),
            ("residuals.png", lambda p: plot_residuals(frame, law, path=p)),
            ("frontiers.png", lambda p: plot_frontiers(
                {"this sweep": law, **(published_laws() if compare_with is None else compare_with)},
                path=p)),
        ]
    if report.isoflop is not None:
        jobs.append(("isoflop.png", lambda p: plot_isoflop(frame, report.isoflop, path=p)))
    if report.envelope is not None:
        jobs.append(("envelope.png", lambda p: plot_envelope(frame, report.envelope, path=p)))
    written = []
    for name, make in jobs:
        path = out_dir / name
        try:
            make(path)
        except (FitError, ValueError) as exc:
            log.warning("skipped %s: %s", name, exc)
            continue
        written.append(path)
    return written
