"""The allocation figure of a data-constrained fit, in the style of Muennighoff et al. 2023 (fig. 3).

Iso-loss contours of L(N, D, U_D) over model size N and tokens D for one unique-token budget U_D, the
compute-optimal frontier under that budget (it bends toward larger models as D / U_D grows, since repeated
tokens are worth less and less) beside the frontier with unlimited unique data, and the runs themselves.
Built on `matplotlib.figure.Figure` like scaling.plot (no pyplot, no global state).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from scaling.analysis.data_constrained import allocate
from scaling.laws import DataConstrainedLaw
from scaling.plot import _finish


def plot_repetition(law: DataConstrainedLaw, unique: float, budgets: np.ndarray, runs: pd.DataFrame | None = None,
                    path: str | Path | None = None) -> Figure:
    """Iso-loss contours for `unique` tokens, the frontier under it and without it over `budgets` (FLOPs,
    C = 6 N D), iso-FLOP lines at each budget, and `runs` (columns n_params, n_tokens, epochs) as points."""
    budgets = np.sort(np.asarray(budgets, dtype=float))
    frontier = pd.DataFrame([allocate(law, c, unique) for c in budgets])
    n_all = np.concatenate([frontier["n_params"], frontier["chinchilla_n_params"]])
    d_all = np.concatenate([frontier["tokens"], frontier["chinchilla_tokens"]])
    if runs is not None and len(runs):
        n_all = np.concatenate([n_all, runs["n_params"].to_numpy(float)])
        d_all = np.concatenate([d_all, runs["n_tokens"].to_numpy(float)])
    n_grid = np.logspace(np.log10(n_all.min()) - 0.5, np.log10(n_all.max()) + 0.5, 160)
    d_grid = np.logspace(np.log10(min(d_all.min(), unique)) - 0.5, np.log10(d_all.max()) + 0.5, 160)
    NN, DD = np.meshgrid(n_grid, d_grid)
    loss = law.predict(NN, DD, np.minimum(unique, DD))
    fig = Figure(figsize=(7.0, 5.2))
    ax = fig.add_subplot()
    levels = np.quantile(loss, np.linspace(0.02, 0.9, 14))
    contours = ax.contour(NN, DD, loss, levels=np.unique(levels), cmap="viridis_r", linewidths=0.8)
    ax.clabel(contours, fmt="%.3g", fontsize=7)
    for c in budgets:  # iso-FLOP lines D = C / 6N
        ax.plot(n_grid, c / (6.0 * n_grid), color="0.8", lw=0.6, zorder=0)
    ax.plot(frontier["chinchilla_n_params"], frontier["chinchilla_tokens"], "--", color="0.3",
            label="compute-optimal, unlimited unique data")
    ax.plot(frontier["n_params"], frontier["tokens"], "-o", color="C3", ms=3,
            label=f"compute-optimal with {unique:.3g} unique tokens")
    ax.axhline(unique, color="C3", lw=0.6, ls=":", label="D = U_D (1 epoch)")
    if runs is not None and len(runs):
        runs = runs.sort_values("epochs")  # at one (N, D) the most repeated run is drawn on top
        sc = ax.scatter(runs["n_params"], runs["n_tokens"], c=np.maximum(runs["epochs"].to_numpy(float), 1.0),
                        cmap="plasma", norm=LogNorm(vmin=1, vmax=max(2.0, float(runs["epochs"].max()))),
                        edgecolors="k", linewidths=0.4, s=24, zorder=3)
        fig.colorbar(sc, ax=ax, label="epochs of the runs (D / U_D)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(n_grid[0], n_grid[-1])
    ax.set_ylim(d_grid[0], d_grid[-1])
    ax.set_xlabel("parameters N")
    ax.set_ylabel("tokens D (repeated past U_D)")
    ax.set_title(f"Iso-loss under repetition: R*_D = {law.rd_star:.3g}, R*_N = {law.rn_star:.3g}", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    return _finish(fig, path)
