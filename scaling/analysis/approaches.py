"""The estimators that end in power laws N_opt ~ C^a: Chinchilla's Approaches 1 and 2, Kaplan's slices.

Chinchilla's Approaches 1 (minimum-loss envelope) and 2 (IsoFLOP parabolas), Kaplan et al. 2020's
one-variable forms, and the log-log power laws they end in.

Hoffmann et al. 2022, sec. 3.1-3.2; Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv 2001.08361.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from scaling.analysis._blas import _blas_single_thread
from scaling.analysis.approach3 import _LBFGS_OPTIONS
from scaling.analysis.points import Points, rows_for_fit
from scaling.errors import FitError

log = logging.getLogger("scaling.fit")

__all__ = [
    "fit_power_law",
    "fit_parabola",
    "group_by_relative",
    "PowerLawFit",
    "EnvelopeResult",
    "ENVELOPE_MIN_BUDGETS",
    "fit_envelope",
    "EDGE_MESSAGE",
    "OFF_CENTRE_MESSAGE",
    "IsoFlopResult",
    "budgets_of",
    "is_isoflop_design",
    "fit_isoflop",
    "SaturatingPowerLaw",
    "SliceFits",
    "fit_loss_vs_params",
    "fit_loss_vs_tokens",
]

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


def fit_parabola(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float, float]:
    """Least squares y = c0 + c1 x + c2 x^2 (Approach 2's curve, x = ln N); returns (c0, c1, c2, x_opt, y_opt),
    the vertex nan when the parabola opens downward (c2 <= 0: no minimum). Approach 2, the envelope's
    refinement in N and the IsoFLOP planner's check of its own design all take their minimum here."""
    c2, c1, c0 = (float(c) for c in np.polyfit(x, y, 2))
    if c2 <= 0:
        return c0, c1, c2, math.nan, math.nan
    x_opt = -c1 / (2.0 * c2)
    return c0, c1, c2, x_opt, c0 + c1 * x_opt + c2 * x_opt ** 2


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


def fit_envelope(frame: pd.DataFrame | Points, n_compute: int = 200, rel_tol: float = 0.05) -> EnvelopeResult:
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
    done, diagnostics = rows_for_fit(frame)
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
        *_, x_opt, loss_opt = fit_parabola(x, losses[j - 1:j + 2])
        if not x[0] < x_opt < x[2]:  # False for nan too (no minimum)
            continue
        n_opt = math.exp(x_opt)
        rows.append({"flops": float(C), "n_params": n_opt, "n_tokens": C / (k * n_opt), "loss": loss_opt})
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


def is_isoflop_design(frame: pd.DataFrame | Points, rel_tol: float = 0.05, min_points: int = 3) -> bool:
    """True when the done runs form >= 2 budgets with >= min_points runs each."""
    done, _ = rows_for_fit(frame)
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


def fit_isoflop(frame: pd.DataFrame | Points, rel_tol: float = 0.05, min_points: int = 3,
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
    done, diagnostics = rows_for_fit(frame)
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
        c0, c1, c2, x_opt, loss_opt = fit_parabola(x, y)
        x_min, x_max = float(x.min()), float(x.max())
        flops_per_nd = float(np.median(group["flops"] / (group["n_params"] * group["n_tokens"])))
        row = {"budget": float(budget), "n_points": n, "c0": c0, "c1": c1, "c2": c2,
               "n_min": math.exp(x_min), "n_max": math.exp(x_max), "shift": np.nan,
               "planned_centre": _planned_centre(group), "used": True, "flag": ""}
        if c2 <= 0:
            row.update(n_opt=np.nan, d_opt=np.nan, loss_opt=np.nan, used=False,
                       flag="parabola opens downward (no minimum)")
        else:
            row.update(n_opt=math.exp(x_opt), d_opt=budget / (flops_per_nd * math.exp(x_opt)), loss_opt=loss_opt)
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
        log.debug("isoflop: %s", message)  # returned as a diagnostic: the report prints it once
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


def _fit_slices(frame: pd.DataFrame | Points, fixed: str, free: str, rel_tol: float) -> SliceFits:
    done, diagnostics = rows_for_fit(frame)
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


def fit_loss_vs_params(frame: pd.DataFrame | Points, rel_tol: float = 0.05) -> SliceFits:
    """Kaplan-style L(N) = E + A / N^alpha, one fit per token budget (n_tokens within rel_tol)."""
    return _fit_slices(frame, fixed="n_tokens", free="n_params", rel_tol=rel_tol)


def fit_loss_vs_tokens(frame: pd.DataFrame | Points, rel_tol: float = 0.05) -> SliceFits:
    """Kaplan-style L(D) = E + B / D^beta, one fit per model size (n_params within rel_tol)."""
    return _fit_slices(frame, fixed="n_params", free="n_tokens", rel_tol=rel_tol)
