"""What `scaling fit` and `scaling compare` add for a sweep whose runs repeat their data ([grid].unique_tokens).

Muennighoff et al. 2023's data-constrained law (scaling.analysis.data_constrained) fitted on the sweep's runs:
R*_D and R*_N with bootstrap intervals (or why the sweep cannot pin them), what repetition costs in plain terms,
and the compute-optimal size and epochs under each of the sweep's unique-token budgets (table and figure).

Each run's unique tokens U: its unique_tokens when it trained on a subset; otherwise its tokens D (fresh data,
each token seen once), or the training split's size when D exceeds it (the run repeated the whole split).
A results table or CSV with a `unique_tokens` column (0 = fresh) is read the same way. Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.analysis.data_constrained import (MAX_SINGLE_EPOCH, DataConstrainedFit, allocate, describe_cost,
                                               fit_data_constrained, repetition_cost)
from scaling.errors import FitError
from scaling.laws import DataConstrainedLaw
from scaling.plot_repetition import plot_repetition
from scaling.results import export_csv, write_json_atomic

COST_EPOCHS = (1, 2, 4, 8, 16, 32)
"""Epoch counts of the repetition-cost table (the paper's range: up to 16 epochs cost little, 40 is worthless)."""
MAX_BOOT = 200
"""Bootstrap resamples of the data-constrained fit at most: each one refits stage 1 (Approach 3 on the
single-epoch runs) and stage 2 from several starts, ~0.1 s each on this sweep's 39 runs."""


def unique_per_row(frame: pd.DataFrame) -> pd.Series | None:
    """Each row's unique tokens U (see the module docstring), or None when the frame has no unique_tokens column."""
    if "unique_tokens" not in frame.columns:
        return None
    unique = pd.to_numeric(frame["unique_tokens"], errors="coerce").fillna(0.0).astype(float)
    tokens = pd.to_numeric(frame["n_tokens"], errors="coerce").astype(float)
    split = (pd.to_numeric(frame["n_train_tokens"], errors="coerce").astype(float)
             if "n_train_tokens" in frame.columns else pd.Series(math.inf, index=frame.index))
    fresh = tokens.where(~(tokens > split), split)  # a fresh run past the whole split repeats the split
    # a budget rounded down to whole steps (U_D = D = 250K trains 249,856 tokens) sees at most D unique tokens
    return unique.where(unique > 0, fresh).clip(upper=tokens)


def repeated_mask(frame: pd.DataFrame) -> pd.Series:
    """Rows that see their unique tokens more than once (all False without a unique_tokens column)."""
    unique = unique_per_row(frame)
    if unique is None:
        return pd.Series(False, index=frame.index)
    return pd.to_numeric(frame["n_tokens"], errors="coerce").astype(float) / unique > MAX_SINGLE_EPOCH


def fit_frame(frame: pd.DataFrame, n_boot: int) -> tuple[DataConstrainedFit, pd.DataFrame]:
    """The data-constrained fit on the finished runs (the seeds of one (N, D, U) averaged) and those points."""
    done = frame if "status" not in frame.columns else frame[frame["status"] == "done"]
    loss = pd.to_numeric(done["loss"], errors="coerce")
    points = pd.DataFrame({"n_params": pd.to_numeric(done["n_params"], errors="coerce").astype(float),
                           "n_tokens": pd.to_numeric(done["n_tokens"], errors="coerce").astype(float),
                           "unique": unique_per_row(done), "loss": loss})
    points = points[np.isfinite(points["loss"]) & (points["loss"] > 0)]
    points = points.groupby(["n_params", "n_tokens", "unique"], as_index=False)["loss"].mean()
    points["epochs"] = points["n_tokens"] / points["unique"]
    fit = fit_data_constrained(points["n_params"], points["n_tokens"], points["unique"], points["loss"],
                               n_boot=min(n_boot, MAX_BOOT))
    return fit, points


def allocation_table(law: DataConstrainedLaw, budgets: list[float], uniques: list[float]) -> pd.DataFrame:
    """The compute-optimal N, D and epochs at each (budget, unique budget), beside the same law's optimum with
    unlimited unique data (unlimited_* columns)."""
    rows = [allocate(law, c, u) for u in uniques for c in budgets]
    table = pd.DataFrame(rows)[["unique", "flops", "n_params", "tokens", "epochs", "loss", "chinchilla_n_params",
                                "chinchilla_tokens", "chinchilla_epochs", "chinchilla_loss"]]
    # allocate's chinchilla_* are this law's own optimum with unlimited unique data, not Hoffmann et al.'s law
    return table.rename(columns=lambda c: c.replace("chinchilla_", "unlimited_"))


def report_lines(fit: DataConstrainedFit, points: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """The text `scaling fit` prints: the R* lines, the repetition cost in plain terms, the allocation table."""
    lines = [f"\n=== data-constrained law (Muennighoff et al. 2023): {fit.n_runs} (N, D, U_D) points, "
             f"{fit.n_single} single-epoch (E, A, B, alpha, beta), {fit.n_repeated} repeated ===",
             f"base: E = {fit.law.E:.4g}, A = {fit.law.A:.4g}, B = {fit.law.B:.4g}, alpha = {fit.law.alpha:.4g}, "
             f"beta = {fit.law.beta:.4g}"]
    lines += fit.summary()
    n_largest = float(points["n_params"].max())
    repeated_uniques = sorted(points.loc[points["epochs"] > MAX_SINGLE_EPOCH, "unique"].unique())
    unique = float(repeated_uniques[0]) if repeated_uniques else float(points["unique"].min())
    cost = repetition_cost(fit.law, n_largest, unique, COST_EPOCHS)
    lines.append(f"repetition cost, {n_largest:.3g} parameters on {unique:.3g} unique tokens (the fitted law):")
    lines += ["  " + describe_cost(row, unique) for _, row in cost.iterrows() if row["epochs"] > 1]
    if fit.verdicts.get("rd_star"):
        lines.append("  (R*_D is not identified: these costs rest on its point estimate only)")
    shown = table.assign(**{c: table[c].map(lambda x: f"{x:.3g}") for c in table.columns})
    lines.append("compute-optimal size and epochs under each unique-token budget (C = 6 N D):")
    lines += ["  " + line for line in shown.to_string(index=False).splitlines()]
    return lines


@dataclass(frozen=True)
class RepetitionReport:
    """The data-constrained fit of a sweep, its points, the allocation table and the report lines."""

    fit: DataConstrainedFit
    points: pd.DataFrame
    uniques: list[float]
    table: pd.DataFrame
    lines: list[str]


def repetition_report(frame: pd.DataFrame, budgets: list[float], n_boot: int) -> RepetitionReport:
    """Fit the data-constrained law on a sweep's runs (FitError when it cannot) and say what it gives."""
    fit, points = fit_frame(frame, n_boot)
    uniques = sorted(float(u) for u in points.loc[points["epochs"] > MAX_SINGLE_EPOCH, "unique"].unique())
    table = allocation_table(fit.law, budgets, uniques)
    return RepetitionReport(fit, points, uniques, table, report_lines(fit, points, table))


def draw_repetition(report: RepetitionReport, budgets: list[float], path: Path) -> Path:
    """The allocation figure (plot_repetition) for the smallest repeated unique-token budget, saved at path."""
    plot_repetition(report.fit.law, report.uniques[0], np.asarray(budgets), runs=report.points, path=path)
    return path


def fit_repetition(frame: pd.DataFrame, out_dir: Path, budgets: list[float], n_boot: int) -> list[str]:
    """Fit, write data_constrained.json, allocation.csv and plots/allocation.png under out_dir; the report lines.
    A sweep that cannot be fitted gets one line saying why (the Approach 3 report above it still stands)."""
    try:
        report = repetition_report(frame, budgets, n_boot)
    except FitError as exc:
        return [f"\ndata-constrained law: not fitted ({exc})"]
    lines = list(report.lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "data_constrained.json",
                      {**report.fit.to_dict(), "allocation": report.table.to_dict(orient="records")})
    lines.append(f"fit: {out_dir / 'data_constrained.json'}")
    lines.append(f"table: {export_csv(report.table, out_dir / 'allocation.csv')}")
    lines.append(f"plot: {draw_repetition(report, budgets, out_dir / 'plots' / 'allocation.png')}")
    return lines
