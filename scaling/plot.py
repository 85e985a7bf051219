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
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter

from scaling.analysis.extrapolation import EXTRAPOLATION_FACTOR, data_flops, in_data_range
from scaling.analysis.identify import BORDERLINE
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

UNIDENTIFIED_COLOR = "0.6"
"""A law with quantities its data do not pin is drawn in this grey, with a "not identified: ..." note."""

BYTE_VOCAB = 256


def loss_label(frame: pd.DataFrame | Points | None, what: str = "held-out loss") -> str:
    """The loss axis's label with its unit: nats per byte for byte-level runs (vocab_size 256), nats per token
    for tokenized ones; a frame without vocab_size (a CSV) gets no unit: it is the source's own."""
    table = frame.frame if isinstance(frame, Points) else frame
    vocab = None
    if isinstance(table, pd.DataFrame) and "vocab_size" in table:
        vocab = pd.to_numeric(table["vocab_size"], errors="coerce").dropna().unique()
    if vocab is None or len(vocab) == 0:
        return "loss (the source's units)"
    unit = "nats/byte" if set(vocab) == {BYTE_VOCAB} else "nats/token"
    return f"{what} ({unit})"


def not_identified_names(report: object) -> list[str]:
    """What a FitReport's Approach 3 fit does not pin: parameters, and N_opt at the sweep's largest compute."""
    names = [k + (" (borderline)" if why.startswith(BORDERLINE) else "")
             for k, why in (getattr(report, "identification", None) or {}).items() if why]
    optimum = getattr(report, "optimum", None) or {}
    if optimum.get("identified") is False:
        names.append("N_opt at largest C" + (" (borderline)" if optimum.get("verdict") == "borderline" else ""))
    return names


def _note_not_identified(ax: Axes, names: Iterable[str]) -> None:
    """A visible note on the axes naming what the fit does not identify (nothing when all is identified)."""
    names = list(names)
    if names:
        label = "not identified" + (" or borderline" if any(n.endswith("(borderline)") for n in names) else "")
        ax.text(0.01, 0.01, f"{label}: " + ", ".join(names) + " (law greyed; see the diagnostics)",
                transform=ax.transAxes, fontsize=8, color="C3", ha="left", va="bottom", gid="not-identified",
                bbox={"facecolor": "white", "edgecolor": "C3", "alpha": 0.85, "pad": 2})


def _budget_grid(budgets: np.ndarray, law: object) -> np.ndarray:
    """The budgets plus the data range's ends that fall between them, so the solid part ends on the data."""
    span = data_flops(law)
    if span is None:
        return budgets
    ends = [c for c in span if budgets.min() < c < budgets.max()]
    return np.unique(np.concatenate([budgets, ends]))


def _draw_law(ax: Axes, budgets: np.ndarray, values: np.ndarray, law: object, color: object, label: str,
              band: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """A law read at `budgets`: solid over its data's compute range, dashed beyond it (gid "law-data",
    "law-extrapolated"), with its bootstrap band (gid "band") wherever drawn; a law of unknown range (a
    published one) is one solid line (gid "law")."""
    inside = in_data_range(law, budgets)
    if inside is None:
        ax.plot(budgets, values, color=color, label=label, gid="law")
    else:
        ax.plot(budgets, np.where(inside, values, np.nan), color=color, label=f"{label} (data range)",
                gid="law-data")
        # beyond the data, plus the range's end points, so the dashed pieces join the solid one
        boundary = inside & ~(np.r_[inside[1:], True] & np.r_[True, inside[:-1]])
        outside = ~inside | boundary
        ax.plot(budgets, np.where(outside, values, np.nan), color=color, ls="--", label=f"{label} (extrapolated)",
                gid="law-extrapolated")
    if band is not None:
        ax.fill_between(budgets, band[0], band[1], color=color, alpha=0.18, gid="band")


def _mark_extrapolation_limit(ax: Axes, law: object, budgets: np.ndarray) -> None:
    """A dotted vertical line where the law's tables start marking rows extrapolated (if inside the axes)."""
    span = data_flops(law)
    if span is None:
        return
    limit = span[1] * EXTRAPOLATION_FACTOR
    if budgets.min() < limit < budgets.max():
        ax.axvline(limit, color="0.4", ls=":", lw=1, gid="extrapolation-limit",
                   label=f"{EXTRAPOLATION_FACTOR:g}x the largest run: extrapolated beyond")


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
                        path: str | Path | None = None, not_identified: Iterable[str] = (),
                        ylabel: str | None = None) -> Figure:
    """Loss vs N (log x), one colour per token budget, with the fitted L(N, D) at that budget.

    Artists: one scatter collection per token budget and, with a law, one line per budget. Points: those of
    a `Points`, else the ones fit_sweep fits (`points_of`), as in every figure here that takes a frame.
    not_identified: what the fit does not pin (`not_identified_names`): the law's lines are grey and a note
    says so. ylabel: the loss axis (default `loss_label` of the frame).
    """
    not_identified = list(not_identified)
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
            ax.plot(n_grid, law.predict(n_grid, d), color=UNIDENTIFIED_COLOR if not_identified else color, lw=1.2)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel(ylabel or loss_label(frame))
    _note_not_identified(ax, not_identified if law is not None else ())
    ax.set_title("Loss vs parameters per token budget" + (" (Approach 3 fit)" if law else ""))
    ax.legend(fontsize=7, ncol=2)
    return _finish(fig, path)


def plot_isoflop(frame: pd.DataFrame, isoflop: IsoFlopResult,
                 path: str | Path | None = None, ylabel: str | None = None) -> Figure:
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
    ax.set_ylabel(ylabel or loss_label(frame))
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
                  path: str | Path | None = None, ylabel: str | None = None) -> Figure:
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
    ax.set_ylabel(ylabel or loss_label(frame))
    ax.set_title("Loss vs compute (Approach 1)")
    ax.legend(fontsize=8)
    _draw_power_laws(ax_n, envelope, env["flops"], env["n_params"], env["n_tokens"],
                     labels=("envelope N", "envelope D"), ylabel="N, D")
    return _finish(fig, path)


def plot_compute_optimal(laws_or_reports: object, budgets: Iterable[float] = DEFAULT_PLOT_BUDGETS,
                         level: float = 0.95, path: str | Path | None = None,
                         isoflop: IsoFlopResult | None = None) -> Figure:
    """N_opt(C) (left) and D_opt(C) (right), one law per colour. Accepts one law/report or a mapping
    label -> law/report.

    A fitted law is drawn solid over its data's compute range and dashed beyond it (`_draw_law`), with its
    bootstrap band where it has bootstrap samples, and a dotted line at EXTRAPOLATION_FACTOR times its
    largest run. A FitReport with quantities its data do not pin is drawn grey with a "not identified: ..."
    note. isoflop: Approach 2's parabola minima, drawn as points (at C = 6 N_opt D_opt, the axis's units).
    """
    budgets = np.asarray(list(budgets), dtype=float)
    fig = Figure(figsize=(12, 5))
    ax_n, ax_d = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    notes: list[str] = []
    for i, (label, obj) in enumerate(_as_mapping(laws_or_reports).items()):
        law = law_of(obj)
        missing = not_identified_names(obj)
        notes += [f"{name} ({label})" if len(_as_mapping(laws_or_reports)) > 1 else name for name in missing]
        color = UNIDENTIFIED_COLOR if missing else f"C{i % 10}"
        grid = _budget_grid(budgets, law)
        n_opt, d_opt = law.compute_optimal(grid)
        band_n = band_d = None
        if hasattr(law, "bootstrap_params_"):
            band = law.compute_optimal_interval(grid, level)
            band_n, band_d = (band["n_opt_lo"], band["n_opt_hi"]), (band["d_opt_lo"], band["d_opt_hi"])
        _draw_law(ax_n, grid, n_opt, law, color, label, band_n)
        _draw_law(ax_d, grid, d_opt, law, color, label, band_d)
        for ax in (ax_n, ax_d):
            _mark_extrapolation_limit(ax, law, grid)
    if isoflop is not None:
        used = isoflop.curves[isoflop.curves["used"] & np.isfinite(isoflop.curves["n_opt"])]
        c6 = 6.0 * used["n_opt"] * used["d_opt"]
        ax_n.plot(c6, used["n_opt"], ls="none", marker="*", ms=11, color="k", gid="approach2",
                  label="Approach 2 minima (IsoFLOP parabolas)")
        ax_d.plot(c6, used["d_opt"], ls="none", marker="*", ms=11, color="k", gid="approach2",
                  label="Approach 2 minima (IsoFLOP parabolas)")
    for ax, name in ((ax_n, "N_opt (parameters)"), (ax_d, "D_opt (tokens)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute C = 6ND (FLOPs)")
        ax.set_ylabel(name)
        ax.legend(fontsize=7)
    _note_not_identified(ax_n, notes)
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
        fig.colorbar(sc, ax=ax, label=loss_label(frame))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(c[0], c[-1])
    ax.set_ylim(n[0], n[-1])
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel("parameters N")
    ax.set_title("Iso-loss contours of L(N, D)")
    ax.legend(fontsize=8, loc="upper left")
    return _finish(fig, path)


def plot_residuals(frame: pd.DataFrame | Points, law: ChinchillaLaw, path: str | Path | None = None,
                   outliers: pd.DataFrame | None = None) -> Figure:
    """Log residuals log L - log L_hat of the fit vs compute (left) and their histogram (right), at the
    fit's points: a `Points` (a report's), or those fit_sweep fits of a frame of runs (best LR, seed mean).

    outliers: a report's outlying runs (`outlying_runs`: run_id, rel_error); each is circled and labelled
    with its run id (texts with gid "outlier"). The compute axis shows decade ticks only, so its labels
    never overlap (a sweep within one decade gets 2-3 minor labels at most).
    """
    done = points_of(frame)
    resid = np.log(done["loss"].to_numpy()) - np.log(law.predict(done["n_params"].to_numpy(),
                                                                  done["n_tokens"].to_numpy()))
    fig = Figure(figsize=(12, 4.5))
    ax, ax_h = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    sc = ax.scatter(done["flops"], resid, c=np.log10(done["n_params"]), cmap="viridis", s=14)
    fig.colorbar(sc, ax=ax, label="log10 N")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xscale("log")
    _sparse_log_ticks(ax, done["flops"].to_numpy())
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel("log L - log L_hat")
    ax.set_title("Residuals of the Approach 3 fit")
    ax.margins(x=0.08, y=0.18)  # room for the outliers' labels inside the axes
    if outliers is not None and len(outliers) and "run_id" in done:
        ids = done["run_id"].astype(str).to_numpy()
        for k, row in enumerate(outliers.itertuples(index=False)):
            hit = np.flatnonzero(ids == str(row.run_id))
            if not len(hit):
                continue
            x, y = float(done["flops"].iloc[hit[0]]), float(resid[hit[0]])
            ax.scatter([x], [y], s=80, facecolors="none", edgecolors="C3", linewidths=1.2)
            # alternate above / below so neighbouring labels do not sit on one another
            ax.annotate(f"{row.run_id} ({row.rel_error:+.1%})", (x, y), xytext=(6, 10 if k % 2 == 0 else -14),
                        textcoords="offset points", fontsize=7, color="C3", gid="outlier")
    ax_h.hist(resid, bins=30, color="C0")
    ax_h.axvline(0.0, color="k", lw=0.8)
    ax_h.set_xlabel("log residual")
    ax_h.set_ylabel("runs")
    return _finish(fig, path)


def _sparse_log_ticks(ax: Axes, values: np.ndarray) -> None:
    """Decade labels on a log axis, plus at most a few minor ones when the data span under a decade."""
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=8))
    if np.nanmax(values) / np.nanmin(values) < 10:
        ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0), numticks=8))
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())


def plot_predicted_vs_observed(frame: pd.DataFrame | Points, law: ChinchillaLaw,
                               holdout: object | None = None, path: str | Path | None = None,
                               not_identified: Iterable[str] = (), unit: str | None = None) -> Figure:
    """Each point's observed loss against the law's prediction, with the y = x line (gid "identity").

    holdout: a report's HoldoutResult: its runs, predicted by the law fitted without them, drawn as red
    crosses (gid "holdout"), the honest test of the law's extrapolation.
    """
    done = points_of(frame)
    observed = done["loss"].to_numpy()
    predicted = law.predict(done["n_params"].to_numpy(), done["n_tokens"].to_numpy())
    fig = Figure(figsize=(6, 5.5))
    ax = fig.add_subplot()
    sc = ax.scatter(predicted, observed, c=np.log10(done["n_params"]), cmap="viridis", s=16, label="fitted points")
    fig.colorbar(sc, ax=ax, label="log10 N")
    lo, hi = [observed.min(), observed.max()]
    if holdout is not None and len(holdout.table):
        t = holdout.table
        ax.plot(t["predicted"], t["loss"], ls="none", marker="x", ms=8, color="C3", gid="holdout",
                label=f"held out, predicted by the fit without them (C > {holdout.max_fit_flops:.3g})")
        lo, hi = min(lo, t["loss"].min(), t["predicted"].min()), max(hi, t["loss"].max(), t["predicted"].max())
    lo, hi = min(lo, predicted.min()), max(hi, predicted.max())
    pad = 0.03 * (hi - lo)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="k", lw=0.8, gid="identity", label="y = x")
    unit = unit or loss_label(frame)
    ax.set_xlabel(f"predicted by the Approach 3 law: {unit}")
    ax.set_ylabel(f"observed {unit}")
    ax.set_title("Predicted vs observed loss")
    ax.legend(fontsize=7, loc="upper left")
    _note_not_identified(ax, not_identified)
    return _finish(fig, path)


def plot_loss_curves(curves: Mapping[str, pd.DataFrame], path: str | Path | None = None,
                     ylabel: str = "loss") -> Figure:
    """Every run's training loss against tokens seen (one line per run, gid "curve", coloured by log N when
    its frame has an n_params column), with its held-out evaluations as dots (gid "held-out").

    curves: run id -> its metrics.jsonl records as a frame (columns tokens, train_loss, optional val_loss
    and n_params).
    """
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    sizes = {k: float(c["n_params"].iloc[0]) for k, c in curves.items()
             if "n_params" in c and len(c) and np.isfinite(c["n_params"].iloc[0]) and c["n_params"].iloc[0] > 0}
    logs = np.log10(list(sizes.values())) if sizes else np.array([0.0])
    lo, hi = float(logs.min()), float(logs.max())
    cmap = colormaps["viridis"]
    drawn = 0
    for run_id, curve in curves.items():
        if "tokens" not in curve or "train_loss" not in curve:
            continue
        train = curve.dropna(subset=["tokens", "train_loss"])
        train = train[train["tokens"] > 0]
        if not len(train):
            continue
        size = sizes.get(run_id)
        color = cmap((np.log10(size) - lo) / (hi - lo) if size and hi > lo else 0.5)
        ax.plot(train["tokens"], train["train_loss"], color=color, lw=0.8, alpha=0.8, gid="curve")
        if "val_loss" in curve:
            val = curve.dropna(subset=["tokens", "val_loss"])
            ax.plot(val["tokens"], val["val_loss"], ls="none", marker="o", ms=3, color=color, gid="held-out")
        drawn += 1
    if not drawn:
        raise ValueError("no run has a loss curve (metrics.jsonl with tokens and train_loss)")
    if sizes and hi > lo:
        fig.colorbar(ScalarMappable(norm=Normalize(lo, hi), cmap=cmap), ax=ax, label="log10 N")
    ax.set_xscale("log")
    ax.set_xlabel("tokens seen D")
    ax.set_ylabel(ylabel)
    ax.set_title(f"Loss curves of {drawn} runs (lines: training loss; dots: held-out evaluations)")
    return _finish(fig, path)


def plot_frontiers(laws: Mapping[str, object] | None = None,
                   budgets: Iterable[float] = DEFAULT_PLOT_BUDGETS,
                   path: str | Path | None = None) -> Figure:
    """Tokens per parameter (left) and N_opt (right) vs compute for fitted and published laws
    side by side (default: `compare.published_laws()`).

    A published law is one solid line per axes; a fitted law is solid over its data's compute range and
    dashed beyond it, with its bootstrap band when it has one (`_draw_law`), and a FitReport with
    quantities its data do not pin is grey with a "not identified" note.
    """
    laws = published_laws() if laws is None else laws
    budgets = np.asarray(list(budgets), dtype=float)
    fig = Figure(figsize=(12, 5))
    ax_t, ax_n = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    notes: list[str] = []
    for i, (label, obj) in enumerate(laws.items()):
        law = law_of(obj)
        missing = not_identified_names(obj)
        notes += [f"{name} ({label})" for name in missing]
        color = UNIDENTIFIED_COLOR if missing else f"C{i % 10}"
        grid = _budget_grid(budgets, law)
        table = compare_table({label: law}, grid)
        band_t = band_n = None
        if f"{label}/n_opt_lo" in table:
            n_lo, n_hi = table[f"{label}/n_opt_lo"].to_numpy(), table[f"{label}/n_opt_hi"].to_numpy()
            band_n = (n_lo, n_hi)
            # D = C / 6N, so tokens per parameter C / 6N^2 falls as N rises: the band's ends swap
            band_t = (grid / (6.0 * n_hi ** 2), grid / (6.0 * n_lo ** 2))
        _draw_law(ax_t, grid, table[f"{label}/tokens_per_param"].to_numpy(), law, color, label, band_t)
        _draw_law(ax_n, grid, table[f"{label}/n_opt"].to_numpy(), law, color, label, band_n)
        for ax in (ax_t, ax_n):
            _mark_extrapolation_limit(ax, law, grid)
    ax_t.axhline(20.0, color="0.5", ls=":", lw=1, gid="guide")
    for ax, name in ((ax_t, "D_opt / N_opt (tokens per parameter)"), (ax_n, "N_opt (parameters)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute C = 6ND (FLOPs)")
        ax.set_ylabel(name)
    ax_t.legend(fontsize=6)
    _note_not_identified(ax_n, notes)
    ax_t.set_title("Compute-optimal frontiers compared")
    return _finish(fig, path)


def save_figures(frame: pd.DataFrame | Points, report: FitReport, out_dir: str | Path,
                 compare_with: Mapping[str, object] | None = None,
                 curves: Mapping[str, pd.DataFrame] | None = None, ylabel: str | None = None) -> list[Path]:
    """Write every figure the report supports as PNG under out_dir; returns the paths written.

    Every figure shows the report's points (`report.points`, the rows its fits used), not rows chosen
    again from `frame`, which is used only for a report without them.
    compare_with: laws for the frontier comparison (default: the published laws).
    curves: run id -> metrics records (`plot_loss_curves`), for loss_curves.png; a CSV source has none.
    ylabel: the loss axis (default `loss_label(frame)`: held-out loss in nats per byte or token).
    """
    ylabel = ylabel or loss_label(frame)
    frame = report.points if report.points is not None else frame
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, object]] = []
    law = report.law
    missing = not_identified_names(report)
    if law is not None:
        # the report's budgets: the sweep's own compute and two decades beyond, not 1e17-1e25 for a CPU sweep
        budgets = np.geomspace(min(report.budgets), max(report.budgets), 33)
        jobs += [
            ("loss_vs_params.png", lambda p: plot_loss_vs_params(frame, law, path=p, not_identified=missing,
                                                                 ylabel=ylabel)),
            ("compute_optimal.png", lambda p: plot_compute_optimal(
                {"this sweep": report}, budgets=budgets, path=p, isoflop=report.isoflop)),
            ("isoloss.png", lambda p: plot_isoloss(law, frame, path=p)),
            ("residuals.png", lambda p: plot_residuals(frame, law, path=p, outliers=report.outliers)),
            ("predicted_vs_observed.png", lambda p: plot_predicted_vs_observed(
                frame, law, holdout=report.holdout, path=p, not_identified=missing, unit=ylabel)),
            ("frontiers.png", lambda p: plot_frontiers(
                {"this sweep": report, **(published_laws() if compare_with is None else compare_with)},
                path=p)),
        ]
    if report.isoflop is not None:
        jobs.append(("isoflop.png", lambda p: plot_isoflop(frame, report.isoflop, path=p, ylabel=ylabel)))
    if report.envelope is not None:
        jobs.append(("envelope.png", lambda p: plot_envelope(frame, report.envelope, path=p, ylabel=ylabel)))
    if curves:
        train_label = ylabel.replace("held-out loss", "loss") if ylabel.startswith("held-out") else ylabel
        jobs.append(("loss_curves.png", lambda p: plot_loss_curves(curves, path=p, ylabel=train_label)))
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
