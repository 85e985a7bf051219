"""The points frame: reading CSVs of runs, and choosing the rows every fit, table and figure uses.

A points frame is a DataFrame with columns `n_params`, `n_tokens`, `flops`, `loss`, optionally `run_id`,
`status`, `reason`, `seed`, `lr`, `arch`, `budget`. `select_points` is the one place that turns runs
into points (done runs, the best LR per point, the seed mean); its `Points` feed every fit and figure.
Nothing here touches disk except `read_points_csv`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.errors import ConfigError, FitError
from scaling.results import implausible

# Every analysis module logs as "scaling.fit", the name these lines had before the split (log filters, caplog).
log = logging.getLogger("scaling.fit")

__all__ = [
    "FLOPS_PER_PARAM_TOKEN",
    "read_points_csv",
    "select_done",
    "keep_best_lr",
    "seed_spread",
    "mean_over_seeds",
    "split_by_arch",
    "fit_points",
    "Points",
    "select_points",
    "rows_for_fit",
    "points_of",
]

FLOPS_PER_PARAM_TOKEN = (2.0, 50.0)
"""Plausible range of flops / (N D): 6 for C = 6ND (Kaplan et al. 2020, sec. 2.1), more with attention
(this repo's sweeps: 6.5-9.1), 2 for a forward pass alone. A row outside it has a flops column that does not
belong to its N and D, so it is not fitted."""


def read_points_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV of runs into a points frame (`n_params`, `n_tokens`, `flops`, `loss`, ...).

    Accepted layouts, detected from the header:
    - the results table (`n_params`, `n_tokens`, `flops`, `loss`, optionally `run_id`, `status`, ...);
    - a simple table `params`, `tokens`, `loss`, optionally `flops` (default flops = 6 N D);
    - the Chinchilla reference format (`Model Size`, `Training FLOP`, `loss`), where
      tokens = C / (6 N) as in Besiroglu et al. 2024.
    Missing columns and non-positive or non-finite values raise a one-line ConfigError naming the
    file, column and offending row. Rows with status != "done" are kept (fits exclude them), and
    their loss may be missing.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO would block the read forever
        raise ConfigError(f"{path}: not a regular file (a FIFO, device or folder is not read as a CSV)")
    try:
        raw = pd.read_csv(path)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read CSV: byte {exc.object[exc.start:exc.start + 1]!r} at offset "
                          f"{exc.start} is not UTF-8; save the file as UTF-8") from None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ConfigError(f"{path}: cannot read CSV: {exc}".replace("\n", " ")) from exc
    cols = set(raw.columns)
    if {"n_params", "n_tokens", "loss"} <= cols:
        frame = raw.copy()
        sources = {"n_params": "n_params", "n_tokens": "n_tokens", "flops": "flops"}
    elif {"params", "tokens", "loss"} <= cols:
        frame = raw.rename(columns={"params": "n_params", "tokens": "n_tokens"})
        sources = {"n_params": "params", "n_tokens": "tokens", "flops": "flops"}
    elif {"Model Size", "Training FLOP", "loss"} <= cols:
        frame = pd.DataFrame({
            "n_params": raw["Model Size"],
            "flops": raw["Training FLOP"],
            "loss": raw["loss"],
        })
        _check_positive(frame, "n_params", path, "Model Size", always=True)  # numbers before arithmetic
        _check_positive(frame, "flops", path, "Training FLOP", always=True)
        # Tokens are not in the reference file; Besiroglu et al. 2024 use D = C / (6 N).
        frame["n_tokens"] = frame["flops"] / (6.0 * frame["n_params"])
        sources = {"n_params": "Model Size", "n_tokens": "Training FLOP", "flops": "Training FLOP"}
    else:
        missing = sorted({"params", "tokens", "loss"} - cols)
        raise ConfigError(
            f"{path}: missing column(s) {', '.join(missing)} (need params,tokens,loss or "
            f"n_params,n_tokens,flops,loss or 'Model Size','Training FLOP',loss); found {sorted(cols)}"
        )
    if frame.columns.duplicated().any():  # e.g. both params and n_params: which one is meant?
        dup = frame.columns[frame.columns.duplicated()][0]
        raise ConfigError(f"{path}: ambiguous columns: {dup!r} given twice (as itself and under another "
                          f"accepted name); keep one")
    for col in ("n_params", "n_tokens"):
        _check_positive(frame, col, path, sources[col], always=True)
    if "flops" not in frame.columns:
        # Kaplan et al. 2020, sec. 2.1: C ~ 6 N D for a forward and backward pass.
        frame["flops"] = 6.0 * frame["n_params"] * frame["n_tokens"]
    _check_positive(frame, "flops", path, sources["flops"], always=True)
    _check_positive(frame, "loss", path, "loss", always=False)
    if "run_id" not in frame.columns:
        frame["run_id"] = [f"row{i}" for i in range(len(frame))]
    return frame.reset_index(drop=True)


def _check_positive(frame: pd.DataFrame, col: str, path: Path, source: str, *, always: bool) -> None:
    """Raise ConfigError on the first non-numeric, non-finite or non-positive value of `col`.

    Loss is checked only on rows with status "done" (a diverged run may have a NaN loss).
    """
    values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
    raw_values = frame[col].to_numpy()
    mask = np.ones(len(frame), dtype=bool)
    if not always and "status" in frame.columns:
        mask = (frame["status"].astype(str) == "done").to_numpy()
    bad = mask & ~(np.isfinite(values) & (values > 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raw = raw_values[row]
        shown = repr(raw) if isinstance(raw, str) else ("missing" if pd.isna(raw) else f"{float(raw):g}")
        raise ConfigError(
            f"{path}: column {source!r}, line {row + 2}: {shown} "
            f"is not a finite number > 0 ({int(bad.sum())} bad row(s))"
        )
    frame[col] = values


def select_done(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Rows usable for fitting, and one diagnostic line per excluded run.

    A run is excluded when its status is not "done" (diverged/failed runs are kept in the table
    but never fitted, see pitfalls.md) or when N, D, C or loss is missing, non-finite or <= 0.
    """
    for col in ("n_params", "n_tokens", "loss"):
        if col not in frame.columns:
            raise FitError(f"points frame has no column {col!r} (columns: {list(frame.columns)})")
    frame = frame.copy()
    if "flops" not in frame.columns:
        frame["flops"] = 6.0 * frame["n_params"] * frame["n_tokens"]
    diagnostics: list[str] = []
    keep = np.ones(len(frame), dtype=bool)
    ids = frame["run_id"].astype(str).to_numpy() if "run_id" in frame.columns else [
        f"row{i}" for i in range(len(frame))]
    status = frame["status"].astype(str).to_numpy() if "status" in frame.columns else None
    reasons = frame["reason"].to_numpy() if "reason" in frame.columns else None
    numeric = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float)
               for c in ("n_params", "n_tokens", "flops", "loss")}
    for i in range(len(frame)):
        why = None
        if status is not None and status[i] != "done":
            why = f"status={status[i]}"
            if reasons is not None and isinstance(reasons[i], str) and reasons[i]:
                why += f" ({reasons[i]})"
        else:
            for col, values in numeric.items():
                if not (np.isfinite(values[i]) and values[i] > 0):
                    why = f"{col}={values[i]!r} is not a finite number > 0"
                    break
                why = implausible(col, values[i])
                if why is not None:
                    break
            ratio = numeric["flops"][i] / (numeric["n_params"][i] * numeric["n_tokens"][i])
            lo, hi = FLOPS_PER_PARAM_TOKEN
            if why is None and not lo <= ratio <= hi:
                why = (f"flops / (n_params x n_tokens) = {ratio:.3g} is outside [{lo:g}, {hi:g}]: the flops "
                       "column does not match N and D (C = 6ND gives 6)")
        if why is not None:
            keep[i] = False
            diagnostics.append(f"excluded run {ids[i]}: {why}")
    out = frame.loc[keep].copy()
    for col, values in numeric.items():
        out[col] = values[keep]
    return out.reset_index(drop=True), diagnostics


def keep_best_lr(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per (arch, N, D, seed), keep the run with the lowest loss among its LRs ([train].lr_sweep).

    A diagnostic names every point whose best LR is the smallest or largest swept: the optimum may lie
    outside the range, and the fitted loss is then too high there (widen lr_sweep).
    """
    if "lr" not in frame.columns or frame.empty:
        return frame, []
    keys = [k for k in ("arch", "n_params", "n_tokens", "seed") if k in frame.columns]
    keep, notes = [], []
    for _, group in frame.groupby(keys, dropna=False, sort=False):
        best = group["loss"].idxmin()
        keep.append(best)
        lrs = group["lr"].astype(float)
        if lrs.nunique() >= 2 and float(group.at[best, "lr"]) in (lrs.min(), lrs.max()):
            row = group.loc[best]
            note = (f"best LR {float(row['lr']):.3g} of N={float(row['n_params']):.3g}, "
                    f"D={float(row['n_tokens']):.3g} is at the edge of the swept range "
                    f"[{lrs.min():.3g}, {lrs.max():.3g}]; widen [train].lr_sweep")
            log.debug(note)  # a diagnostic of the points: the report prints it once
            notes.append(note)
    return frame.loc[sorted(keep)].reset_index(drop=True), notes


def seed_spread(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (arch, N, D): number of seeds, mean loss and the std of loss across seeds (NaN for one seed)."""
    keys = [k for k in ("arch", "n_params", "n_tokens") if k in frame.columns]
    grouped = frame.groupby(keys, dropna=False, sort=False)["loss"]
    return pd.DataFrame({"n_seeds": grouped.size(), "loss_mean": grouped.mean(),
                         "loss_std": grouped.std(ddof=1)}).reset_index()


def mean_over_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (arch, N, D) with the seed-mean loss (other columns from the first seed)."""
    keys = [k for k in ("arch", "n_params", "n_tokens") if k in frame.columns]
    if frame.empty or not frame.duplicated(keys).any():
        return frame
    grouped = frame.groupby(keys, dropna=False, sort=False)
    out = grouped.first().reset_index()
    out["loss"] = grouped["loss"].mean().to_numpy()
    out["n_seeds"] = grouped.size().to_numpy()
    return out[frame.columns.tolist() + ["n_seeds"]]


def split_by_arch(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The frame per architecture family ([model].arch), in order of first appearance.

    One law per family: pooling a transformer's and an LSTM's losses into one L(N, D) would fit neither.
    A frame without an `arch` column (a CSV of points) is one family, keyed "". A run that is not done
    and has lost its family (a damaged spec.json) founds no family of its own: it joins the first one,
    whose report then lists it among the excluded runs with its reason, instead of vanishing.
    """
    if "arch" not in frame.columns or frame.empty:
        return {"": frame}
    arch = frame["arch"].fillna("").astype(str)
    status = frame["status"].astype(str) if "status" in frame.columns else pd.Series("done", index=frame.index)
    orphan = (arch == "") & (status != "done")
    names = [name for name in arch[~orphan].unique()] or [""]
    arch = arch.where(~orphan, names[0])
    return {name: frame.loc[arch == name].reset_index(drop=True) for name in names}


@dataclass(frozen=True, eq=False)
class Points:
    """The points of a frame of runs, chosen once (`select_points`): every fit, table and figure of a
    report uses `frame`, so a figure titled after a fit shows exactly the points that fit saw."""

    frame: pd.DataFrame
    """One row per point: done runs (select_done), the best LR per (arch, N, D, seed) (keep_best_lr), and
    the mean over seeds per (arch, N, D) unless `all_seeds` (mean_over_seeds)."""
    n_runs: int
    """Rows of the frame of runs the points were chosen from."""
    n_done: int
    """Of those, the runs usable for fitting (done, with plausible N, D, C and loss)."""
    all_seeds: bool = False
    """True when every seed is its own point, False when points are seed means."""
    diagnostics: tuple[str, ...] = ()
    """One line per excluded run, then one per best LR at the edge of its swept range."""
    seed_spread: pd.DataFrame | None = field(default=None, repr=False)
    """Per (arch, N, D): n_seeds, loss_mean, loss_std of the best-LR runs (seed_spread); None without runs."""


def select_points(frame: pd.DataFrame | Points, all_seeds: bool = False) -> Points:
    """The points fits use: done runs, the best LR per point, and the seed mean unless `all_seeds` (then
    every seed is its own point). A `Points` is returned as it is: it was chosen already."""
    if isinstance(frame, Points):
        return frame
    done, diagnostics = select_done(frame)
    n_done = len(done)
    done, notes = keep_best_lr(done)
    spread = seed_spread(done) if len(done) else None
    if not all_seeds:
        done = mean_over_seeds(done)
    return Points(frame=done, n_runs=len(frame), n_done=n_done, all_seeds=all_seeds,
                  diagnostics=tuple(diagnostics + notes), seed_spread=spread)


def fit_points(frame: pd.DataFrame, all_seeds: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """The rows fits use and the diagnostics of choosing them (`select_points` as a frame and a list)."""
    points = select_points(frame, all_seeds)
    return points.frame, list(points.diagnostics)


def rows_for_fit(data: pd.DataFrame | Points) -> tuple[pd.DataFrame, list[str]]:
    """The rows one fit works on: a `Points` frame as it is (chosen once, not selected again), or the done
    runs of a frame of runs (select_done, as these fits have always done on a plain frame)."""
    if isinstance(data, Points):
        return data.frame, []
    return select_done(data)


def points_of(data: pd.DataFrame | Points) -> pd.DataFrame:
    """The rows a figure shows: a `Points` frame, or for a frame of runs the points `fit_sweep` of that frame
    fits by default (`select_points`: best LR, seed mean), so a figure never shows runs the fit left out."""
    return select_points(data).frame
