"""Fitting Muennighoff et al. 2023's data-constrained law to runs that repeat their data.

Muennighoff, Rush, Barak, Le Scao, Piktus, Tazi, Pyysalo, Wolf, Raffel 2023, "Scaling Data-Constrained
Language Models", arXiv 2305.16264, eqs. 5-7; the law and its evaluation are `scaling.laws.DataConstrainedLaw`.
The fit follows the paper's two stages:

1. E, A, B, alpha, beta: Chinchilla's Approach 3 (`ChinchillaLaw`) on runs that see each token at most once
   (epochs <= 1). The paper took these five from its C4 IsoFLOP runs; a user's sweep takes them from its own
   single-epoch runs.
2. R*_D and R*_N with those five held fixed: minimise the summed Huber(delta = 1e-3) loss of
   log L_i - log L(N_i, D_i, U_i) over all runs, by L-BFGS-B in (log R*_D, log R*_N) from a grid of starts.

The bootstrap resamples runs (with replacement) and redoes both stages on each resample (stage 1 only when
the base was fitted here; a published base stays fixed). Each R* gets a percentile interval and a verdict:
it is not identified when no run informs it (no repeated run for R*_D; no run larger than the compute-
optimal size for its unique tokens for R*_N), when the fit or more than AT_BOX_SHARE of the refits end on
the search box, or when its 95% interval spans more than RSTAR_MAX_FACTOR.

Also here: the cost of repetition in words (`repetition_cost`) and the compute-optimal size and epochs under
a unique-token budget (`allocate`). Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.optimize import minimize, minimize_scalar

from scaling.analysis._blas import _blas_single_thread
from scaling.analysis.approach3 import ChinchillaLaw, _on_box, _theta_from_params
from scaling.analysis.identify import AT_BOX_SHARE
from scaling.errors import FitError
from scaling.laws import DataConstrainedLaw

__all__ = [
    "RSTAR_BOUNDS",
    "RSTAR_MAX_FACTOR",
    "MAX_SINGLE_EPOCH",
    "DataConstrainedFit",
    "fit_rstars",
    "fit_data_constrained",
    "repetition_cost",
    "allocate",
]

RSTAR_BOUNDS = (1e-2, 1e4)
"""Search box for R*_D and R*_N (in repetitions). The published C4 values are 15.4 and 5.3; R* = 1e4 means
repeated tokens (or excess parameters) are worth as much as new ones over any epoch count a sweep can run."""
RSTAR_MAX_FACTOR = 10.0
"""An R* is not identified when its 95% bootstrap interval spans more than this factor (hi / lo): a decay
constant known only to within a decade says neither how soon repetition stops paying nor how much it costs."""
MAX_SINGLE_EPOCH = 1.0 + 1e-9
"""Runs with D / U_D at most this count as single-epoch (stage 1 of the fit)."""
_DELTA = 1e-3
_START_GRID = (0.5, 2.0, 7.0, 20.0, 100.0)
"""Starting values of each R* (5 x 5 starts); the paper started from {0, 6.7, 13.3, 20} for both."""
_LBFGS = {"maxiter": 5_000, "ftol": 1e-15, "gtol": 1e-10, "maxls": 50}


def _effective(x: np.ndarray, reps: np.ndarray, log_star: float) -> tuple[np.ndarray, np.ndarray]:
    """x (1 + R* (1 - exp(-R / R*))) and its derivative with respect to log R*."""
    star = math.exp(log_star)
    decay = np.exp(-reps / star)
    value = x * (1.0 + star * (1.0 - decay))
    # d/d log R* of x R* (1 - exp(-R/R*)) = x R* [(1 - exp(-R/R*)) - (R/R*) exp(-R/R*)]
    return value, x * star * ((1.0 - decay) - (reps / star) * decay)


def _terms(base: DataConstrainedLaw, N: np.ndarray, D: np.ndarray, U: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """U_N, R_N, U_D, R_D of each run under the base law (eqs. 6-7)."""
    u_n = np.minimum(N, base.params_for_tokens(U))
    return u_n, np.maximum(N / u_n - 1.0, 0.0), U, np.maximum(D / U - 1.0, 0.0)


def _objective(theta: np.ndarray, base: DataConstrainedLaw, terms: tuple[np.ndarray, ...], log_l: np.ndarray,
               weights: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """Weighted summed Huber of log L_i - log L(N_i, D_i, U_i) and its gradient in (log R*_D, log R*_N)."""
    u_n, r_n, u_d, r_d = terms
    n_eff, dn = _effective(u_n, r_n, theta[1])
    d_eff, dd = _effective(u_d, r_d, theta[0])
    t_n = base.log_a - base.alpha * np.log(n_eff)
    t_d = base.log_b - base.beta * np.log(d_eff)
    top = np.maximum(np.maximum(t_n, t_d), base.log_e)
    p_n, p_d, p_e = np.exp(t_n - top), np.exp(t_d - top), np.exp(base.log_e - top)
    total = p_n + p_d + p_e
    r = log_l - (top + np.log(total))
    absr = np.abs(r)
    value = float((weights * np.where(absr <= delta, 0.5 * r * r, delta * (absr - 0.5 * delta))).sum())
    # d Huber / d pred = -clip(r); d pred / d log R*_D = softmax_d * (-beta) * dD'/D'
    psi = -weights * np.clip(r, -delta, delta) / total
    grad = np.array([(psi * p_d * -base.beta * dd / d_eff).sum(), (psi * p_n * -base.alpha * dn / n_eff).sum()])
    return value, grad


def _check(N: np.ndarray, D: np.ndarray, U: np.ndarray, L: np.ndarray) -> None:
    if not (N.shape == D.shape == U.shape == L.shape) or N.ndim != 1:
        raise FitError(f"N, D, U, L must be 1-d arrays of one length; got shapes {N.shape}, {D.shape}, "
                       f"{U.shape}, {L.shape}")
    for name, values in (("N", N), ("D", D), ("U", U), ("L", L)):
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise FitError(f"{name}[{i}] = {values[i]!r}: must be a finite number > 0")
    bad = U > D * (1 + 1e-9)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FitError(f"run {i}: unique tokens U = {U[i]:.4g} > tokens D = {D[i]:.4g}")


def rstar_optima(base: DataConstrainedLaw, N: Sequence[float] | np.ndarray, D: Sequence[float] | np.ndarray,
                 U: Sequence[float] | np.ndarray, L: Sequence[float] | np.ndarray,
                 weights: np.ndarray | None = None, starts: Sequence[tuple[float, float]] | None = None,
                 delta: float = _DELTA) -> list[tuple[float, float, float]]:
    """Stage 2 with E, A, B, alpha, beta of `base` fixed: the distinct optima (R*_D, R*_N, objective) reached
    from `starts` (default: the 5 x 5 grid of _START_GRID), best first. End points within 1% of each other in
    both R* are one optimum. Huber(1e-3) is nearly an absolute loss, so the objective has several local optima
    (on the paper's own runs three, within 0.2% of each other in objective)."""
    N, D, U, L = (np.asarray(x, dtype=float).ravel() for x in (N, D, U, L))
    terms = _terms(base, N, D, U)
    log_l = np.log(L)
    weights = np.ones_like(log_l) if weights is None else np.asarray(weights, dtype=float)
    starts = starts if starts is not None else [(d, n) for d in _START_GRID for n in _START_GRID]
    bounds = [(math.log(RSTAR_BOUNDS[0]), math.log(RSTAR_BOUNDS[1]))] * 2
    ends: list[tuple[float, float, float]] = []
    with _blas_single_thread():
        for rd0, rn0 in starts:
            res = minimize(_objective, np.log([rd0, rn0]), args=(base, terms, log_l, weights, delta), jac=True,
                           method="L-BFGS-B", bounds=bounds, options=_LBFGS)
            if np.all(np.isfinite(res.x)) and np.isfinite(res.fun):
                ends.append((float(math.exp(res.x[0])), float(math.exp(res.x[1])), float(res.fun)))
    if not ends:
        raise FitError(f"the R* fit converged from none of {len(starts)} starts")
    ends.sort(key=lambda e: e[2])
    distinct: list[tuple[float, float, float]] = []
    for end in ends:
        if all(abs(math.log(end[0] / o[0])) > 0.01 or abs(math.log(end[1] / o[1])) > 0.01 for o in distinct):
            distinct.append(end)
    return distinct


def fit_rstars(base: DataConstrainedLaw, N: Sequence[float] | np.ndarray, D: Sequence[float] | np.ndarray,
               U: Sequence[float] | np.ndarray, L: Sequence[float] | np.ndarray,
               weights: np.ndarray | None = None, starts: Sequence[tuple[float, float]] | None = None,
               delta: float = _DELTA) -> tuple[float, float, float]:
    """(R*_D, R*_N, objective): the best of `rstar_optima`."""
    return rstar_optima(base, N, D, U, L, weights, starts, delta)[0]


def _law_from_base(base: ChinchillaLaw, rd: float = 15.0, rn: float = 5.0) -> DataConstrainedLaw:
    p = base.params_
    return DataConstrainedLaw(log_a=math.log(p.A), log_b=math.log(p.B), log_e=math.log(p.E), alpha=p.alpha,
                              beta=p.beta, rd_star=rd, rn_star=rn)


@dataclass
class DataConstrainedFit:
    """A fitted data-constrained law, its bootstrap and per-R* verdicts (see the module docstring)."""

    law: DataConstrainedLaw
    """The fitted law (its five base constants from stage 1 or given)."""
    n_runs: int
    n_repeated: int
    """Runs with more than one epoch (they inform R*_D)."""
    n_excess: int
    """Runs larger than the compute-optimal size for their unique tokens (they inform R*_N)."""
    base_fitted: bool
    """Whether stage 1 ran here (False: a published base was given and held fixed)."""
    n_single: int = 0
    base: ChinchillaLaw | None = None
    boot: pd.DataFrame | None = None
    """One row per bootstrap resample: rd_star, rn_star (and E, A, B, alpha, beta when refitted)."""
    optima: list[tuple[float, float, float]] = field(default_factory=list)
    """Distinct local optima (R*_D, R*_N, objective) of stage 2 on all runs, best first."""
    verdicts: dict[str, str] = field(default_factory=dict)
    """"" where identified, else why not and what would pin it (keys rd_star, rn_star)."""

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float]:
        if self.boot is None or not len(self.boot):
            return (math.nan, math.nan)
        lo, hi = np.quantile(self.boot[name].to_numpy(), [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)

    def summary(self) -> list[str]:
        """`R*_D = X [lo, hi]` and `R*_N = Y [lo, hi]` lines with their verdicts."""
        out = []
        for key, label in (("rd_star", "R*_D"), ("rn_star", "R*_N")):
            lo, hi = self.interval(key)
            band = f" [{lo:.3g}, {hi:.3g}]" if math.isfinite(lo) else ""
            why = self.verdicts.get(key, "")
            out.append(f"{label} = {getattr(self.law, key):.3g}{band}" + (f"  NOT IDENTIFIED: {why}" if why else ""))
        return out

    def to_dict(self) -> dict[str, object]:
        law = self.law
        return {"E": law.E, "A": law.A, "B": law.B, "alpha": law.alpha, "beta": law.beta,
                "rd_star": law.rd_star, "rn_star": law.rn_star, "n_runs": self.n_runs,
                "n_repeated": self.n_repeated, "n_excess": self.n_excess, "n_single": self.n_single,
                "base_fitted": self.base_fitted, "n_boot": 0 if self.boot is None else len(self.boot),
                "intervals": {k: list(self.interval(k)) for k in ("rd_star", "rn_star")},
                "not_identified": {k: v for k, v in self.verdicts.items() if v}}


def fit_data_constrained(N: Sequence[float] | np.ndarray, D: Sequence[float] | np.ndarray,
                         U: Sequence[float] | np.ndarray, L: Sequence[float] | np.ndarray,
                         base: DataConstrainedLaw | None = None, n_boot: int = 200, seed: int = 0,
                         level: float = 0.95) -> DataConstrainedFit:
    """Both stages of the fit, the bootstrap over runs, and the verdicts.

    With `base` (a law whose E, A, B, alpha, beta are to be kept, as the paper kept its C4 values), stage 1
    is skipped in the fit and in every resample. Without it, stage 1 needs >= 5 single-epoch runs with
    >= 2 sizes and >= 2 token counts.
    """
    N, D, U, L = (np.asarray(x, dtype=float).ravel() for x in (N, D, U, L))
    _check(N, D, U, L)
    single = D / U <= MAX_SINGLE_EPOCH
    chinchilla: ChinchillaLaw | None = None
    if base is None:
        try:
            chinchilla = ChinchillaLaw().fit(N[single], D[single], L[single])
        except FitError as err:
            raise FitError(f"stage 1 (E, A, B, alpha, beta from the {int(single.sum())} single-epoch runs): {err}") \
                from None
        base = _law_from_base(chinchilla)
    optima = rstar_optima(base, N, D, U, L)
    rd, rn, _ = optima[0]
    law = replace(base, rd_star=rd, rn_star=rn)
    u_n, r_n, _, r_d = _terms(base, N, D, U)
    fit = DataConstrainedFit(law=law, n_runs=len(N), n_repeated=int((r_d > 1e-9).sum()),
                             n_excess=int((r_n > 1e-9).sum()), base_fitted=chinchilla is not None,
                             n_single=int(single.sum()), base=chinchilla, optima=optima)
    if n_boot:
        fit.boot = _bootstrap(fit, N, D, U, L, n_boot, seed)
    fit.verdicts = _verdicts(fit, N, D, U, level)
    return fit


def _bootstrap(fit: DataConstrainedFit, N: np.ndarray, D: np.ndarray, U: np.ndarray, L: np.ndarray,
               n_boot: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(N), np.full(len(N), 1.0 / len(N)), size=n_boot).astype(float)
    single = D / U <= MAX_SINGLE_EPOCH
    # Every resample starts from each distinct optimum of the full fit (at most 4) and from two far corners.
    starts = [(rd, rn) for rd, rn, _ in fit.optima[:4]] + [(2.0, 2.0), (100.0, 20.0)]
    rows: list[dict[str, float]] = []
    for i, w in enumerate(counts):
        base = fit.law
        row: dict[str, float] = {}
        if fit.base is not None:
            pick = np.repeat(np.flatnonzero(single), w[single].astype(int))
            if len(np.unique(N[pick])) < 2 or len(np.unique(D[pick])) < 2 or len(pick) < 5:
                continue  # a resample without enough single-epoch runs for stage 1
            theta = _theta_from_params(fit.base.params_)
            half_e = theta.copy()
            half_e[2] = math.log(0.5 * float(np.min(L[single])))
            try:
                refit = ChinchillaLaw(grid=np.array([theta, half_e]), n_starts=None).fit(N[pick], D[pick], L[pick])
                base = _law_from_base(refit)
            except (FitError, OverflowError):
                continue
            row.update(refit.params_.to_dict())
            row["base_on_box"] = float(_on_box(refit.theta_).any())
        rd, rn, _ = fit_rstars(base, N, D, U, L, weights=w, starts=starts)
        row.update(rd_star=rd, rn_star=rn)
        row["resample"] = i
        rows.append(row)
    return pd.DataFrame(rows).set_index("resample") if rows else pd.DataFrame(columns=["rd_star", "rn_star"])


def _on_rstar_box(x: np.ndarray) -> np.ndarray:
    lo, hi = RSTAR_BOUNDS
    return (x <= lo * (1 + 1e-4)) | (x >= hi * (1 - 1e-4))


def _verdicts(fit: DataConstrainedFit, N: np.ndarray, D: np.ndarray, U: np.ndarray, level: float) -> dict[str, str]:
    epochs = D / U
    remedy = {"rd_star": (f"runs at several epoch counts from 2 to 16 or more (now up to {epochs.max():.3g}) "
                          "for one unique budget, at two or more sizes"),
              "rn_star": ("runs larger than the compute-optimal size for their unique tokens (small U_D, big "
                          "models)")}
    informed = {"rd_star": fit.n_repeated, "rn_star": fit.n_excess}
    nothing = {"rd_star": "no run repeats its data (every run has <= 1 epoch)",
               "rn_star": "no run is larger than the compute-optimal size for its unique tokens"}
    out: dict[str, str] = {}
    for key in ("rd_star", "rn_star"):
        value = getattr(fit.law, key)
        why = ""
        if not informed[key]:
            why = nothing[key]
        elif _on_rstar_box(np.array([value]))[0]:
            why = f"the fit ended on its search box ({value:.3g}; box {RSTAR_BOUNDS[0]:g} to {RSTAR_BOUNDS[1]:g})"
        elif fit.boot is not None and len(fit.boot) > 1:
            share = float(_on_rstar_box(fit.boot[key].to_numpy()).mean())
            lo, hi = fit.interval(key, level)
            if share > AT_BOX_SHARE:
                why = f"{share:.0%} of the bootstrap refits end on the search box"
            elif not lo > 0 or hi / lo > RSTAR_MAX_FACTOR:
                why = f"its {level:.0%} interval [{lo:.3g}, {hi:.3g}] spans more than {RSTAR_MAX_FACTOR:g}x"
        out[key] = f"{why}; would pin it: {remedy[key]}" if why else ""
    return out


def repetition_cost(law: DataConstrainedLaw, N: float, unique: float, epochs: Sequence[float]) -> pd.DataFrame:
    """For N parameters on `unique` tokens seen e times: the fresh tokens they are worth and the loss cost.

    Columns: epochs, tokens (e U), effective_tokens (D'), worth (D' / D), loss_repeated (L(N, eU, U)),
    loss_fresh (L(N, eU, eU): as many tokens, all unique), excess (loss_repeated / loss_fresh - 1).
    """
    rows = []
    for e in epochs:
        D = e * unique
        d_eff = float(law.effective_tokens(D, unique))
        rep = float(law.predict(N, D, unique))
        fresh = float(law.predict(N, D, D))
        rows.append({"epochs": float(e), "tokens": D, "effective_tokens": d_eff, "worth": d_eff / D,
                     "loss_repeated": rep, "loss_fresh": fresh, "excess": rep / fresh - 1.0})
    return pd.DataFrame(rows)


def describe_cost(row: pd.Series | dict, unique: float) -> str:
    """One sentence: "4 epochs of 1M unique tokens ~ 3.6M fresh tokens: 1.2% higher loss than unique data"."""
    return (f"{row['epochs']:g} epochs of {_si(unique)} unique tokens ~ {_si(row['effective_tokens'])} fresh tokens: "
            f"{100 * row['excess']:.2g}% higher loss than {_si(row['tokens'])} unique tokens")


def _si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def allocate(law: DataConstrainedLaw, flops: float, unique: float, n_grid: int = 400
             ) -> dict[str, float]:
    """The compute-optimal split of C = 6 N D FLOPs when only `unique` tokens exist.

    Minimises L(N, C / 6N, min(U, D)) over N on a log grid spanning 1e-3x to 1e3x Chinchilla's N_opt(C),
    refined by a bounded scalar search around the best grid point (the datablations README searches a
    linear grid around Chinchilla's split instead; the minimum is the same to the grid's resolution).
    Returns n_params, tokens, epochs (D / U), loss, and the unlimited-data optimum (chinchilla_*) beside it.
    """
    n0, d0 = (float(x) for x in law.compute_optimal(flops))

    def loss_at(log_n: float) -> float:
        n = math.exp(log_n)
        d = flops / (6.0 * n)
        return float(law.predict(n, d, min(unique, d)))

    grid = np.linspace(math.log(n0) - math.log(1e3), math.log(n0) + math.log(1e3), n_grid)
    values = np.array([loss_at(g) for g in grid])
    i = int(np.argmin(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, n_grid - 1)]
    res = minimize_scalar(loss_at, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    log_n = float(res.x) if res.fun <= values[i] else float(grid[i])
    n = math.exp(log_n)
    d = flops / (6.0 * n)
    return {"flops": float(flops), "unique": float(unique), "n_params": n, "tokens": d, "epochs": d / unique,
            "loss": loss_at(log_n), "chinchilla_n_params": n0, "chinchilla_tokens": d0,
            "chinchilla_epochs": d0 / unique, "chinchilla_loss": float(law.predict(n0, d0, min(unique, d0)))}
