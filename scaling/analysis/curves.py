"""Schedule-aware loss-curve laws: the loss at every step of a run as a function of its LR schedule.

Two laws, fitted with SciPy (Huber on log residuals, multi-start) to the measured points of whole curves
(`method="luo2025"` instead runs Luo et al.'s released procedure, scaling.analysis.curves_adamw):

- the multi-power law (Luo et al. 2025, "A Multi-Power Law for Loss Curve Prediction Across Learning Rate
  Schedules", arXiv:2503.12811, eq. 4):
      L(t) = L0 + A (S1(t) + S_W)^(-alpha) - B sum_k (eta_{k-1} - eta_k) G(eta_k^(-gamma) S_k(t)),
      G(x) = 1 - (C x + 1)^(-beta),  S_k(t) = sum_{tau=k..t} eta_tau;
- Tissue et al. 2024, "Scaling Law with Learning Rate Annealing" (arXiv:2408.11029, eq. 1):
      L(s) = L0 + A S1^(-alpha) - C S2,  S2 = sum_{i<=s} m_i,  m_i = lambda m_{i-1} + (eta_{i-1} - eta_i),
  with the paper's decay factor lambda = 0.999 held fixed.

Conventions. A schedule is an array `lrs` whose entry i is the LR of optimizer step i + 1; a curve's loss at
step s is measured after s steps, so it depends on lrs[:s]. S1(s) + S_W is the whole area lrs[:s].sum()
(warmup included, as Luo et al.'s code computes it). LR changes during warmup (the steps before the LR first
reaches its maximum) enter the annealing sums only with `warmup_changes=True`, which is what Luo et al.'s
released code does (and `analysis/multi_power_law.py` uses to reproduce their table); the default leaves them
out, as both papers' formulas do.

Speed. The multi-power sum has one term per LR change before t: a cosine schedule of T steps measured at n
points costs O(n T) terms. Terms whose step k lies far before t vary slowly in k, so for each measured step the
changes are grouped into blocks whose width grows geometrically with the distance t - k (exact for the last
16 steps, then blocks of at most 5% of the distance), each block's summed change weighted at its
|change|-weighted centroid (exact for a block holding one jump). That is O(n log T) terms, built once per
curve, independent of the parameters; tests/test_curves.py checks it against the exact sum (relative error
of the annealing term below 1e-5). A 50,000-step cosine run measured at 500 points fits in about a second.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.optimize import least_squares
from scipy.signal import lfilter

from scaling.analysis._blas import _blas_single_thread
from scaling.analysis.curves_adamw import ANNEALING_START, adamw, warm_start
from scaling.analysis.lr_schedules import check_lrs
from scaling.errors import ConfigError, FitError

log = logging.getLogger("scaling.fit")

__all__ = [
    "LAWS",
    "LAW_PARAMS",
    "METHODS",
    "MIN_CURVE_POINTS",
    "Curve",
    "CurveFit",
    "fit_curves",
    "bootstrap_curves",
    "curve_metrics",
    "predict_curve",
]

LAWS = ("mpl", "tissue")
METHODS = ("converged", "luo2025")
"""fit_curves' procedures: "converged" (default) runs multi-start least squares to the objective's minimum;
"luo2025" (mpl only) is Luo et al.'s released procedure, a warm start then at most 200 AdamW steps with
weight decay (scaling.analysis.curves_adamw), which stops short of the minimum and reproduces their table."""
LAW_PARAMS: dict[str, tuple[str, ...]] = {
    "mpl": ("L0", "A", "alpha", "B", "C", "beta", "gamma"),
    "tissue": ("L0", "A", "alpha", "C"),
}
"""Parameter names per law, in report order (Luo et al.'s order for the multi-power law)."""

MIN_CURVE_POINTS = {"mpl": 10, "tissue": 6}
"""Fewest measured points (all curves together) a fit accepts: comfortably more than the parameters."""

TISSUE_DECAY = 0.999
"""Tissue et al. 2024's momentum decay factor lambda for S2 (their default, held fixed in the fit)."""

HUBER_DELTA = 1e-3
"""Huber threshold on log residuals (Luo et al.'s code, and Hoffmann et al. 2022's Approach 3)."""

_EXACT_OFFSETS = 16
_BLOCK_RATIO = 0.05
_MAX_FIT_POINTS = 2000
"""A curve with more measured points than this is thinned (evenly in step, last point kept) for the fit:
the precomputed blocks cost O(points x log T) memory, and more points of one smooth curve add no
information about the law (they are one run either way, which is what the bootstrap resamples)."""


# --------------------------------------------------------------------------------------------- curves

@dataclass(frozen=True, eq=False)
class Curve:
    """One run's loss curve: the LR of every optimizer step and the loss measured at some of them."""

    name: str
    lrs: np.ndarray
    """Entry i: the LR of optimizer step i + 1."""
    steps: np.ndarray
    """Measured steps (1-based, each <= len(lrs)): the loss after that many steps."""
    loss: np.ndarray
    group: str = ""
    """Bootstrap unit: curves sharing a group are resampled together (a WSD trunk and its branches);
    "" = the curve is its own unit."""

    @property
    def unit(self) -> str:
        return self.group or self.name


def _annealing_changes(lrs: np.ndarray, warmup_changes: bool) -> np.ndarray:
    """d[k-1] = eta_{k-1} - eta_k for steps k = 1..T (d[0] = 0); rises before the LR first reaches its
    maximum (warmup) are zeroed unless warmup_changes."""
    d = np.zeros(len(lrs))
    d[1:] = lrs[:-1] - lrs[1:]
    if not warmup_changes:
        d[: int(np.argmax(lrs)) + 1] = 0.0
    return d


def _block_edges(max_offset: int) -> np.ndarray:
    """Offsets o = t - k delimiting the blocks: 0, 1, ..., 16, then geometric (ratio 1.05), past max_offset."""
    edges = list(range(_EXACT_OFFSETS + 1))
    while edges[-1] <= max_offset:
        edges.append(max(edges[-1] + 1, int(math.ceil(edges[-1] * (1.0 + _BLOCK_RATIO)))))
    return np.asarray(edges, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class _Design:
    """The parameter-free arrays a law needs at the measured steps of one schedule."""

    s1: np.ndarray
    """(n,) the LR area lrs[:s].sum() at each measured step s."""
    drop: np.ndarray
    """(n, m) mpl: summed eta_{k-1} - eta_k of each block of steps k <= s."""
    eta: np.ndarray
    """(n, m) mpl: eta at each block's centroid."""
    area: np.ndarray
    """(n, m) mpl: S_k(s) = sum_{tau=k..s} eta_tau at each block's centroid."""
    s2: np.ndarray
    """(n,) tissue: S2 at each measured step."""


def _design(lrs: np.ndarray, steps: np.ndarray, law: str, warmup_changes: bool) -> _Design:
    steps = np.asarray(steps, dtype=np.int64)
    cum = np.concatenate([[0.0], np.cumsum(lrs)])  # cum[j] = S(j) = sum of the first j LRs
    s1 = cum[steps]
    d = _annealing_changes(lrs, warmup_changes)
    empty = np.zeros((len(steps), 0))
    if law == "tissue":
        momentum = lfilter([1.0], [1.0, -TISSUE_DECAY], d)
        s2 = np.cumsum(momentum)[steps - 1]
        return _Design(s1=s1, drop=empty, eta=empty, area=empty, s2=s2)
    k = np.arange(1, len(lrs) + 1, dtype=float)
    absd = np.abs(d)
    c_d = np.concatenate([[0.0], np.cumsum(d)])
    c_abs = np.concatenate([[0.0], np.cumsum(absd)])
    c_kabs = np.concatenate([[0.0], np.cumsum(k * absd)])
    # Blocks of measured step t: cut at the offsets t - k of _block_edges and wherever the LR has varied
    # by _BLOCK_RATIO in log since the last cut (a warmup from ~0 varies most), so that inside a block both
    # the distance to t and eta_k change by at most ~5%.
    t = steps[:, None]
    offsets = _block_edges(int(steps.max()))[1:]
    variation = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(np.log(np.maximum(lrs, 1e-30)))))])
    eta_cuts = np.flatnonzero(np.diff(np.floor(variation / _BLOCK_RATIO)) != 0) + 2  # first k of a piece
    cuts = np.concatenate([t - offsets[None, :] + 1, np.broadcast_to(eta_cuts, (len(steps), len(eta_cuts))),
                           np.ones((len(steps), 1), dtype=np.int64), t + 1], axis=1)
    cuts = np.sort(np.clip(cuts, 1, t + 1), axis=1)
    lo, hi = cuts[:, :-1], cuts[:, 1:] - 1             # block j holds steps lo..hi (empty when hi < lo)
    hi = np.maximum(hi, lo - 1)
    drop = c_d[hi] - c_d[lo - 1]
    weight = c_abs[hi] - c_abs[lo - 1]
    has = weight > 0
    centroid = np.where(has, (c_kabs[hi] - c_kabs[lo - 1]) / np.where(has, weight, 1.0), 1.0)
    # eta at the centroid, and S_k(t) = S(t) - S(k - 1), interpolated between whole steps.
    eta = np.interp(centroid, k, lrs)
    area = cum[steps][:, None] - np.interp(centroid - 1.0, np.arange(len(cum), dtype=float), cum)
    keep = has.any(axis=0)
    drop, eta, area = drop[:, keep], eta[:, keep], area[:, keep]
    eta = np.where(drop != 0, np.maximum(eta, 1e-300), 1.0)
    area = np.where(drop != 0, np.maximum(area, 0.0), 0.0)
    return _Design(s1=s1, drop=np.where(has[:, keep], drop, 0.0), eta=eta, area=area,
                   s2=np.zeros(len(steps)))


def _predict(law: str, p: np.ndarray, design: _Design) -> np.ndarray:
    if law == "tissue":
        L0, A, alpha, C = p
        return L0 + A * design.s1 ** (-alpha) - C * design.s2
    L0, A, alpha, B, C, beta, gamma = p
    x = design.eta ** (-gamma) * design.area
    g = 1.0 - (C * x + 1.0) ** (-beta)
    return L0 + A * design.s1 ** (-alpha) - B * (design.drop * g).sum(axis=1)


def _jacobian(law: str, p: np.ndarray, design: _Design) -> np.ndarray:
    """d prediction / d theta, theta = (L0, log A, alpha, [log B, log C, beta, gamma] | [C])."""
    if law == "tissue":
        L0, A, alpha, C = p
        power = A * design.s1 ** (-alpha)
        return np.stack([np.ones_like(power), power, -power * np.log(design.s1), -design.s2], axis=1)
    L0, A, alpha, B, C, beta, gamma = p
    power = A * design.s1 ** (-alpha)
    log_eta = np.log(design.eta)
    x = np.exp(-gamma * log_eta) * design.area
    u = C * x + 1.0
    u_beta = u ** (-beta)
    g = 1.0 - u_beta
    slope = design.drop * beta * u_beta / u * C * x  # drop * dG/d(log x) ... times d log x
    cols = [np.ones_like(power), power, -power * np.log(design.s1),
            -B * (design.drop * g).sum(axis=1),
            -B * slope.sum(axis=1),                                   # d/d log C
            -B * (design.drop * u_beta * np.log(u)).sum(axis=1),      # d/d beta
            B * (slope * log_eta).sum(axis=1)]                        # d/d gamma
    return np.stack(cols, axis=1)


_LOG_PARAMS = {"mpl": (1, 3, 4), "tissue": (1,)}
"""Parameters fitted on a log scale (positive amplitudes): A, B, C of mpl; A of tissue."""

_BOUNDS = {
    "mpl": ((0.0, -30.0, 0.0, -30.0, -30.0, 0.0, 0.0), (np.inf, 30.0, 5.0, 40.0, 40.0, 10.0, 3.0)),
    "tissue": ((0.0, -30.0, 0.0, -np.inf), (np.inf, 30.0, 5.0, np.inf)),
}


def _to_params(law: str, theta: np.ndarray) -> np.ndarray:
    p = np.array(theta, dtype=float)
    for i in _LOG_PARAMS[law]:
        p[i] = math.exp(theta[i])
    return p


def _to_theta(law: str, p: np.ndarray) -> np.ndarray:
    theta = np.array(p, dtype=float)
    for i in _LOG_PARAMS[law]:
        theta[i] = math.log(p[i])
    return theta


# --------------------------------------------------------------------------------------------- fit result

@dataclass(frozen=True, eq=False)
class CurveFit:
    """A fitted curve law. `predict(lrs, steps)` gives the loss at any step of any schedule."""

    law: str
    params_: dict[str, float]
    loss_: float
    """The summed Huber objective at the fitted parameters (luo2025: at the lowest point evaluated)."""
    n_points_: int
    runs_: tuple[str, ...]
    """The curves it was fitted to."""
    warmup_changes: bool = False
    delta: float = HUBER_DELTA
    method: str = "converged"
    """The fitting procedure (METHODS); bootstrap refits use the same."""
    bootstrap_: pd.DataFrame | None = field(default=None, repr=False)
    """One row of parameters per usable bootstrap refit (bootstrap_curves), else None."""
    n_degenerate_: int = 0
    """Bootstrap resamples excluded: fewer than two distinct units, no LR decay to pin the annealing term
    (mpl), or a refit that failed."""
    n_boot_: int = 0

    @property
    def theta(self) -> np.ndarray:
        return np.array([self.params_[n] for n in LAW_PARAMS[self.law]])

    def predict(self, lrs: Sequence[float] | np.ndarray, steps: Sequence[int] | np.ndarray | None = None
                ) -> np.ndarray:
        """Loss after each of `steps` (1-based; default every step) of the schedule `lrs`."""
        return predict_curve(self.law, self.theta, lrs, steps, self.warmup_changes)

    def predict_interval(self, lrs: Sequence[float] | np.ndarray, steps: Sequence[int] | np.ndarray,
                         level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """The bootstrap refits' percentile interval of the prediction (NaN without a bootstrap)."""
        steps = np.atleast_1d(np.asarray(steps, dtype=np.int64))
        if self.bootstrap_ is None or self.bootstrap_.empty:
            nan = np.full(len(steps), np.nan)
            return nan, nan
        lrs = check_lrs(lrs, "schedule")
        design = _design(lrs, steps, self.law, self.warmup_changes)
        preds = np.stack([_predict(self.law, row, design)
                          for row in self.bootstrap_[list(LAW_PARAMS[self.law])].to_numpy()])
        tail = (1.0 - level) / 2.0
        return np.quantile(preds, tail, axis=0), np.quantile(preds, 1.0 - tail, axis=0)

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float]:
        """Percentile interval of one parameter over the bootstrap refits (NaN without a bootstrap)."""
        if self.bootstrap_ is None or self.bootstrap_.empty:
            return math.nan, math.nan
        tail = (1.0 - level) / 2.0
        values = self.bootstrap_[name].to_numpy()
        return float(np.quantile(values, tail)), float(np.quantile(values, 1.0 - tail))


def predict_curve(law: str, params: Sequence[float] | np.ndarray, lrs: Sequence[float] | np.ndarray,
                  steps: Sequence[int] | np.ndarray | None = None, warmup_changes: bool = False
                  ) -> np.ndarray:
    """The law with `params` (LAW_PARAMS order) at `steps` (1-based; default all) of schedule `lrs`."""
    lrs = check_lrs(lrs, "schedule")
    steps = np.arange(1, len(lrs) + 1) if steps is None else np.atleast_1d(np.asarray(steps, dtype=np.int64))
    if steps.size and (steps.min() < 1 or steps.max() > len(lrs)):
        raise ConfigError(f"steps must lie in 1..{len(lrs)} (the schedule's length); got "
                          f"{int(steps.min())}..{int(steps.max())}")
    out = np.empty(len(steps))
    for start in range(0, len(steps), _MAX_FIT_POINTS):  # bounded memory for long step lists
        part = steps[start:start + _MAX_FIT_POINTS]
        out[start:start + len(part)] = _predict(law, np.asarray(params, dtype=float),
                                                _design(lrs, part, law, warmup_changes))
    return out


# --------------------------------------------------------------------------------------------- fitting

def _thin(steps: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(steps) <= _MAX_FIT_POINTS:
        return steps, loss
    idx = np.unique(np.linspace(0, len(steps) - 1, _MAX_FIT_POINTS).round().astype(int))
    return steps[idx], loss[idx]


def _check_curve(curve: Curve) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lrs = check_lrs(curve.lrs, f"run {curve.name}")
    steps = np.asarray(curve.steps, dtype=np.int64)
    loss = np.asarray(curve.loss, dtype=float)
    if steps.shape != loss.shape or steps.ndim != 1:
        raise FitError(f"run {curve.name}: steps and loss must be 1-d arrays of one length")
    ok = np.isfinite(loss) & (loss > 0)
    steps, loss = steps[ok], loss[ok]
    if steps.size and (steps.min() < 1 or steps.max() > len(lrs)):
        raise ConfigError(f"run {curve.name}: measured step {int(steps.max())} is past its schedule's "
                          f"{len(lrs)} steps")
    return lrs, steps, loss


@dataclass(frozen=True, eq=False)
class _Problem:
    law: str
    designs: tuple[_Design, ...]
    log_loss: tuple[np.ndarray, ...]
    min_loss: float
    eta_at: tuple[np.ndarray, ...]
    """The LR of each measured step (for the "luo2025" warm start)."""

    def residuals(self, theta: np.ndarray, weights: np.ndarray) -> np.ndarray:
        p = _to_params(self.law, theta)
        out = []
        for w, design, y in zip(weights, self.designs, self.log_loss):
            if w == 0:
                continue
            pred = _predict(self.law, p, design)
            out.append(math.sqrt(w) * (y - np.log(np.maximum(pred, 1e-12))))
        return np.concatenate(out)

    def jacobian(self, theta: np.ndarray, weights: np.ndarray) -> np.ndarray:
        p = _to_params(self.law, theta)
        out = []
        for w, design in zip(weights, self.designs):
            if w == 0:
                continue
            pred = np.maximum(_predict(self.law, p, design), 1e-12)
            out.append(-math.sqrt(w) * _jacobian(self.law, p, design) / pred[:, None])
        return np.concatenate(out)


def _problem(curves: Sequence[Curve], law: str, warmup_changes: bool) -> _Problem:
    designs, logs, lows, etas = [], [], [], []
    for curve in curves:
        lrs, steps, loss = _check_curve(curve)
        steps, loss = _thin(steps, loss)
        designs.append(_design(lrs, steps, law, warmup_changes))
        logs.append(np.log(loss))
        lows.append(loss.min() if loss.size else np.inf)
        etas.append(lrs[steps - 1])
    return _Problem(law=law, designs=tuple(designs), log_loss=tuple(logs), min_loss=float(min(lows)),
                    eta_at=tuple(etas))


def _linear_start(problem: _Problem, weights: np.ndarray, nonlinear: dict[str, float]
                  ) -> tuple[float, np.ndarray] | None:
    """Given the exponents (and C), the law is linear in L0, A and B (or C): solve those by least squares
    on the loss (weighted by 1/loss, close to the log residual), return (objective proxy, params)."""
    rows, targets = [], []
    for w, design, y in zip(weights, problem.designs, problem.log_loss):
        if w == 0:
            continue
        loss = np.exp(y)
        power = design.s1 ** (-nonlinear["alpha"])
        if problem.law == "tissue":
            third = -design.s2
        else:
            x = design.eta ** (-nonlinear["gamma"]) * design.area
            third = -(design.drop * (1.0 - (nonlinear["C"] * x + 1.0) ** (-nonlinear["beta"]))).sum(axis=1)
        scale = math.sqrt(w) / loss
        rows.append(np.stack([np.ones_like(power), power, third], axis=1) * scale[:, None])
        targets.append(loss * scale)
    X, yv = np.concatenate(rows), np.concatenate(targets)
    coef, *_ = np.linalg.lstsq(X, yv, rcond=None)
    L0, A, third = coef
    if not (A > 0 and L0 > 0) or (problem.law == "mpl" and third <= 0):
        return None
    if problem.law == "tissue":
        p = np.array([L0, A, nonlinear["alpha"], third])
    else:
        p = np.array([L0, A, nonlinear["alpha"], third, nonlinear["C"], nonlinear["beta"],
                      nonlinear["gamma"]])
    return float(((X @ coef - yv) ** 2).sum()), p


def _starts(problem: _Problem, weights: np.ndarray, keep: int) -> list[np.ndarray]:
    """The best `keep` of a grid over the nonlinear parameters, each with its linear ones solved."""
    grid: list[dict[str, float]] = []
    if problem.law == "tissue":
        grid = [{"alpha": a} for a in (0.1, 0.2, 0.35, 0.5, 0.7, 1.0)]
    else:
        for a in (0.2, 0.4, 0.6):
            for b in (0.3, 0.6, 1.0):
                for g in (0.3, 0.6, 0.9):
                    for c in (0.03, 0.3, 3.0, 30.0):
                        grid.append({"alpha": a, "beta": b, "gamma": g, "C": c})
    scored = [s for s in (_linear_start(problem, weights, g) for g in grid) if s is not None]
    scored.sort(key=lambda s: s[0])
    return [_to_theta(problem.law, p) for _, p in scored[:keep]]


def _solve(problem: _Problem, theta0: np.ndarray, weights: np.ndarray, delta: float
           ) -> tuple[np.ndarray, float] | None:
    lo, hi = (np.array(b, dtype=float) for b in _BOUNDS[problem.law])
    theta0 = np.clip(theta0, lo + 1e-9, hi - 1e-9)
    try:
        res = least_squares(problem.residuals, theta0, jac=problem.jacobian, args=(weights,),
                            bounds=(lo, hi), loss="huber", f_scale=delta, method="trf",
                            x_scale="jac", max_nfev=400, ftol=1e-12, xtol=1e-12, gtol=1e-12)
    except (ValueError, FloatingPointError, np.linalg.LinAlgError):
        return None
    if not np.all(np.isfinite(res.x)) or not np.isfinite(res.cost):
        return None
    # With loss="huber" and f_scale=delta, least_squares' cost is exactly sum Huber_delta(residual).
    return res.x, float(res.cost)


def _fit_theta(problem: _Problem, weights: np.ndarray, delta: float, n_starts: int,
               extra_start: np.ndarray | None = None) -> tuple[np.ndarray, float] | None:
    starts = _starts(problem, weights, n_starts)
    if extra_start is not None:
        starts.insert(0, extra_start)
    best = None
    with np.errstate(all="ignore"):
        for theta0 in starts:
            found = _solve(problem, theta0, weights, delta)
            if found is not None and (best is None or found[1] < best[1]):
                best = found
    return best


def _fit_luo(problem: _Problem, weights: np.ndarray, delta: float, peak: float
             ) -> tuple[np.ndarray, float] | None:
    """method="luo2025": Luo et al.'s warm start and AdamW stage (scaling.analysis.curves_adamw); returns
    (theta, objective) like _fit_theta."""
    used = [i for i, w in enumerate(weights) if w > 0]
    designs = [problem.designs[i] for i in used]
    logs = [problem.log_loss[i] for i in used]
    point_w = np.concatenate([np.full(len(problem.log_loss[i]), weights[i]) for i in used])
    log_cols = list(_LOG_PARAMS["mpl"])

    def residuals(p: np.ndarray) -> np.ndarray:
        return np.concatenate([y - np.log(np.maximum(_predict("mpl", p, d), 1e-10))
                               for d, y in zip(designs, logs)])

    def jacobian(p: np.ndarray) -> np.ndarray:  # d residual / d p (raw parameters)
        J = np.concatenate([-_jacobian("mpl", p, d) / np.maximum(_predict("mpl", p, d), 1e-10)[:, None]
                            for d in designs])
        J[:, log_cols] /= p[log_cols]           # _jacobian differentiates A, B, C on a log scale
        return J

    try:
        with np.errstate(all="ignore"):
            start = warm_start([problem.designs[i].s1 for i in used], [problem.eta_at[i] for i in used],
                               [np.exp(y) for y in logs], [weights[i] for i in used], peak, delta)
            p, f = adamw(residuals, jacobian, np.concatenate([start, ANNEALING_START]), point_w, delta)
    except (FloatingPointError, ValueError, np.linalg.LinAlgError):
        return None
    if not (np.all(np.isfinite(p)) and np.all(p[log_cols] > 0) and p[0] > 0):
        return None
    return _to_theta("mpl", p), f


def fit_curves(curves: Sequence[Curve], law: str = "mpl", *, warmup_changes: bool = False,
               delta: float = HUBER_DELTA, n_starts: int = 6, method: str = "converged") -> CurveFit:
    """Fit `law` to every measured point of `curves` (Huber(delta) on log residuals, summed over points).
    method="converged": `n_starts` least-squares runs from the best points of a grid over the nonlinear
    parameters, each with its linear parameters solved exactly. method="luo2025" (mpl only): Luo et al.'s
    released procedure, see METHODS."""
    if law not in LAWS:
        raise ConfigError(f"law {law!r}: must be one of {', '.join(LAWS)}")
    if method not in METHODS or (method == "luo2025" and law != "mpl"):
        raise ConfigError(f"method {method!r}: must be one of {', '.join(METHODS)} (luo2025 fits mpl only)")
    if not curves:
        raise FitError("no curves to fit")
    problem = _problem(curves, law, warmup_changes)
    n_points = sum(len(y) for y in problem.log_loss)
    if n_points < MIN_CURVE_POINTS[law]:
        raise FitError(f"{n_points} measured point(s) in run(s) {', '.join(c.name for c in curves)}: the "
                       f"{law} law needs at least {MIN_CURVE_POINTS[law]} to fit")
    weights = np.ones(len(curves))
    with _blas_single_thread():
        best = (_fit_luo(problem, weights, delta, _peak(curves)) if method == "luo2025" else
                _fit_theta(problem, weights, delta, n_starts))
    if best is None:
        raise FitError(f"the {law} law could not be fitted to run(s) {', '.join(c.name for c in curves)}")
    params = _to_params(law, best[0])
    return CurveFit(law=law, params_=dict(zip(LAW_PARAMS[law], map(float, params))), loss_=best[1],
                    n_points_=n_points, runs_=tuple(c.name for c in curves), warmup_changes=warmup_changes,
                    delta=delta, method=method)


def _peak(curves: Sequence[Curve]) -> float:
    return float(max(np.max(np.asarray(c.lrs, dtype=float)) for c in curves))


def _decays(curve: Curve, warmup_changes: bool) -> bool:
    lrs = np.asarray(curve.lrs, dtype=float)
    last = int(np.max(curve.steps)) if len(curve.steps) else 0
    return bool((_annealing_changes(lrs[:last], warmup_changes) > 0).any())


def bootstrap_curves(fit: CurveFit, curves: Sequence[Curve], n_boot: int = 200, seed: int = 0,
                     n_starts: int = 2) -> CurveFit:
    """Refit on `n_boot` resamples of whole units (a curve, or the curves sharing a `group`: a WSD trunk
    with its branches), drawn with replacement; never points of one curve, which are not independent.
    A resample is degenerate, excluded and counted in n_degenerate_, when it holds fewer than two distinct
    units (one schedule cannot separate the area term from the annealing term, and a sweep of one unit has
    no run-to-run spread to resample: all its draws are degenerate), none of its curves
    decays its LR (mpl: the annealing parameters are not identified), or its refit fails."""
    units = list(dict.fromkeys(c.unit for c in curves))
    index = {u: [i for i, c in enumerate(curves) if c.unit == u] for u in units}
    problem = _problem(curves, fit.law, fit.warmup_changes)
    rng = np.random.default_rng(seed)
    rows, degenerate = [], 0
    start = _to_theta(fit.law, fit.theta)
    with _blas_single_thread():
        for _ in range(n_boot):
            drawn = rng.integers(0, len(units), len(units))
            weights = np.zeros(len(curves))
            for u in drawn:
                weights[index[units[u]]] += 1.0
            distinct = len(set(drawn.tolist()))
            if (distinct < 2 or
                    (fit.law == "mpl" and not any(_decays(curves[i], fit.warmup_changes)
                                                  for i in np.flatnonzero(weights)))):
                degenerate += 1
                continue
            found = (_fit_luo(problem, weights, fit.delta, _peak(curves)) if fit.method == "luo2025" else
                     _fit_theta(problem, weights, fit.delta, n_starts, extra_start=start))
            if found is None:
                degenerate += 1
                continue
            rows.append(_to_params(fit.law, found[0]))
    table = pd.DataFrame(rows, columns=list(LAW_PARAMS[fit.law]))
    if degenerate:
        log.debug("curve bootstrap: %d of %d resamples degenerate, excluded", degenerate, n_boot)
    return replace(fit, bootstrap_=table, n_degenerate_=degenerate, n_boot_=n_boot)


def curve_metrics(observed: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """R2, MAE, RMSE, PredE (mean relative error) and WorstE (max relative error), as Luo et al. define them."""
    y = np.asarray(observed, dtype=float)
    p = np.asarray(predicted, dtype=float)
    err = np.abs(y - p)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {"R2": 1.0 - float(((y - p) ** 2).sum()) / ss_tot if ss_tot > 0 else math.nan,
            "MAE": float(err.mean()), "RMSE": float(np.sqrt((err ** 2).mean())),
            "PredE": float((err / y).mean()), "WorstE": float((err / y).max())}
