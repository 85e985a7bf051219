"""Fitting scaling laws to a points frame: Chinchilla's three approaches, Kaplan's forms, bootstrap.

Pure and torch-free. Every function takes arrays or a "points frame" (a DataFrame with columns
`n_params`, `n_tokens`, `flops`, `loss`, optionally `run_id`, `status`, `reason`, `seed`, `budget`)
and returns new objects; nothing here touches disk except `read_points_csv`.

References:
- Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models" (Chinchilla), arXiv 2203.15556.
- Besiroglu, Erdil, Barnett, You 2024, "Chinchilla Scaling: A replication attempt", arXiv 2404.10102.
- Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv 2001.08361.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from scaling.errors import ConfigError, FitError
from scaling.results import PLAUSIBLE, implausible

log = logging.getLogger(__name__)

PARAM_NAMES: tuple[str, ...] = ("E", "A", "B", "alpha", "beta")
"""Names of the parameters of L(N, D) = E + A / N^alpha + B / D^beta, in report order."""

MIN_POINTS_APPROACH3 = 5
"""Approach 3 has 5 free parameters: it needs at least 5 done runs, 2 distinct N and 2 distinct D."""

FLOPS_PER_PARAM_TOKEN = (2.0, 50.0)
"""Plausible range of flops / (N D): 6 for C = 6ND (Kaplan et al. 2020, sec. 2.1), more with attention
(this repo's sweeps: 6.5-9.1), 2 for a forward pass alone. A row outside it has a flops column that does not
belong to its N and D, so it is not fitted."""

LARGE_FIT_POINTS = 10_000
"""Above this many points fit_sweep warns before it starts: Approach 3 costs ~1 s per 1,000 points per fit
here (10,000 points: 10 s per fit, 17 s for fit_sweep without bootstrap; each bootstrap resample is another
optimizer run), so 10^5 rows take minutes. Averaging seeds or repeated rows (the default) shrinks it."""

DEFAULT_BUDGETS: tuple[float, ...] = tuple(float(c) for c in np.logspace(18, 25, 8))
"""Compute budgets (FLOPs) for the compute-optimal table of a report, 1e18 .. 1e25."""


# --------------------------------------------------------------------------------------------------
# Input: the points frame
# --------------------------------------------------------------------------------------------------

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
    try:
        raw = pd.read_csv(path)
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
            log.warning(note)
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
    A frame without an `arch` column (a CSV of points) is one family, keyed "".
    """
    if "arch" not in frame.columns or frame.empty:
        return {"": frame}
    arch = frame["arch"].fillna("").astype(str)
    return {name: frame.loc[arch == name].reset_index(drop=True) for name in arch.unique()}


def fit_points(frame: pd.DataFrame, all_seeds: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """The rows fits use: done runs (select_done), the best LR per point, and the seed mean unless
    `all_seeds` (then every seed is its own point)."""
    done, diagnostics = select_done(frame)
    done, notes = keep_best_lr(done)
    if not all_seeds:
        done = mean_over_seeds(done)
    return done, diagnostics + notes


# --------------------------------------------------------------------------------------------------
# Approach 3: parametric fit L(N, D) = E + A / N^alpha + B / D^beta
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LawParams:
    """Parameters of L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq. 2)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    @property
    def a(self) -> float:
        """Exponent of N_opt ~ C^a: beta / (alpha + beta) (Hoffmann et al. 2022, eq. 4); NaN when
        alpha = beta = 0 (a loss that depends on neither N nor D has no compute-optimal split)."""
        total = self.alpha + self.beta
        return self.beta / total if total > 0 else math.nan

    @property
    def b(self) -> float:
        """Exponent of D_opt ~ C^b: alpha / (alpha + beta) (Hoffmann et al. 2022, eq. 4); NaN when
        alpha = beta = 0."""
        total = self.alpha + self.beta
        return self.alpha / total if total > 0 else math.nan

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


# The optimizer works on theta = (a, b, e, alpha, beta) with A, B, E = exp(a, b, e), as in
# Hoffmann et al. 2022 App. D.2. These helpers are the only place that packs/unpacks the vector.
_THETA_NAMES = ("a", "b", "e", "alpha", "beta")


def _theta_from_params(params: LawParams) -> np.ndarray:
    return np.array([math.log(params.A), math.log(params.B), math.log(params.E),
                     params.alpha, params.beta])


def _params_from_theta(theta: np.ndarray) -> LawParams:
    log_a, log_b, log_e, alpha, beta = (float(t) for t in theta)
    return LawParams(E=math.exp(log_e), A=math.exp(log_a), B=math.exp(log_b), alpha=alpha, beta=beta)


def hoffmann_grid() -> np.ndarray:
    """Hoffmann et al. 2022 App. D.2 starting grid, 4,500 points of theta = (a, b, e, alpha, beta).

    alpha, beta in {0, 0.5, .., 2}; e in {-1, -0.5, .., 1}; a, b in {0, 5, .., 25}.
    """
    exps = np.arange(0.0, 2.01, 0.5)
    es = np.arange(-1.0, 1.01, 0.5)
    abs_ = np.arange(0.0, 25.1, 5.0)
    grid = [(a, b, e, alpha, beta)
            for a, b, e, alpha, beta in itertools.product(abs_, abs_, es, exps, exps)]
    return np.array(grid, dtype=float)


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber loss: r^2/2 inside [-delta, delta], delta (|r| - delta/2) outside."""
    absr = np.abs(r)
    return np.where(absr <= delta, 0.5 * r * r, delta * (absr - 0.5 * delta))


def _log_predict(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
    """log L = LSE(a - alpha log N, b - beta log D, e), vectorised over rows of theta (k, 5)."""
    theta = np.atleast_2d(theta)
    log_a, log_b, log_e, alpha, beta = (theta[:, i:i + 1] for i in range(5))
    terms = np.stack(np.broadcast_arrays(log_a - alpha * log_n, log_b - beta * log_d,
                                         log_e + 0.0 * log_n))  # (3, k, n)
    top = terms.max(axis=0)
    return top + np.log(np.exp(terms - top).sum(axis=0))  # (k, n)


def _objective_grid(thetas: np.ndarray, log_n: np.ndarray, log_d: np.ndarray,
                    log_l: np.ndarray, delta: float, chunk: int | None = None) -> np.ndarray:
    """Summed Huber objective at every row of thetas (k, 5); chunked to bound memory: by default each
    chunk holds ~500,000 predictions (a fixed 500 starts x 100k points took 4.5 GB)."""
    chunk = chunk or max(1, min(500, 500_000 // max(1, len(log_n))))
    out = np.empty(len(thetas))
    for start in range(0, len(thetas), chunk):
        pred = _log_predict(thetas[start:start + chunk], log_n, log_d)
        out[start:start + chunk] = _huber(log_l - pred, delta).sum(axis=1)
    return out


def _objective_and_grad(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray,
                        log_l: np.ndarray, weights: np.ndarray, delta: float
                        ) -> tuple[float, np.ndarray]:
    """Weighted summed Huber(delta) of log residuals and its analytic gradient w.r.t. theta.

    Hoffmann et al. 2022, App. D.2: min sum_i Huber_delta(LSE(a - alpha log N_i, b - beta log D_i, e)
    - log L_i). Weights are bootstrap multiplicities (1 for a plain fit).
    """
    log_a, log_b, log_e, alpha, beta = theta
    t_n = log_a - alpha * log_n
    t_d = log_b - beta * log_d
    top = np.maximum(np.maximum(t_n, t_d), log_e)
    p_n = np.exp(t_n - top)
    p_d = np.exp(t_d - top)
    p_e = np.exp(log_e - top)
    total = p_n + p_d + p_e
    r = log_l - (top + np.log(total))
    absr = np.abs(r)
    inside = absr <= delta
    value = float((weights * np.where(inside, 0.5 * r * r, delta * (absr - 0.5 * delta))).sum())
    # d Huber / d r = clip(r, -delta, delta); d r / d t_k = -softmax_k.
    psi = -weights * np.clip(r, -delta, delta) / total
    g_n = psi * p_n
    g_d = psi * p_d
    grad = np.array([g_n.sum(), g_d.sum(), (psi * p_e).sum(), -(g_n * log_n).sum(),
                     -(g_d * log_d).sum()])
    return value, grad


_LBFGS_OPTIONS = {"maxiter": 20_000, "maxfun": 50_000, "ftol": 1e-15, "gtol": 1e-10, "maxls": 50}
"""Tight tolerances: the summed Huber(1e-3) objective is ~1e-3 in size, so scipy's default
relative ftol (2.2e-9) stops early; Chinchilla's own fit stopped before converging (Besiroglu et
al. 2024), which is the pitfall this avoids."""


_THETA_BOUNDS = ((-50.0, 300.0), (-50.0, 300.0), (-50.0, 10.0), (0.0, 20.0), (0.0, 20.0))
"""Box for (a, b, e, alpha, beta), far outside any published law (a, b ~ 6-8, alpha, beta ~ 0.3), so
an interior optimum is untouched; it keeps A, B, E finite when small sweeps leave the law
unidentified (the optimizer would otherwise run off along the A-alpha ridge to overflow). A fit
that ends on the box is reported by `identification`."""


def _minimize_from(theta0: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                   weights: np.ndarray, delta: float) -> tuple[np.ndarray, float, bool, str]:
    """One L-BFGS-B run; returns (theta, objective, converged, message)."""
    res = minimize(_objective_and_grad, theta0, args=(log_n, log_d, log_l, weights, delta),
                   jac=True, method="L-BFGS-B", bounds=_THETA_BOUNDS, options=_LBFGS_OPTIONS)
    # A line-search stop at a point whose gradient is tiny is a converged non-smooth optimum
    # (Huber's second derivative jumps at |r| = delta), not a failure.
    grad_ok = bool(np.all(np.isfinite(res.jac))) and float(np.max(np.abs(res.jac))) < 1e-6
    converged = bool(np.all(np.isfinite(res.x))) and np.isfinite(res.fun) and (res.success or grad_ok)
    return res.x, float(res.fun), converged, str(res.message)


@contextlib.contextmanager
def _blas_single_thread() -> Iterator[None]:
    """Run the block with OpenBLAS limited to one thread, restoring the old count after.

    The optimizer's vectors have 5 entries, so BLAS threads never help; but scipy's L-BFGS-B
    calls OpenBLAS, whose threads spin-wait, and on a busy 2-core machine that made fits 10-15x
    slower (measured: 1,000 bootstrap refits 3.5 s alone, 40-55 s beside another busy process).
    Same idea as threadpoolctl, without the dependency; a no-op where the library is not found.
    """
    restore: list[tuple[Callable[[int], None], int]] = []
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
        for path in sorted(paths):
            lib = ctypes.CDLL(path)
            for suffix in ("", "64_"):
                for prefix in ("scipy_openblas", "openblas"):
                    getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                    setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                    if getter is not None and setter is not None:
                        restore.append((setter, int(getter())))
                        setter(1)
    except OSError:
        pass
    try:
        yield
    finally:
        for setter, n_threads in restore:
            setter(n_threads)


def _check_inputs(N: np.ndarray, D: np.ndarray, L: np.ndarray) -> None:
    if not (N.shape == D.shape == L.shape) or N.ndim != 1:
        raise FitError(f"N, D, L must be 1-d arrays of one length; got shapes {N.shape}, "
                       f"{D.shape}, {L.shape}")
    for name, values in (("N", N), ("D", D), ("L", L)):
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise FitError(f"{name}[{i}] = {values[i]!r}: must be a finite number > 0")
    for name, values, key in (("N", N, "n_params"), ("D", D, "n_tokens"), ("L", L, "loss")):
        lo, hi = PLAUSIBLE[key]
        bad = ~((values > lo) & (values < hi)) if key == "loss" else ~((values >= lo) & (values <= hi))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise FitError(f"{name}[{i}] = {values[i]:g}: outside the plausible range ({lo:g}, {hi:g})")
    n_n, n_d = len(np.unique(N)), len(np.unique(D))
    if len(N) < MIN_POINTS_APPROACH3 or n_n < 2 or n_d < 2:
        raise FitError(
            f"Approach 3 needs >= {MIN_POINTS_APPROACH3} done runs with >= 2 distinct N and >= 2 "
            f"distinct D; got {len(N)} runs, {n_n} distinct N, {n_d} distinct D")
    if np.ptp(np.log(L)) == 0:
        raise FitError(f"all {len(L)} losses equal {L[0]:g}: the loss does not depend on N or D, so no "
                       "law L(N, D) can be fitted")


class ChinchillaLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta, fitted as Chinchilla's Approach 3.

    Hoffmann et al. 2022, eq. 2 and App. D.2: minimise sum_i Huber_delta(log L_i - LSE(a - alpha
    log N_i, b - beta log D_i, e)) with A, B, E = exp(a, b, e), by L-BFGS from a grid of starts.

    Parameters
    ----------
    delta: Huber threshold on log residuals (1e-3 in Hoffmann et al.).
    n_starts: optimizer runs from the best `n_starts` grid points by objective value; None runs
        from every grid point (Hoffmann's 4,500, ~1-2 min). On the reference data the best 50 find
        the same optimum as the full grid (checked in tests/test_fit.py, slow).
    grid: starting points theta = (a, b, e, alpha, beta), shape (k, 5); None = `hoffmann_grid()`.
    """

    def __init__(self, delta: float = 1e-3, n_starts: int | None = 50,
                 grid: np.ndarray | None = None) -> None:
        self.delta = delta
        self.n_starts = n_starts
        self.grid = grid

    # ---- construction from known values (published laws) ----
    @classmethod
    def from_params(cls, E: float, A: float, B: float, alpha: float, beta: float,
                    **kwargs: object) -> ChinchillaLaw:
        """A law with given parameters, usable like a fitted one (predict, compute_optimal)."""
        law = cls(**kwargs)  # type: ignore[arg-type]
        law._set_params(LawParams(E=E, A=A, B=B, alpha=alpha, beta=beta))
        law.loss_ = float("nan")
        law.converged_ = True
        law.n_points_ = 0
        return law

    def _set_params(self, params: LawParams) -> None:
        self.params_ = params
        self.E_, self.A_, self.B_ = params.E, params.A, params.B
        self.alpha_, self.beta_ = params.alpha, params.beta

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise FitError("ChinchillaLaw is not fitted: call fit(N, D, L) first")

    # ---- fitting ----
    def fit(self, N: Sequence[float] | np.ndarray, D: Sequence[float] | np.ndarray,
            L: Sequence[float] | np.ndarray) -> ChinchillaLaw:
        """Fit to arrays of parameters N, tokens D and losses L; returns self."""
        N, D, L = (np.asarray(x, dtype=float).ravel() for x in (N, D, L))
        _check_inputs(N, D, L)
        log_n, log_d, log_l = np.log(N), np.log(D), np.log(L)
        weights = np.ones_like(log_n)
        grid = hoffmann_grid() if self.grid is None else np.asarray(self.grid, dtype=float)
        if self.n_starts is not None and self.n_starts < len(grid):
            # Prefilter: evaluate the objective on all grid points (vectorised, ~0.1 s) and run the
            # optimizer only from the best n_starts; the full grid costs ~100x more and on the
            # reference data reaches the same optimum (see the slow test).
            values = _objective_grid(grid, log_n, log_d, log_l, self.delta)
            grid = grid[np.argsort(values, kind="stable")[: self.n_starts]]
        optima: list[tuple[float, np.ndarray]] = []
        messages: set[str] = set()
        with _blas_single_thread():
            for theta0 in grid:
                theta, value, converged, message = _minimize_from(theta0, log_n, log_d, log_l,
                                                                  weights, self.delta)
                if not converged:
                    messages.add(message)
                    continue
                optima.append((value, theta))
        if not optima:
            raise FitError(f"L-BFGS-B converged from none of {len(grid)} starts: {sorted(messages)}")
        optima.sort(key=lambda vt: vt[0])
        best = optima[0]
        self.n_starts_converged_ = len(optima)
        self.local_optima_ = _distinct_optima(optima)
        self.theta_ = best[1]
        try:
            self._set_params(_params_from_theta(best[1]))
        except OverflowError:
            raise FitError(f"Approach 3 ran off to infinite A or B (log-params {np.round(best[1], 2)}): "
                           "the data do not constrain the law; add sizes or token budgets") from None
        if self.params_.alpha + self.params_.beta <= 0:
            raise FitError("Approach 3 found alpha = beta = 0: the losses fall with neither N nor D, so the "
                           "law has no compute-optimal allocation")
        self.loss_ = best[0]
        self.converged_ = True
        self.n_points_ = len(N)
        log.debug("ChinchillaLaw fit: %s (objective %.6g, %d/%d starts converged)",
                  self.params_, self.loss_, len(optima), len(grid))
        return self

    def fit_frame(self, frame: pd.DataFrame) -> ChinchillaLaw:
        """Fit to the done runs of a points frame; excluded runs go to `diagnostics_`."""
        done, diagnostics = select_done(frame)
        self.fit(done["n_params"], done["n_tokens"], done["loss"])
        self.diagnostics_ = diagnostics
        return self

    def bootstrap(self, N: Sequence[float] | np.ndarray, D: Sequence[float] | np.ndarray,
                  L: Sequence[float] | np.ndarray, n_boot: int = 1000, seed: int = 0
                  ) -> ChinchillaLaw:
        """Refit on `n_boot` resamples of the runs (with replacement); sets `bootstrap_params_`.

        Fits first if not fitted. Each resample is refitted from several starts and keeps its best
        optimum (`bootstrap_starts`): the point estimate and the estimate with the floor E moved to a
        fraction of the lowest loss, plus the fit's other local optima where the estimate is doubtful. Starting from the
        estimate alone (as Besiroglu et al. 2024 do on well-spread data) fails where small sweeps live:
        when E has collapsed to ~0 its gradient vanishes, no resample moves it, and E's interval has zero
        width (measured: 4 of 20 simulated tiny designs excluded the true E). Resamples whose refits
        converge from no start are dropped and counted in `n_boot_failed_`.
        """
        N, D, L = (np.asarray(x, dtype=float).ravel() for x in (N, D, L))
        if not hasattr(self, "theta_"):
            self.fit(N, D, L)
        rng = np.random.default_rng(seed)
        # A resample as multiplicities (counts) of each run: same objective, no copying.
        counts = rng.multinomial(len(N), np.full(len(N), 1.0 / len(N)), size=n_boot).astype(float)
        starts = self.bootstrap_starts(float(np.min(L)))
        # One process is enough: a refit takes ~1-4 ms per start on 20-240 points.
        with _blas_single_thread():
            rows = _bootstrap_chunk(counts, starts, np.log(N), np.log(D), np.log(L), self.delta)
        ok = [r for r in rows if r is not None]
        self.n_boot_failed_ = len(rows) - len(ok)
        if not ok:
            raise FitError(f"no bootstrap refit converged ({n_boot} resamples)")
        if self.n_boot_failed_:
            log.warning("%d of %d bootstrap refits did not converge; dropped",
                        self.n_boot_failed_, n_boot)
        # Indexed by resample number: two laws bootstrapped with one seed on points in the same order drew
        # the same resamples, so rows with equal index pair up (paired differences, benchmarks/bench_wsd.py).
        table = pd.DataFrame([p.to_dict() for p in ok], columns=list(PARAM_NAMES),
                             index=pd.Index([i for i, r in enumerate(rows) if r is not None], name="resample"))
        table["a"] = table["beta"] / (table["alpha"] + table["beta"])
        table["b"] = table["alpha"] / (table["alpha"] + table["beta"])
        self.bootstrap_params_ = table
        return self

    def bootstrap_starts(self, min_loss: float) -> np.ndarray:
        """Starting points of every bootstrap refit, shape (k, 5); see `bootstrap`.

        Always the point estimate and the estimate with E at half the lowest loss. Where the estimate is
        itself doubtful (E below half the lowest loss, or a parameter on the search box) also the fit's
        next BOOT_OTHER_OPTIMA distinct local optima and E at each of BOOT_E_FRACTIONS of the lowest loss.
        A well-identified interior optimum (Chinchilla's data) so costs two refits per resample, not six.
        """
        self._check_fitted()
        on_box = any(abs(t - lo) < _BOX_EPS or abs(t - hi) < _BOX_EPS
                     for t, (lo, hi) in zip(self.theta_, _THETA_BOUNDS))
        doubtful = self.E_ < 0.5 * min_loss or on_box
        starts = [self.theta_]
        fractions = (0.5, *BOOT_E_FRACTIONS) if doubtful else (0.5,)
        if doubtful:
            starts += list(getattr(self, "local_optima_", [])[1:BOOT_OTHER_OPTIMA + 1])
        for fraction in fractions:
            theta = np.array(self.theta_, dtype=float)
            theta[2] = math.log(fraction * min_loss)
            starts.append(theta)
        return _distinct_rows(np.array(starts, dtype=float))

    # ---- using the fit ----
    def predict(self, N: float | np.ndarray, D: float | np.ndarray) -> np.ndarray:
        """Loss predicted by eq. 2 at parameters N and tokens D."""
        self._check_fitted()
        p = self.params_
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return p.E + p.A / N ** p.alpha + p.B / D ** p.beta

    @property
    def a_(self) -> float:
        """N_opt ~ C^a_."""
        self._check_fitted()
        return self.params_.a

    @property
    def b_(self) -> float:
        """D_opt ~ C^b_."""
        self._check_fitted()
        return self.params_.b

    def compute_optimal(self, C: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) minimising L subject to C = 6 N D (Hoffmann et al. 2022, eq. 4)."""
        self._check_fitted()
        return _compute_optimal(self.params_, np.asarray(C, dtype=float))

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float]:
        """Percentile bootstrap interval of a parameter (E, A, B, alpha, beta, a, b)."""
        samples = self._bootstrap_table()
        if name not in samples.columns:
            raise FitError(f"unknown parameter {name!r}; choose from {list(samples.columns)}")
        lo, hi = np.quantile(samples[name].to_numpy(), [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)

    def compute_optimal_interval(self, C: float | np.ndarray, level: float = 0.95
                                 ) -> dict[str, np.ndarray]:
        """Bootstrap percentile bands of N_opt and D_opt at budgets C.

        Returns arrays keyed n_opt_lo, n_opt_hi, d_opt_lo, d_opt_hi (shape of C).
        """
        samples = self._bootstrap_table()
        C = np.asarray(C, dtype=float)
        n_all, d_all = [], []
        for row in samples[list(PARAM_NAMES)].itertuples(index=False):
            n_opt, d_opt = _compute_optimal(LawParams(*row), C)
            n_all.append(n_opt)
            d_all.append(d_opt)
        q = [(1 - level) / 2, (1 + level) / 2]
        with np.errstate(invalid="ignore"):  # resamples of an unidentified law may give 0 / inf sizes
            n_lo, n_hi = np.quantile(np.array(n_all), q, axis=0)
            d_lo, d_hi = np.quantile(np.array(d_all), q, axis=0)
        return {"n_opt_lo": n_lo, "n_opt_hi": n_hi, "d_opt_lo": d_lo, "d_opt_hi": d_hi}

    def _bootstrap_table(self) -> pd.DataFrame:
        if not hasattr(self, "bootstrap_params_"):
            raise FitError("no bootstrap samples: call bootstrap(N, D, L) first")
        return self.bootstrap_params_

    def __repr__(self) -> str:
        if hasattr(self, "params_"):
            p = self.params_
            return (f"ChinchillaLaw(E={p.E:.6g}, A={p.A:.6g}, B={p.B:.6g}, "
                    f"alpha={p.alpha:.6g}, beta={p.beta:.6g})")
        return f"ChinchillaLaw(delta={self.delta}, n_starts={self.n_starts})"


def _compute_optimal(p: LawParams, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Hoffmann et al. 2022, eq. 4: N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b,
    # G = (alpha A / (beta B))^(1 / (alpha + beta)), a = beta/(alpha+beta), b = alpha/(alpha+beta).
    # An unidentified fit (A or B underflowed to 0, flagged by `identification`) gives G = 0 or inf
    # and so N_opt, D_opt of 0 or inf: honest values, without numpy's divide-by-zero warnings on stderr.
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        G = (p.alpha * p.A / (p.beta * p.B)) ** (1.0 / (p.alpha + p.beta))
        return G * (C / 6.0) ** p.a, (C / 6.0) ** p.b / G


BOOT_E_FRACTIONS = (0.25, 0.75)
"""Where the estimate is doubtful, bootstrap refits also start with E at these fractions of the lowest loss
(besides half of it, always; see ChinchillaLaw.bootstrap_starts)."""
BOOT_OTHER_OPTIMA = 2
"""...and from this many of the point fit's other distinct local optima (next best first)."""


def _distinct_rows(thetas: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """Rows of thetas (k, 5) with near-duplicates (max abs difference < tol) removed, order kept."""
    kept: list[np.ndarray] = []
    for theta in thetas:
        if all(np.max(np.abs(theta - other)) >= tol for other in kept):
            kept.append(theta)
    return np.array(kept)


def _distinct_optima(optima: list[tuple[float, np.ndarray]], keep: int = 8) -> list[np.ndarray]:
    """The best `keep` distinct optimizer end points, best first (optima sorted by objective).

    End points within 0.05 of each other in every coordinate of theta (5% in A, B, E; 0.05 in the
    exponents) are one optimum reached from different starts, not a second mode worth refitting from.
    """
    kept = _distinct_rows(np.array([theta for _, theta in optima]), tol=0.05)
    return [np.array(theta) for theta in kept[:keep]]


def _bootstrap_chunk(counts: np.ndarray, starts: np.ndarray, log_n: np.ndarray,
                     log_d: np.ndarray, log_l: np.ndarray, delta: float
                     ) -> list[LawParams | None]:
    """Refit once per row of counts (bootstrap multiplicities) from every start; keep the best."""
    out: list[LawParams | None] = []
    for weights in counts:
        best: tuple[float, np.ndarray] | None = None
        for theta0 in starts:
            theta, value, converged, _ = _minimize_from(theta0, log_n, log_d, log_l, weights, delta)
            if converged and (best is None or value < best[0]):
                best = (value, theta)
        try:
            out.append(_params_from_theta(best[1]) if best is not None else None)
        except OverflowError:  # a resample that runs off along the A-alpha ridge: counted as failed
            out.append(None)
    return out


# --------------------------------------------------------------------------------------------------
# Power laws in log-log space
# --------------------------------------------------------------------------------------------------

def fit_power_law(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
                  ) -> tuple[float, float]:
    """Least squares of log y = log k + e log x; returns (coefficient k, exponent e), y = k x^e."""
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise FitError(f"power law: x and y differ in length ({len(x)} vs {len(y)})")
    bad = ~(np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FitError(f"power law: point {i} (x={x[i]!r}, y={y[i]!r}) is not finite and > 0")
    if len(np.unique(x)) < 2:
        raise FitError(f"power law needs >= 2 distinct x values; got {len(np.unique(x))}")
    if len(np.unique(y)) < 2:
        # e.g. every envelope run has one model size: a flat "N_opt ~ C^0" would be an artefact of the
        # grid, not a measured exponent.
        raise FitError(f"power law needs >= 2 distinct y values; all {len(y)} points have y = {y[0]:.4g}")
    exponent, log_k = np.polyfit(np.log(x), np.log(y), 1)
    return float(math.exp(log_k)), float(exponent)


def group_by_relative(values: Sequence[float] | np.ndarray, rel_tol: float = 0.05) -> np.ndarray:
    """Label each value with its group's representative (geometric mean) value.

    Sorted values start a new group when they exceed the group's first value by more than
    rel_tol (relative). Used to find IsoFLOP budgets and fixed-D / fixed-N slices.
    """
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    labels = np.empty(len(values), dtype=int)
    group, start = -1, None
    for i in order:
        if start is None or values[i] > start * (1.0 + rel_tol):
            group += 1
            start = values[i]
        labels[i] = group
    reps = np.array([math.exp(np.log(values[labels == g]).mean()) for g in range(group + 1)])
    return reps[labels] if len(values) else values.copy()


# --------------------------------------------------------------------------------------------------
# Approach 1: minimum-loss envelope over compute
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PowerLawFit:
    """N_opt = k_n C^a and D_opt = k_d C^b, as fitted by Approach 1 or 2."""

    k_n: float
    a: float
    k_d: float
    b: float

    def compute_optimal(self, C: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        C = np.asarray(C, dtype=float)
        return self.k_n * C ** self.a, self.k_d * C ** self.b


class _ViaPowerLaw:
    """Approaches 1 and 2 end in the same power laws N_opt = k_n C^a, D_opt = k_d C^b (`self.law`)."""

    law: PowerLawFit

    @property
    def a(self) -> float:
        return self.law.a

    @property
    def b(self) -> float:
        return self.law.b

    def compute_optimal(self, C: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.law.compute_optimal(C)


@dataclass(frozen=True, eq=False)
class EnvelopeResult(_ViaPowerLaw):
    """Approach 1 (Hoffmann et al. 2022, sec. 3.1): the minimum-loss envelope over compute of per-size
    loss curves, and the model size on it at each compute."""

    points: pd.DataFrame
    """The envelope sampled at log-spaced compute: flops, n_params (N_opt there), n_tokens (D_opt), loss."""
    law: PowerLawFit
    diagnostics: tuple[str, ...] = ()
    curves: dict[float, SaturatingPowerLaw] = field(default_factory=dict)
    """Each size's fitted L(D) = E_N + B_N / D^beta_N, keyed by N (the curves the envelope is taken over)."""
    token_ranges: dict[float, tuple[float, float]] = field(default_factory=dict)
    """Each size's sampled [min D, max D]: a curve is used only inside it (no extrapolation)."""


ENVELOPE_MIN_BUDGETS = 4
"""A size's L(D) curve (3 parameters) needs >= 4 token budgets to be fitted and checked."""


def fit_envelope(frame: pd.DataFrame, n_compute: int = 200, rel_tol: float = 0.05) -> EnvelopeResult:
    """Approach 1 on final losses: fit each model size's loss curve L_N(D) = E_N + B_N / D^beta_N
    through its runs, take at each compute C the size whose curve is lowest at D = C / (k N), refine
    that size continuously with a parabola in ln N through it and its two neighbours, and fit
    N_opt ~ C^a and D_opt ~ C^b through those optima.

    Hoffmann et al. take the envelope of whole training curves of ~50 sizes. Taking the lowest final
    loss per compute bin instead (the earlier version here) is biased on a grid: the best run of a bin is
    a discrete size at the bin's compute, and gave a = 0.449 on a noiseless 8x8 grid whose true a is
    0.513. The per-size curves make the envelope continuous in C, and the parabola makes it continuous
    in N; on noiseless grids the exponent comes back within 1e-3 (tests/test_fit.py).

    A curve is only evaluated inside its own sampled token range, and a compute is used only where at
    least 3 sizes cover it and the lowest is not at an end. Designs without >= 3 sizes of >= 4 token
    budgets (IsoFLOP designs, where each size has one run per budget) raise FitError with the reason.
    """
    done, diagnostics = select_done(frame)
    if len(done) < 2:
        raise FitError(f"envelope needs >= 2 done runs; got {len(done)}")
    size_of = group_by_relative(done["n_params"].to_numpy(), rel_tol)
    curves: dict[float, SaturatingPowerLaw] = {}
    ranges: dict[float, tuple[float, float]] = {}
    short = []
    for size, group in done.groupby(size_of, sort=True):
        n_budgets = len(np.unique(group_by_relative(group["n_tokens"].to_numpy(), rel_tol)))
        if n_budgets < ENVELOPE_MIN_BUDGETS:
            short.append(f"{size:.3g} ({n_budgets})")
            continue
        try:
            curves[float(size)] = SaturatingPowerLaw().fit(group["n_tokens"], group["loss"])
        except FitError as exc:
            diagnostics.append(f"Approach 1: size N={size:.3g} left out: {exc}")
            continue
        ranges[float(size)] = (float(group["n_tokens"].min()), float(group["n_tokens"].max()))
    if len(curves) < 3:
        raise FitError(
            f"Approach 1 needs >= 3 model sizes with >= {ENVELOPE_MIN_BUDGETS} token budgets each (a loss "
            f"curve per size); got {len(curves)}" + (f" (sizes with fewer budgets: {', '.join(short[:5])}"
                                                     f"{', ...' if len(short) > 5 else ''})" if short else ""))
    k = float(np.median(done["flops"] / (done["n_params"] * done["n_tokens"])))  # 6 for C = 6ND
    sizes = np.array(sorted(curves))
    log_sizes = np.log(sizes)
    rows = []
    for C in np.geomspace(done["flops"].min(), done["flops"].max(), n_compute):
        tokens = C / (k * sizes)
        covered = [i for i, s in enumerate(sizes) if ranges[s][0] <= tokens[i] <= ranges[s][1]]
        if len(covered) < 3:
            continue
        losses = np.array([float(curves[sizes[i]].predict(tokens[i])) for i in covered])
        j = int(np.argmin(losses))
        if j in (0, len(covered) - 1):  # the lowest curve is the smallest or largest covering size
            continue
        x = log_sizes[covered][j - 1:j + 2]
        c2, c1, c0 = np.polyfit(x, losses[j - 1:j + 2], 2)
        x_opt = -c1 / (2.0 * c2)
        if not (c2 > 0 and x[0] < x_opt < x[2]):
            continue
        n_opt = math.exp(x_opt)
        rows.append({"flops": float(C), "n_params": n_opt, "n_tokens": C / (k * n_opt),
                     "loss": float(c0 + c1 * x_opt + c2 * x_opt ** 2)})
    env = pd.DataFrame(rows, columns=["flops", "n_params", "n_tokens", "loss"])
    span = float(env["flops"].max() / env["flops"].min()) if len(env) else 1.0
    if len(env) < 3 or span < 2:
        raise FitError(
            f"the per-size curves have an interior minimum at {len(env)} compute values spanning "
            f"{span:.2g}x in C (need >= 3 spanning >= 2x): too few sizes bracket the compute-optimal size at "
            f"each compute (add sizes on both sides, or more budgets per size)")
    k_n, a = fit_power_law(env["flops"], env["n_params"])
    k_d, b = fit_power_law(env["flops"], env["n_tokens"])
    return EnvelopeResult(points=env, law=PowerLawFit(k_n=k_n, a=a, k_d=k_d, b=b),
                          diagnostics=tuple(diagnostics), curves=curves, token_ranges=ranges)


# --------------------------------------------------------------------------------------------------
# Approach 2: IsoFLOP profiles
# --------------------------------------------------------------------------------------------------

EDGE_MESSAGE = "minimum at the edge of its grid"
OFF_CENTRE_MESSAGE = "minimum off the centre of its window"


@dataclass(frozen=True, eq=False)
class IsoFlopResult(_ViaPowerLaw):
    """Approach 2 (Hoffmann et al. 2022, sec. 3.2): a parabola in log N per compute budget."""

    points: pd.DataFrame
    """The done runs with a `budget` column (each run's compute budget)."""
    curves: pd.DataFrame
    """One row per budget: budget, n_points, c0, c1, c2 (loss = c0 + c1 x + c2 x^2, x = ln N),
    n_opt, d_opt, loss_opt, n_min, n_max, shift (the minimum's offset from the window's centre in ln N,
    in half-widths), planned_centre (the prior's N_opt the plan centred the window on, from the runs'
    `isoflop_centre`; nan if not planned so), used (in the power-law fit), flag (why not / warning)."""
    law: PowerLawFit
    diagnostics: tuple[str, ...] = ()


def budgets_of(frame: pd.DataFrame, rel_tol: float = 0.05) -> np.ndarray:
    """Each run's compute budget: the `budget` column if present, else flops grouped within rel_tol."""
    if "budget" in frame.columns:
        return pd.to_numeric(frame["budget"], errors="coerce").to_numpy(dtype=float)
    return group_by_relative(frame["flops"].to_numpy(dtype=float), rel_tol)


def is_isoflop_design(frame: pd.DataFrame, rel_tol: float = 0.05, min_points: int = 3) -> bool:
    """True when the done runs form >= 2 budgets with >= min_points runs each."""
    done, _ = select_done(frame)
    if len(done) == 0:
        return False
    counts = pd.Series(budgets_of(done, rel_tol)).value_counts()
    return int((counts >= min_points).sum()) >= 2


def _planned_centre(group: pd.DataFrame) -> float:
    """The IsoFLOP centre the planner recorded in these runs' specs (nan for designs without one)."""
    if "isoflop_centre" not in group.columns:
        return math.nan
    centres = pd.to_numeric(group["isoflop_centre"], errors="coerce")
    centres = centres[centres > 0]
    return float(centres.median()) if len(centres) else math.nan


def fit_isoflop(frame: pd.DataFrame, rel_tol: float = 0.05, min_points: int = 3,
                off_centre: float = 0.5) -> IsoFlopResult:
    """Approach 2: per budget, fit loss = c0 + c1 ln N + c2 (ln N)^2, take its minimum N_opt,
    D_opt = C / (k N_opt) with k = the runs' flops / (N D) (6 for C = 6ND); then fit
    N_opt = k_n C^a and D_opt = k_d C^b over the budgets.

    Curves with fewer than min_points runs are skipped; a parabola opening downward, or with its
    minimum outside the sampled N range, is flagged and left out of the power law; a curve whose
    lowest measured loss is at its smallest or largest N is flagged but kept (pitfalls.md:
    off-centre grids bias Approach 2). So is a curve whose parabola minimum lies inside the sampled range
    but more than `off_centre` half-widths (in ln N) from its centre: the parabola's error grows with the
    offset, so such a budget's N_opt is biased even before it reaches the edge.
    """
    done, diagnostics = select_done(frame)
    done = done.assign(budget=budgets_of(done, rel_tol))
    rows, skipped = [], []
    for budget, group in done.groupby("budget", sort=True):
        group = group.sort_values("n_params")
        n = len(group)
        name = f"budget {budget:.3g} FLOPs"
        if n < min_points or len(np.unique(group["n_params"])) < 3:
            skipped.append(f"{budget:.3g} ({n} run(s), {len(np.unique(group['n_params']))} distinct N)")
            continue
        x = np.log(group["n_params"].to_numpy())
        y = group["loss"].to_numpy()
        c2, c1, c0 = np.polyfit(x, y, 2)
        x_min, x_max = float(x.min()), float(x.max())
        flops_per_nd = float(np.median(group["flops"] / (group["n_params"] * group["n_tokens"])))
        row = {"budget": float(budget), "n_points": n, "c0": c0, "c1": c1, "c2": c2,
               "n_min": math.exp(x_min), "n_max": math.exp(x_max), "shift": np.nan,
               "planned_centre": _planned_centre(group), "used": True, "flag": ""}
        if c2 <= 0:
            row.update(n_opt=np.nan, d_opt=np.nan, loss_opt=np.nan, used=False,
                       flag="parabola opens downward (no minimum)")
        else:
            x_opt = -c1 / (2.0 * c2)
            row.update(n_opt=math.exp(x_opt), d_opt=budget / (flops_per_nd * math.exp(x_opt)),
                       loss_opt=float(c0 + c1 * x_opt + c2 * x_opt ** 2))
            x_mid, half = (x_min + x_max) / 2, (x_max - x_min) / 2
            row["shift"] = (x_opt - x_mid) / half
            flags = []
            if not x_min < x_opt < x_max:
                row.update(used=False)
                flags.append(f"{EDGE_MESSAGE}: parabola minimum N={math.exp(x_opt):.3g} "
                             f"outside sampled [{math.exp(x_min):.3g}, {math.exp(x_max):.3g}]")
            else:
                if int(np.argmin(y)) in (0, n - 1):
                    flags.append(f"{EDGE_MESSAGE}: lowest loss at N={math.exp(x[np.argmin(y)]):.3g}, "
                                 f"an end of the sampled N range")
                if abs(row["shift"]) > off_centre:
                    flags.append(
                        f"{OFF_CENTRE_MESSAGE}: parabola minimum N={math.exp(x_opt):.3g} is "
                        f"{abs(row['shift']):.2f} half-widths (x{math.exp(abs(x_opt - x_mid)):.3g}) "
                        f"{'above' if x_opt > x_mid else 'below'} the window centre {math.exp(x_mid):.3g}; "
                        f"re-centre the window (see [grid].prior, [grid].window)"
                        + (f"; the plan centred it on the prior's N_opt {row['planned_centre']:.3g}"
                           if math.isfinite(row["planned_centre"]) else ""))
            row["flag"] = "; ".join(flags)
        if row["flag"]:
            verdict = "excluded from the power law" if not row["used"] else "kept"
            diagnostics.append(f"{name}: {row['flag']} ({verdict})")
        rows.append(row)
    if skipped:
        # One line for all of them: a non-IsoFLOP design can have dozens of singleton budgets.
        shown = "; ".join(skipped[:5]) + (f"; ... {len(skipped) - 5} more" if len(skipped) > 5 else "")
        diagnostics.append(f"skipped {len(skipped)} budget(s) with < {min_points} runs or distinct N "
                           f"(a curve needs >= {min_points}): {shown}")
    columns = ["budget", "n_points", "c0", "c1", "c2", "n_opt", "d_opt", "loss_opt",
               "n_min", "n_max", "shift", "planned_centre", "used", "flag"]
    curves = pd.DataFrame(rows, columns=columns)
    used = curves[curves["used"]]
    if len(used) < 2:
        raise FitError(f"Approach 2 needs >= 2 budgets with a usable parabola minimum; got "
                       f"{len(used)} of {len(curves)} ({'; '.join(diagnostics) or 'no curves'})")
    k_n, a = fit_power_law(used["budget"], used["n_opt"])
    k_d, b = fit_power_law(used["budget"], used["d_opt"])
    for message in diagnostics:
        log.info("isoflop: %s", message)
    return IsoFlopResult(points=done, curves=curves, law=PowerLawFit(k_n=k_n, a=a, k_d=k_d, b=b),
                         diagnostics=tuple(diagnostics))


# --------------------------------------------------------------------------------------------------
# Kaplan et al. 2020 forms: L(N) at fixed D, L(D) at fixed N
# --------------------------------------------------------------------------------------------------

class SaturatingPowerLaw:
    """L(x) = E + A / x^alpha for one variable (Kaplan et al. 2020, eq. 1.1/1.2 plus an offset E).

    Fitted by least squares on log residuals (scipy L-BFGS-B with analytic gradient) from a small
    grid of starts over (log A, log E, alpha); needs >= 4 points (3 parameters + 1).
    """

    def __init__(self, max_alpha: float = 3.0) -> None:
        self.max_alpha = max_alpha

    def fit(self, x: Sequence[float] | np.ndarray, L: Sequence[float] | np.ndarray
            ) -> SaturatingPowerLaw:
        x, L = np.asarray(x, dtype=float).ravel(), np.asarray(L, dtype=float).ravel()
        if len(x) < 4 or len(np.unique(x)) < 4:
            raise FitError(f"L(x) = E + A/x^alpha needs >= 4 points with distinct x; got {len(x)} "
                           f"points, {len(np.unique(x))} distinct")
        log_x, log_l = np.log(x), np.log(L)

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            log_a, log_e, alpha = theta
            t_x = log_a - alpha * log_x
            top = np.maximum(t_x, log_e)
            p_x, p_e = np.exp(t_x - top), np.exp(log_e - top)
            total = p_x + p_e
            r = log_l - (top + np.log(total))
            g = -2.0 * r / total
            return float((r * r).sum()), np.array([(g * p_x).sum(), (g * p_e).sum(),
                                                    -(g * p_x * log_x).sum()])

        best = None
        starts = itertools.product(np.linspace(0, 25, 6),
                                   np.log(np.array([0.25, 0.5, 0.9]) * L.min()),
                                   np.linspace(0.05, 1.0, 5))
        with _blas_single_thread():
            for log_a, log_e, alpha in starts:
                res = minimize(objective, np.array([log_a, log_e, alpha]), jac=True,
                               method="L-BFGS-B", options=_LBFGS_OPTIONS,
                               bounds=[(None, None), (None, None), (0.0, self.max_alpha)])
                if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
                    best = res
        if best is None:
            raise FitError("L(x) = E + A/x^alpha: the optimizer failed from every start")
        log_a, log_e, alpha = (float(v) for v in best.x)
        self.E_, self.A_, self.alpha_ = math.exp(log_e), math.exp(log_a), alpha
        self.loss_ = float(best.fun)
        self.n_points_ = len(x)
        return self

    def predict(self, x: float | np.ndarray) -> np.ndarray:
        if not hasattr(self, "E_"):
            raise FitError("SaturatingPowerLaw is not fitted: call fit(x, L) first")
        return self.E_ + self.A_ / np.asarray(x, dtype=float) ** self.alpha_


@dataclass(frozen=True, eq=False)
class SliceFits:
    """L(N) fits per token budget (or L(D) per model size): table plus the fitted laws."""

    table: pd.DataFrame
    """One row per slice: fixed (the fixed D or N), n_points, E, A, alpha, loss."""
    laws: dict[float, SaturatingPowerLaw] = field(default_factory=dict)
    diagnostics: tuple[str, ...] = ()


def _fit_slices(frame: pd.DataFrame, fixed: str, free: str, rel_tol: float) -> SliceFits:
    done, diagnostics = select_done(frame)
    groups = group_by_relative(done[fixed].to_numpy(), rel_tol) if len(done) else np.array([])
    rows, laws = [], {}
    for value, group in done.groupby(groups, sort=True):
        try:
            law = SaturatingPowerLaw().fit(group[free], group["loss"])
        except FitError as exc:
            diagnostics.append(f"{fixed} ~ {value:.3g}: skipped, {exc}")
            continue
        laws[float(value)] = law
        rows.append({"fixed": float(value), "n_points": law.n_points_, "E": law.E_, "A": law.A_,
                     "alpha": law.alpha_, "loss": law.loss_})
    if not rows:
        raise FitError(f"no slice at fixed {fixed} has >= 4 runs with distinct {free} "
                       f"({len(done)} done runs)")
    table = pd.DataFrame(rows, columns=["fixed", "n_points", "E", "A", "alpha", "loss"])
    return SliceFits(table=table, laws=laws, diagnostics=tuple(diagnostics))


def fit_loss_vs_params(frame: pd.DataFrame, rel_tol: float = 0.05) -> SliceFits:
    """Kaplan-style L(N) = E + A / N^alpha, one fit per token budget (n_tokens within rel_tol)."""
    return _fit_slices(frame, fixed="n_tokens", free="n_params", rel_tol=rel_tol)


def fit_loss_vs_tokens(frame: pd.DataFrame, rel_tol: float = 0.05) -> SliceFits:
    """Kaplan-style L(D) = E + B / D^beta, one fit per model size (n_params within rel_tol)."""
    return _fit_slices(frame, fixed="n_params", free="n_tokens", rel_tol=rel_tol)


# --------------------------------------------------------------------------------------------------
# Extrapolation check
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class HoldoutResult:
    """Approach 3 fitted without the largest-compute runs, scored on them."""

    table: pd.DataFrame
    """Held-out runs: run_id, n_params, n_tokens, flops, loss, predicted, rel_error."""
    law: ChinchillaLaw
    max_fit_flops: float
    """Largest compute among the runs used for the fit."""

    @property
    def mean_abs_rel_error(self) -> float:
        return float(self.table["rel_error"].abs().mean())

    @property
    def max_abs_rel_error(self) -> float:
        return float(self.table["rel_error"].abs().max())


def holdout_check(frame: pd.DataFrame, n_holdout: int | None = None,
                  law: ChinchillaLaw | None = None) -> HoldoutResult:
    """Fit Approach 3 on all but the n_holdout largest-compute done runs; report the relative
    loss error (predicted - actual) / actual on those. n_holdout defaults to 10% (at least 1)."""
    done, _ = select_done(frame)
    if n_holdout is None:
        n_holdout = max(1, len(done) // 10)
    if n_holdout < 1 or n_holdout >= len(done):
        raise FitError(f"n_holdout = {n_holdout}: must be >= 1 and < {len(done)} done runs")
    done = done.sort_values("flops", kind="stable").reset_index(drop=True)
    train, test = done.iloc[:-n_holdout], done.iloc[-n_holdout:].copy()
    proto = law if law is not None else ChinchillaLaw()
    fitted = ChinchillaLaw(delta=proto.delta, n_starts=proto.n_starts, grid=proto.grid)
    fitted.fit(train["n_params"], train["n_tokens"], train["loss"])
    test["predicted"] = fitted.predict(test["n_params"].to_numpy(), test["n_tokens"].to_numpy())
    test["rel_error"] = (test["predicted"] - test["loss"]) / test["loss"]
    cols = [c for c in ("run_id", "n_params", "n_tokens", "flops", "loss", "predicted", "rel_error")
            if c in test.columns]
    return HoldoutResult(table=test[cols].reset_index(drop=True), law=fitted,
                         max_fit_flops=float(train["flops"].max()))


# --------------------------------------------------------------------------------------------------
# Whole-sweep report
# --------------------------------------------------------------------------------------------------

def compute_optimal_table(report_or_law: object, budgets: Iterable[float] = DEFAULT_BUDGETS,
                          level: float = 0.95) -> pd.DataFrame:
    """N_opt, D_opt and tokens per parameter at each budget (FLOPs).

    Accepts a FitReport (its Approach 3 law), a ChinchillaLaw, or anything with
    `compute_optimal(C) -> (N, D)` (envelope, IsoFLOP, published laws). Adds percentile bands
    n_opt_lo/hi, d_opt_lo/hi when the law has bootstrap samples.
    """
    law = report_or_law.law if isinstance(report_or_law, FitReport) else report_or_law
    if law is None:
        raise FitError("the report has no Approach 3 fit (too few runs?)")
    if not hasattr(law, "compute_optimal"):
        raise FitError(f"{type(law).__name__} has no compute_optimal(C)")
    C = np.asarray(list(budgets), dtype=float)
    n_opt, d_opt = law.compute_optimal(C)
    table = pd.DataFrame({"flops": C, "n_opt": n_opt, "d_opt": d_opt,
                          "tokens_per_param": np.asarray(d_opt) / np.asarray(n_opt)})
    if hasattr(law, "bootstrap_params_") and hasattr(law, "compute_optimal_interval"):
        for key, values in law.compute_optimal_interval(C, level).items():
            table[key] = values
    return table


@dataclass
class FitReport:
    """Everything `fit_sweep` could fit on one sweep, with the reasons for what it could not."""

    n_runs: int
    n_done: int
    law: ChinchillaLaw | None
    envelope: EnvelopeResult | None
    isoflop: IsoFlopResult | None
    holdout: HoldoutResult | None
    diagnostics: list[str]
    budgets: tuple[float, ...] = DEFAULT_BUDGETS
    level: float = 0.95
    seed_spread: pd.DataFrame | None = None
    """Per (N, D) point: n_seeds, loss_mean, loss_std (see fit.seed_spread); None without seeds."""
    all_seeds: bool = False
    """True when every seed was fitted as its own point, False when fits used the seed mean."""
    identification: dict[str, str] = field(default_factory=dict)
    """Per Approach 3 parameter: "" when identified, else why not and what would pin it (`identification`)."""
    optimum: dict[str, float | bool] | None = None
    """N_opt at the sweep's largest compute with its band (`optimum_at`); None without Approach 3."""
    outliers: pd.DataFrame | None = None
    """Runs far off the Approach 3 law (`outlying_runs`); None without Approach 3."""
    n_points: int | None = None
    """Points the fits saw: done runs after the best LR per point and the mean over seeds and duplicate
    (N, D) rows; None when not counted."""

    def _interval(self, name: str) -> tuple[float, float] | None:
        if self.law is None or not hasattr(self.law, "bootstrap_params_"):
            return None
        return self.law.interval(name, self.level)

    def to_text(self) -> str:
        """Human-readable summary: parameters with intervals, exponents, compute-optimal table."""
        lines = [f"runs: {self.n_runs} total, {self.n_done} done and fitted"
                 if self.n_points in (None, self.n_done) else
                 f"runs: {self.n_runs} total, {self.n_done} done, fitted as {self.n_points} distinct "
                 f"(N, D) points (best LR, mean over seeds and repeated rows)"]
        pct = f"{100 * self.level:g}%"
        if self.law is not None:
            p = self.law.params_
            n_boot = len(self.law.bootstrap_params_) if hasattr(self.law, "bootstrap_params_") else 0
            lines.append("")
            lines.append(f"Approach 3: L(N, D) = E + A/N^alpha + B/D^beta  (Huber delta="
                         f"{self.law.delta:g} on log residuals; objective {self.law.loss_:.6g}"
                         + (f"; {pct} bootstrap intervals from {n_boot} resamples)" if n_boot else ")"))
            values = {**p.to_dict(), "a": p.a, "b": p.b}
            for name in (*PARAM_NAMES, "a", "b"):
                iv = self._interval(name)
                band = f"  [{iv[0]:.6g}, {iv[1]:.6g}]" if iv else ""
                flag = "  NOT IDENTIFIED (see diagnostics)" if self.identification.get(name) else ""
                lines.append(f"  {name:>5} = {values[name]:.6g}{band}{flag}")
            if self.optimum is not None and "n_opt_lo" in self.optimum:
                o = self.optimum
                verdict = "identified" if o["identified"] else f"NOT IDENTIFIED (> {N_OPT_MAX_FACTOR:g}x)"
                lines.append(f"  N_opt at the sweep's largest compute (C = 6ND = {o['flops']:.3g}): {o['n_opt']:.3g} "
                             f"[{o['n_opt_lo']:.3g}, {o['n_opt_hi']:.3g}], {o['factor']:.3g}x: {verdict}")
            table = compute_optimal_table(self.law, self.budgets, self.level)
            lines.append("")
            lines.append("compute-optimal allocation (Approach 3, C = 6ND):")
            lines.append(f"  {'FLOPs':>9} {'N_opt':>10} {'D_opt':>10} {'tokens/param':>12}"
                         + (f"  {'N_opt ' + pct + ' band':>23}" if "n_opt_lo" in table else ""))
            for row in table.itertuples(index=False):
                band = (f"  [{row.n_opt_lo:.3g}, {row.n_opt_hi:.3g}]".rjust(25)
                        if "n_opt_lo" in table else "")
                lines.append(f"  {row.flops:>9.3g} {row.n_opt:>10.3g} {row.d_opt:>10.3g} "
                             f"{row.tokens_per_param:>12.1f}{band}")
        else:
            lines.append("Approach 3: not fitted")
        for title, result in (("Approach 2 (IsoFLOP parabolas)", self.isoflop),
                              ("Approach 1 (minimum-loss envelope)", self.envelope)):
            lines.append("")
            if result is None:
                lines.append(f"{title}: not fitted")
            else:
                lines.append(f"{title}: N_opt = {result.law.k_n:.4g} C^{result.a:.4f}, "
                             f"D_opt = {result.law.k_d:.4g} C^{result.b:.4f}")
        if self.holdout is not None:
            lines.append("")
            lines.append(f"holdout: fit on runs with C <= {self.holdout.max_fit_flops:.3g}, "
                         f"{len(self.holdout.table)} held out; relative loss error mean "
                         f"{self.holdout.mean_abs_rel_error:.3%}, max {self.holdout.max_abs_rel_error:.3%}")
        if self.seed_spread is not None and (self.seed_spread["n_seeds"] > 1).any():
            multi = self.seed_spread[self.seed_spread["n_seeds"] > 1]
            lines.append("")
            lines.append(f"seed spread: std of loss across seeds, {len(multi)} points with "
                         f"{int(multi['n_seeds'].min())}-{int(multi['n_seeds'].max())} seeds: mean "
                         f"{multi['loss_std'].mean():.4g}, max {multi['loss_std'].max():.4g}; fits use "
                         + ("every seed (--all-seeds)" if self.all_seeds else "the seed mean"))
        if self.diagnostics:
            lines.append("")
            lines.append("diagnostics:")
            lines.extend(f"  - {d}" for d in self.diagnostics)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable summary (for fit.json)."""
        out: dict[str, object] = {"n_runs": self.n_runs, "n_done": self.n_done, "n_points": self.n_points,
                                  "level": self.level, "diagnostics": list(self.diagnostics)}
        if self.law is not None:
            p = self.law.params_
            approach3: dict[str, object] = {
                "params": {**p.to_dict(), "a": p.a, "b": p.b},
                "objective": float(self.law.loss_), "delta": float(self.law.delta),
                "n_points": int(self.law.n_points_)}
            if hasattr(self.law, "bootstrap_params_"):
                approach3["n_boot"] = len(self.law.bootstrap_params_)
                approach3["intervals"] = {name: list(self._interval(name) or ())
                                          for name in (*PARAM_NAMES, "a", "b")}
            table = compute_optimal_table(self.law, self.budgets, self.level)
            approach3["compute_optimal"] = _records(table)
            approach3["not_identified"] = {k: v for k, v in self.identification.items() if v}
            if self.optimum is not None:
                approach3["optimum_at_max_flops"] = _records(pd.DataFrame([self.optimum]))[0]
            if self.outliers is not None:
                approach3["outliers"] = _records(self.outliers)
            out["approach3"] = approach3
        else:
            out["approach3"] = None
        for key, result in (("approach2", self.isoflop), ("approach1", self.envelope)):
            out[key] = None if result is None else {
                **{k: float(v) for k, v in asdict(result.law).items()},
                "diagnostics": list(result.diagnostics)}
        if self.isoflop is not None:
            out["approach2"]["curves"] = _records(self.isoflop.curves)  # type: ignore[index]
        if self.seed_spread is not None:
            out["seed_spread"] = _records(self.seed_spread)
        out["holdout"] = None if self.holdout is None else {
            "max_fit_flops": self.holdout.max_fit_flops,
            "mean_abs_rel_error": self.holdout.mean_abs_rel_error,
            "max_abs_rel_error": self.holdout.max_abs_rel_error,
            "runs": _records(self.holdout.table)}
        return out


def _records(table: pd.DataFrame) -> list[dict[str, object]]:
    """DataFrame rows as plain-Python dicts (numpy scalars and NaN made JSON-safe)."""
    out = []
    for row in table.to_dict(orient="records"):
        clean: dict[str, object] = {}
        for k, v in row.items():
            if isinstance(v, (np.generic,)):
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            clean[str(k)] = v
        out.append(clean)
    return out


NOT_IDENTIFIED_FACTOR: dict[str, float] = {"E": 10.0, "A": 100.0, "B": 100.0, "alpha": 3.0, "beta": 3.0}
"""A parameter is reported as not identified when its 95% bootstrap interval spans more than this factor
(hi / lo): the floor E known only to within 10x, the coefficients A and B to within two decades, or the
exponents to within 3x (Chinchilla's refit pins alpha to 1.18x and A to 2.6x, Besiroglu et al. 2024)."""
AT_BOX_SHARE = 0.025
"""...or when more than this share of its bootstrap refits (one tail of a 95% interval) end on the search box."""
A_MAX_WIDTH = 0.35
"""The exponent a of N_opt ~ C^a counts as identified when its 95% interval is finite, stays off 0 and 1 by
A_EDGE, and is at most this wide: a wider interval around the published values holds both Kaplan et al. 2020's
0.73 and Hoffmann et al. 2022's 0.46 at once, so it cannot tell the published laws apart."""
A_EDGE = 0.05
"""...an interval reaching within this of 0 or 1 means alpha and beta trade off without limit."""
N_OPT_MAX_FACTOR = 3.0
"""N_opt at the sweep's largest compute counts as identified when its 95% band spans at most this factor."""
OUTLIER_Z = 5.0
"""A run is outlying when its log residual from the Approach 3 law is more than OUTLIER_Z robust standard
deviations (1.4826 x the median absolute deviation) from the median residual..."""
OUTLIER_MIN_REL = 0.01
"""...and more than 1% off the law in loss (so a near-noiseless fit does not flag rounding)."""

_BOX_EPS = 1e-6


def _theta_samples(boot: pd.DataFrame) -> pd.DataFrame:
    """Bootstrap parameters as the optimizer's theta = (log A, log B, log E, alpha, beta)."""
    with np.errstate(divide="ignore"):
        return pd.DataFrame({"a": np.log(boot["A"]), "b": np.log(boot["B"]), "e": np.log(boot["E"]),
                             "alpha": boot["alpha"], "beta": boot["beta"]})


def identification(law: ChinchillaLaw, done: pd.DataFrame, level: float = 0.95) -> dict[str, str]:
    """For E, A, B, alpha, beta (and a, with a bootstrap): "" where the data pin it, else why not and what would.

    Not identified: the point estimate sits on the search box, or E is below 5% of the lowest loss (the
    sweep does not approach the floor), or the bootstrap interval spans more than NOT_IDENTIFIED_FACTOR,
    or more than AT_BOX_SHARE of the refits end on the box. Small sweeps far above the loss floor leave
    E at ~0 and A, alpha trading off along a ridge; the point fit is then still the optimum, but its
    extrapolations are not to be trusted, and the report says so parameter by parameter.
    """
    n_lo, n_hi = float(done["n_params"].min()), float(done["n_params"].max())
    d_lo, d_hi = float(done["n_tokens"].min()), float(done["n_tokens"].max())
    min_loss = float(done["loss"].min())
    remedy_n = (f"more model sizes over a wider range of N (now {n_lo:.3g} to {n_hi:.3g}, {n_hi / n_lo:.2g}x), "
                "each trained long enough that its size limits the loss")
    remedy_d = (f"more token budgets over a wider range of D (now {d_lo:.3g} to {d_hi:.3g}, "
                f"{d_hi / d_lo:.2g}x) for several sizes")
    remedy = {"E": f"runs nearer the loss floor: longer token budgets for the largest sizes (lowest loss "
                   f"{min_loss:.3g})", "A": remedy_n, "alpha": remedy_n, "B": remedy_d, "beta": remedy_d}
    theta_name = {"A": "a", "B": "b", "E": "e", "alpha": "alpha", "beta": "beta"}
    bounds = dict(zip(_THETA_NAMES, _THETA_BOUNDS))
    theta = dict(zip(_THETA_NAMES, law.theta_)) if hasattr(law, "theta_") else None
    boot = getattr(law, "bootstrap_params_", None)
    boot_theta = _theta_samples(boot) if boot is not None and len(boot) > 1 else None
    values = law.params_.to_dict()
    out: dict[str, str] = {}
    for name in PARAM_NAMES:
        lo_box, hi_box = bounds[theta_name[name]]
        why = ""
        if theta is not None and min(abs(theta[theta_name[name]] - lo_box),
                                     abs(theta[theta_name[name]] - hi_box)) < _BOX_EPS:
            why = f"the fit ended on its search box ({name} = {values[name]:.3g})"
        elif name == "E" and values["E"] < 0.05 * min_loss:
            why = f"E = {values['E']:.3g} is near 0: the sweep stays far above the loss floor"
        elif boot_theta is not None:
            samples = boot_theta[theta_name[name]].to_numpy()
            at_box = float(np.mean((samples <= lo_box + _BOX_EPS) | (samples >= hi_box - _BOX_EPS)))
            lo, hi = law.interval(name, level)
            if at_box > AT_BOX_SHARE:
                why = f"{at_box:.0%} of the bootstrap refits end on the search box"
            elif not (lo > 0 and math.isfinite(hi)) or hi / lo > NOT_IDENTIFIED_FACTOR[name]:
                span = f"{hi / lo:.2g}x" if lo > 0 and math.isfinite(hi) else "to 0 or infinity"
                why = (f"its {level:.0%} interval [{lo:.3g}, {hi:.3g}] spans {span} "
                       f"(> {NOT_IDENTIFIED_FACTOR[name]:g}x)")
        out[name] = f"{why}; would pin it: {remedy[name]}" if why else ""
    if boot_theta is not None:
        lo, hi = law.interval("a", level)
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo > A_MAX_WIDTH or lo < A_EDGE \
                or hi > 1 - A_EDGE:
            out["a"] = (f"its {level:.0%} interval [{lo:.3g}, {hi:.3g}] is wider than {A_MAX_WIDTH:g} or reaches "
                        f"within {A_EDGE:g} of 0 or 1; would pin "
                        "it: sizes on both sides of the compute-optimal size at budgets >= 10x apart (an "
                        "IsoFLOP design centred on each budget's optimum)")
        else:
            out["a"] = ""
    return out


def optimum_at(law: ChinchillaLaw, flops: float, level: float = 0.95) -> dict[str, float | bool]:
    """N_opt at one budget with its bootstrap band and whether the band is within N_OPT_MAX_FACTOR."""
    n_opt = float(np.asarray(law.compute_optimal(flops)[0]))
    out: dict[str, float | bool] = {"flops": float(flops), "n_opt": n_opt}
    if getattr(law, "bootstrap_params_", None) is not None:
        band = law.compute_optimal_interval(flops, level)
        lo, hi = float(band["n_opt_lo"]), float(band["n_opt_hi"])
        factor = hi / lo if lo > 0 and math.isfinite(hi) else math.inf
        out.update(n_opt_lo=lo, n_opt_hi=hi, factor=factor, identified=bool(factor <= N_OPT_MAX_FACTOR))
    return out


def outlying_runs(law: ChinchillaLaw, done: pd.DataFrame, z: float = OUTLIER_Z,
                  min_rel: float = OUTLIER_MIN_REL) -> pd.DataFrame:
    """Runs whose loss sits far off the fitted law (see OUTLIER_Z, OUTLIER_MIN_REL), worst first.

    Huber's loss already limits their pull on the fit; they are listed so a user can look at them (a
    diverging run that still finished, a data or evaluation bug, a wrong hyperparameter).
    """
    predicted = law.predict(done["n_params"].to_numpy(), done["n_tokens"].to_numpy())
    resid = np.log(done["loss"].to_numpy()) - np.log(predicted)
    centre = float(np.median(resid))
    scale = 1.4826 * float(np.median(np.abs(resid - centre)))
    robust_z = np.abs(resid - centre) / scale if scale > 0 else np.where(resid != centre, np.inf, 0.0)
    flag = (robust_z > z) & (np.abs(np.expm1(resid)) > min_rel)
    ids = done["run_id"].astype(str).to_numpy() if "run_id" in done else np.array(
        [f"row{i}" for i in range(len(done))])
    table = pd.DataFrame({"run_id": ids, "n_params": done["n_params"].to_numpy(),
                          "n_tokens": done["n_tokens"].to_numpy(), "loss": done["loss"].to_numpy(),
                          "predicted": predicted, "rel_error": np.expm1(resid), "robust_z": robust_z})
    return table[flag].sort_values("robust_z", ascending=False, kind="stable").reset_index(drop=True)


def fit_sweep(frame: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
              budgets: Iterable[float] = DEFAULT_BUDGETS, n_holdout: int | None = None,
              level: float = 0.95, law: ChinchillaLaw | None = None,
              rel_tol: float = 0.05, all_seeds: bool = False) -> FitReport:
    """Run every fit the frame supports and collect what could not be done as diagnostics.

    Approach 3 (+ bootstrap when n_boot > 0) when there are enough runs; Approach 2 when the frame
    is an IsoFLOP design (>= 2 budgets with >= 3 runs each); Approach 1 always; a holdout check
    on the largest-compute runs when the rest still suffice for Approach 3. Points are the best LR per
    (N, D, seed) and the seed mean per (N, D) unless `all_seeds` (see fit_points).
    """
    done, diagnostics = select_done(frame)
    n_done = len(done)
    done, lr_notes = keep_best_lr(done)
    diagnostics += lr_notes
    spread = seed_spread(done) if len(done) else None
    if not all_seeds:
        done = mean_over_seeds(done)
    if len(done) > LARGE_FIT_POINTS:
        note = (f"{len(done):,} points to fit (more than {LARGE_FIT_POINTS:,}): Approach 3 takes ~1 s per 1,000 "
                f"points per fit, {n_boot:,} bootstrap refits and a holdout refit come on top")
        log.warning(note)
        diagnostics.append(note)
    proto = law if law is not None else ChinchillaLaw()
    fitted: ChinchillaLaw | None = None
    try:
        fitted = ChinchillaLaw(delta=proto.delta, n_starts=proto.n_starts, grid=proto.grid)
        N, D, L = done["n_params"], done["n_tokens"], done["loss"]
        fitted.fit(N, D, L)
        if n_boot > 0:
            fitted.bootstrap(N, D, L, n_boot=n_boot, seed=seed)
            if fitted.n_boot_failed_:
                diagnostics.append(f"{fitted.n_boot_failed_} of {n_boot} bootstrap refits did not "
                                   f"converge and were dropped")
    except FitError as exc:
        fitted = None
        diagnostics.append(f"Approach 3 not fitted: {exc}")
    isoflop = None
    if is_isoflop_design(done, rel_tol):
        try:
            isoflop = fit_isoflop(done, rel_tol=rel_tol)
            diagnostics.extend(f"Approach 2: {d}" for d in isoflop.diagnostics)
        except FitError as exc:
            diagnostics.append(f"Approach 2 not fitted: {exc}")
    else:
        diagnostics.append("Approach 2 not fitted: not an IsoFLOP design "
                           "(needs >= 2 compute budgets with >= 3 runs each)")
    identified: dict[str, str] = {}
    optimum = None
    outliers = None
    if fitted is not None:
        identified = identification(fitted, done, level)
        diagnostics.extend(f"{name} not identified: {why}" for name, why in identified.items() if why)
        # compute_optimal counts C = 6ND (Hoffmann et al. eq. 4), so the sweep's largest compute is taken
        # in the same units (exact FLOPs of tiny models run ~1.5x above 6ND: embeddings and attention).
        optimum = optimum_at(fitted, float((6.0 * done["n_params"] * done["n_tokens"]).max()), level)
        if not optimum.get("identified", True):
            diagnostics.append(
                f"N_opt at the sweep's largest compute (C = 6ND = {optimum['flops']:.3g}) is not identified: its "
                f"{level:.0%} band [{optimum['n_opt_lo']:.3g}, {optimum['n_opt_hi']:.3g}] spans "
                f"{optimum['factor']:.3g}x (> {N_OPT_MAX_FACTOR:g}x); add sizes on both sides of {optimum['n_opt']:.3g} "
                f"at that compute (an IsoFLOP design centred there)")
        outliers = outlying_runs(fitted, done)
        if len(outliers):
            listed = ", ".join(f"{r.run_id} ({r.rel_error:+.1%})" for r in outliers.head(10).itertuples())
            diagnostics.append(
                f"{len(outliers)} outlying run(s), more than {OUTLIER_Z:g} robust SD and "
                f"{OUTLIER_MIN_REL:.0%} off the law: {listed}{', ...' if len(outliers) > 10 else ''}")
    envelope = None
    try:
        envelope = fit_envelope(done)
    except FitError as exc:
        diagnostics.append(f"Approach 1 not fitted: {exc}")
    holdout = None
    if fitted is not None:
        try:
            holdout = holdout_check(done, n_holdout=n_holdout, law=proto)
        except FitError as exc:
            diagnostics.append(f"holdout check not run: {exc}")
    return FitReport(n_runs=len(frame), n_done=n_done, law=fitted, envelope=envelope,
                     isoflop=isoflop, holdout=holdout, diagnostics=diagnostics,
                     budgets=tuple(float(c) for c in budgets), level=level, seed_spread=spread,
                     all_seeds=all_seeds, n_points=len(done), identification=identified, optimum=optimum,
                     outliers=outliers)
