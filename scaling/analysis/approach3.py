"""Chinchilla's Approach 3: the parametric law L(N, D), its Huber objective, starts grid and bootstrap.

The law is L(N, D) = E + A / N^alpha + B / D^beta:
Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", arXiv 2203.15556, eq. 2 and App. D.2;
Besiroglu, Erdil, Barnett, You 2024, "Chinchilla Scaling: A replication attempt", arXiv 2404.10102.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from scaling.analysis._blas import _blas_single_thread
from scaling.analysis.points import Points, rows_for_fit
from scaling.errors import FitError
from scaling.results import PLAUSIBLE, write_json_atomic

log = logging.getLogger("scaling.fit")

__all__ = [
    "PARAM_NAMES",
    "MIN_POINTS_APPROACH3",
    "LawParams",
    "degenerate_reason",
    "hoffmann_grid",
    "ChinchillaLaw",
    "BOOT_E_FRACTIONS",
    "BOOT_OTHER_OPTIMA",
]

PARAM_NAMES: tuple[str, ...] = ("E", "A", "B", "alpha", "beta")
"""Names of the parameters of L(N, D) = E + A / N^alpha + B / D^beta, in report order."""

MIN_POINTS_APPROACH3 = 5
"""Approach 3 has 5 free parameters: it needs at least 5 done runs, 2 distinct N and 2 distinct D."""


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

    @property
    def degenerate(self) -> str:
        """Why the law has no compute-optimal split (eq. 4 divides by alpha, beta, A and B), or "" when it has one."""
        return degenerate_reason(self.A, self.B, self.alpha, self.beta, self.E)


def degenerate_reason(A: float, B: float, alpha: float, beta: float, E: float = 0.0) -> str:
    """"" for a law whose compute-optimal split exists, else which parameter makes it degenerate and what that
    means: alpha = 0 (or A = 0) is a loss that does not fall with N, beta = 0 (or B = 0) one that does not fall
    with D; eq. 4 would divide by zero."""
    values = {"E": E, "A": A, "B": B, "alpha": alpha, "beta": beta}
    for name, value in values.items():
        if not math.isfinite(value):
            return f"{name} = {value}"
    for name, var in (("alpha", "N"), ("A", "N"), ("beta", "D"), ("B", "D")):
        if values[name] <= 0:
            return f"{name} = {values[name]:.3g}: the loss does not fall with {var}"
    return ""


# The optimizer works on theta = (a, b, e, alpha, beta) with A, B, E = exp(a, b, e), as in
# Hoffmann et al. 2022 App. D.2. These helpers are the only place that packs/unpacks the vector.
_THETA_NAMES = ("a", "b", "e", "alpha", "beta")


def _theta_from_params(params: LawParams) -> np.ndarray:
    return np.array([math.log(params.A), math.log(params.B), math.log(params.E), params.alpha, params.beta])


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
    grid = [(a, b, e, alpha, beta) for a, b, e, alpha, beta in itertools.product(abs_, abs_, es, exps, exps)]
    return np.array(grid, dtype=float)


def huber(r: np.ndarray, delta: float) -> np.ndarray:
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
        out[start:start + chunk] = huber(log_l - pred, delta).sum(axis=1)
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


_BOX_EPS = 1e-6
"""A coordinate of theta within this of a bound of _THETA_BOUNDS counts as on the search box."""


def _on_box(theta: np.ndarray) -> np.ndarray:
    """Which coordinates of theta (shape (..., 5)) sit on the search box: within _BOX_EPS of a bound of
    _THETA_BOUNDS, or past it (log E = -inf when a bootstrap refit's E underflowed to 0)."""
    lo, hi = np.array(_THETA_BOUNDS).T
    theta = np.asarray(theta, dtype=float)
    return (theta <= lo + _BOX_EPS) | (theta >= hi - _BOX_EPS)


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
        if self.params_.degenerate:
            raise FitError(f"Approach 3's best fit is degenerate ({self.params_.degenerate}), so the law has no "
                           "compute-optimal allocation; add model sizes and token budgets over wider ranges")
        self.loss_ = best[0]
        self.converged_ = True
        self.n_points_ = len(N)
        flops = 6.0 * N * D  # C = 6ND, the units compute_optimal reads (scaling.analysis.extrapolation)
        self.data_flops_ = (float(flops.min()), float(flops.max()))
        log.debug("ChinchillaLaw fit: %s (objective %.6g, %d/%d starts converged)",
                  self.params_, self.loss_, len(optima), len(grid))
        return self

    def fit_frame(self, frame: pd.DataFrame | Points) -> ChinchillaLaw:
        """Fit to the done runs of a points frame (a `Points`: its rows as they are); excluded runs go to
        `diagnostics_`."""
        done, diagnostics = rows_for_fit(frame)
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
        converge from no start are dropped and counted in `n_boot_failed_`; refits that land on a degenerate
        law (alpha, beta, A or B = 0: no compute-optimal split, `LawParams.degenerate`) are left out of
        `bootstrap_params_` (so out of every interval and band), kept in `bootstrap_degenerate_` and counted in
        `n_boot_degenerate_`.
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
        converged = {i: r for i, r in enumerate(rows) if r is not None}
        self.n_boot_failed_ = len(rows) - len(converged)
        if not converged:
            raise FitError(f"no bootstrap refit converged ({n_boot} resamples)")
        if self.n_boot_failed_:
            log.debug("%d of %d bootstrap refits did not converge; dropped",  # a report's diagnostic says it
                        self.n_boot_failed_, n_boot)
        ok = {i: r for i, r in converged.items() if not r.degenerate}
        degenerate = {i: r for i, r in converged.items() if r.degenerate}
        self.n_boot_degenerate_ = len(degenerate)
        self.bootstrap_degenerate_ = _params_table(degenerate)
        example = next(iter(degenerate.values())).degenerate if degenerate else ""
        if degenerate:
            log.debug("%d of %d bootstrap refits landed on a degenerate law (e.g. %s); left out",
                        len(degenerate), n_boot, example)
        if not ok:
            raise FitError(f"every converged bootstrap refit ({len(converged)} of {n_boot}) landed on a degenerate "
                           f"law (e.g. {example}): the resamples do not pin a compute-optimal split; add model "
                           "sizes and token budgets over wider ranges")
        table = _params_table(ok)
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
        doubtful = self.E_ < 0.5 * min_loss or bool(_on_box(self.theta_).any())
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
        p = self.params_
        return compute_optimal_sizes(p.A, p.B, p.alpha, p.beta, C)

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
        A, B, alpha, beta = (samples[name].to_numpy(float)[:, None] for name in ("A", "B", "alpha", "beta"))
        n_all, d_all = compute_optimal_sizes(A, B, alpha, beta, C.reshape(1, -1))  # (resamples, budgets)
        q = [(1 - level) / 2, (1 + level) / 2]
        with np.errstate(invalid="ignore"):  # resamples of an unidentified law may give 0 / inf sizes
            n_lo, n_hi = (x.reshape(C.shape) for x in np.quantile(n_all, q, axis=0))
            d_lo, d_hi = (x.reshape(C.shape) for x in np.quantile(d_all, q, axis=0))
        return {"n_opt_lo": n_lo, "n_opt_hi": n_hi, "d_opt_lo": d_lo, "d_opt_hi": d_hi}

    def _bootstrap_table(self) -> pd.DataFrame:
        if not hasattr(self, "bootstrap_params_"):
            raise FitError("no bootstrap samples: call bootstrap(N, D, L) first")
        return self.bootstrap_params_

    # ---- saving and loading ----
    def to_dict(self) -> dict[str, Any]:
        """The fitted law as plain JSON data: settings, parameters, the optimizer's theta and, after a
        bootstrap, every resample's parameters; `from_dict` gives back a law that predicts, reports
        intervals and identification exactly as this one."""
        self._check_fitted()
        out: dict[str, Any] = {
            "law": "chinchilla", "delta": float(self.delta), "n_starts": self.n_starts,
            "params": {k: float(v) for k, v in self.params_.to_dict().items()},
            "objective": float(self.loss_), "n_points": int(self.n_points_),
            "theta": [float(x) for x in getattr(self, "theta_", _theta_from_params(self.params_))]}
        boot = getattr(self, "bootstrap_params_", None)
        if boot is not None:
            out["bootstrap"] = {"resample": [int(i) for i in boot.index],
                                **{name: [float(x) for x in boot[name]] for name in PARAM_NAMES}}
            out["n_boot_failed"] = int(getattr(self, "n_boot_failed_", 0))
        if hasattr(self, "data_flops_"):  # the fitted range, so a reloaded law still flags extrapolation
            out["data_flops"] = [float(x) for x in self.data_flops_]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChinchillaLaw:
        """A law saved by `to_dict`; FitError naming the key when the data are not one."""
        try:
            if not isinstance(data, Mapping) or data.get("law") != "chinchilla":
                raise KeyError("law")
            law = cls(delta=float(data["delta"]), n_starts=data["n_starts"])
            law._set_params(LawParams(**{k: float(data["params"][k]) for k in PARAM_NAMES}))
            law.theta_ = np.asarray(data["theta"], dtype=float)
            law.loss_, law.n_points_, law.converged_ = float(data["objective"]), int(data["n_points"]), True
            if "data_flops" in data:
                law.data_flops_ = tuple(float(x) for x in data["data_flops"])
            boot = data.get("bootstrap")
            if boot is not None:
                table = pd.DataFrame({k: np.asarray(boot[k], dtype=float) for k in PARAM_NAMES},
                                     index=pd.Index([int(i) for i in boot["resample"]], name="resample"))
                table["a"] = table["beta"] / (table["alpha"] + table["beta"])
                table["b"] = table["alpha"] / (table["alpha"] + table["beta"])
                law.bootstrap_params_ = table
                law.n_boot_failed_ = int(data.get("n_boot_failed", 0))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FitError(f"not a saved ChinchillaLaw (key {exc}); write one with law.save(path)") from None
        return law

    def save(self, path: str | Path) -> Path:
        """Write `to_dict` as JSON to `path` (atomically; the mode a plain open() gives); returns the path."""
        write_json_atomic(Path(path), self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> ChinchillaLaw:
        """A law written by `save` (or the "law" entry of a fit.json's approach3)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise FitError(f"{path}: cannot read a saved law: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("approach3"), dict) and "law" in data["approach3"]:
            data = data["approach3"]["law"]  # a fit.json
        try:
            return cls.from_dict(data)
        except FitError as exc:
            raise FitError(f"{path}: {exc}") from None

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return f"ChinchillaLaw(delta={self.delta}, n_starts={self.n_starts})"
        p = self.params_
        return f"ChinchillaLaw(E={p.E:.6g}, A={p.A:.6g}, B={p.B:.6g}, alpha={p.alpha:.6g}, beta={p.beta:.6g})"


def _params_table(params: dict[int, LawParams]) -> pd.DataFrame:
    """Bootstrap refits as a table indexed by resample number: two laws bootstrapped with one seed on points in
    the same order drew the same resamples, so rows with equal index pair up (paired differences,
    benchmarks/bench_wsd.py)."""
    return pd.DataFrame([p.to_dict() for p in params.values()], columns=list(PARAM_NAMES),
                        index=pd.Index(list(params), name="resample"))


def compute_optimal_sizes(A: Any, B: Any, alpha: Any, beta: Any, C: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt) minimising E + A/N^alpha + B/D^beta subject to C = 6ND (Hoffmann et al. 2022, eq. 4),
    broadcast over parameter arrays (bootstrap members) and budgets alike.

    N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b, G = (alpha A / (beta B))^(1 / (alpha + beta)), a = beta/(alpha+beta),
    b = alpha/(alpha+beta). An unidentified fit (A or B underflowed to 0, flagged by `identification`) gives
    G = 0 or inf and so N_opt, D_opt of 0 or inf: honest values, without numpy's divide-by-zero warnings on
    stderr. As numpy values, a degenerate law (which `fit` and `bootstrap` keep out) gives 0, inf or NaN, never
    a ZeroDivisionError."""
    A, B, alpha, beta, C = (np.asarray(v, dtype=np.float64) for v in (A, B, alpha, beta, C))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        return G * (C / 6.0) ** (beta / (alpha + beta)), (C / 6.0) ** (alpha / (alpha + beta)) / G


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

