"""Sequential sweep design: which runs to train next so the interval on N_opt(C*) shrinks most per FLOP.

Pure and torch-free. The method, in three steps:

1. **Posterior.** The bootstrap ensemble of the Approach 3 fit (refits on resamples of the runs, as
   `scaling fit` draws them) stands in for the posterior of the law's parameters: the bootstrap
   distribution approximates a posterior under a non-informative prior (Efron 2012, "Bayesian inference
   and the parametric bootstrap", Ann. Appl. Stat. 6(4); Newton & Raftery 1994, the weighted likelihood
   bootstrap). With no runs yet, the ensemble is that of a pilot design simulated from a stated prior law
   (`prior_ensemble`), i.e. what the pilot is expected to teach.
2. **Expected shrink of the target's spread.** The target is q = ln N_opt(C*) (Hoffmann et al. 2022,
   eq. 4). A new run at (N, D) observes y = ln L(N, D) + noise. Under the linear-Gaussian (Bayes linear)
   update the posterior variance after observing a set S of runs is
       var(q | y_S) = var(q) - c_qS (C_SS + s^2 I)^-1 c_Sq,
   with the covariances taken over the ensemble members' predictions, as the ensemble Kalman filter does
   (Evensen 1994, J. Geophys. Res. 99(C5)); s is the runs' noise, the robust SD of the fit's log residuals.
   Minimising one scalar's posterior variance is Bayesian c-optimal design (Chaloner & Verdinelli 1995,
   "Bayesian experimental design: a review", Stat. Sci. 10(3)). The 95% interval's width in ln N is taken
   to scale with the SD: factor_after = factor_before ** (sd_after / sd_before).
3. **Greedy per FLOP within the budget.** Repeatedly take the candidate with the largest variance
   reduction per FLOP among those that still fit the budget, and update the covariances as if it had been
   observed (rank-one update). The variance reduction never decreases as runs are added; it is not
   submodular in general (Das & Kempe 2008, "Algorithms for subset selection in linear regression", STOC),
   so cost-weighted greedy is a heuristic here, the standard one for budgeted selection (Krause & Guestrin
   2005, "A note on the budgeted maximization of submodular functions", CMU-CALD-05-103).

Deterministic for a seed (the bootstrap's); the greedy step is plain linear algebra on an
(M+1) x (M+1) covariance of M candidates. benchmarks/bench_suggest.py measures the method on whole
simulated campaigns against a log-spaced grid and a centred IsoFLOP design of equal FLOPs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scaling.analysis.approach3 import PARAM_NAMES, ChinchillaLaw
from scaling.errors import FitError

__all__ = ["Candidate", "Ensemble", "Proposal", "fit_ensemble", "prior_ensemble", "suggest", "NOISE_FLOOR"]

NOISE_FLOOR = 2e-3
"""Smallest run-to-run noise (SD of ln L) assumed: a fit that happens to pass through every point (few
runs, 5 free parameters) would otherwise claim that one more run pins the law exactly."""
TRIM = 0.01
"""Members whose ln N_opt(C*) falls in the outer TRIM of either tail are left out of the covariances:
resamples of an unidentified law reach N_opt of 0 or infinity, and one such member would set the variance."""
LEVEL = 0.95


@dataclass(frozen=True)
class Candidate:
    """A run the sweep may train: its size, tokens, what it costs and a label (its shape)."""

    n_params: float
    n_tokens: float
    flops: float
    """What the run costs (the sweep's exact FLOP count; the budget is in the same units)."""
    label: str = ""


@dataclass(frozen=True)
class Ensemble:
    """Posterior members of the law (rows E, A, B, alpha, beta), the point fit and the runs' noise."""

    members: pd.DataFrame
    law: ChinchillaLaw
    noise: float
    """SD of ln L of one run around the law."""
    n_runs: int
    source: str
    """Where the ensemble came from (the runs fitted, or the prior and the simulated pilot)."""


def fit_ensemble(points: pd.DataFrame, n_boot: int = 200, seed: int = 0, source: str = "",
                 n_starts: int | None = 50) -> Ensemble:
    """Approach 3 fit of `points` (n_params, n_tokens, loss) and its bootstrap ensemble (step 1); `n_starts` as
    in ChinchillaLaw (the default is `scaling fit`'s)."""
    N, D, L = (points[c].to_numpy(float) for c in ("n_params", "n_tokens", "loss"))
    law = ChinchillaLaw(n_starts=n_starts).fit(N, D, L).bootstrap(N, D, L, n_boot=n_boot, seed=seed)
    resid = np.log(L) - np.log(law.predict(N, D))
    # MAD-based SD, inflated by the degrees of freedom the fit used (5 parameters on len(N) runs)
    mad = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
    noise = max(NOISE_FLOOR, mad * math.sqrt(len(N) / max(1, len(N) - 5)))
    return Ensemble(members=law.bootstrap_params_[list(PARAM_NAMES)].reset_index(drop=True), law=law,
                    noise=noise, n_runs=len(N), source=source or f"Approach 3 fit to {len(N)} runs")


def prior_ensemble(prior: ChinchillaLaw, design: pd.DataFrame, noise: float = 0.01, n_boot: int = 200,
                   seed: int = 0) -> Ensemble:
    """With no runs: the ensemble a pilot `design` (n_params, n_tokens) would give if the prior law held,
    with lognormal noise `noise` on each run (one simulated pilot, seeded)."""
    rng = np.random.default_rng(seed)
    N, D = design["n_params"].to_numpy(float), design["n_tokens"].to_numpy(float)
    loss = prior.predict(N, D) * np.exp(noise * rng.standard_normal(len(N)))
    ens = fit_ensemble(pd.DataFrame({"n_params": N, "n_tokens": D, "loss": loss}), n_boot=n_boot, seed=seed)
    return Ensemble(members=ens.members, law=ens.law, noise=max(noise, NOISE_FLOOR), n_runs=0,
                    source=f"prior law {prior!r}, pilot of {len(N)} runs simulated with noise {noise:g}")


@dataclass(frozen=True)
class Proposal:
    """The runs proposed, in the order picked, with the interval expected before and after them."""

    picks: tuple[Candidate, ...]
    target_flops: float
    budget: float
    n_opt: float
    """N_opt(C*) of the point fit."""
    lo: float
    hi: float
    """The current 95% bootstrap interval of N_opt(C*)."""
    factor_after: float
    """The interval's expected width (hi / lo) after the picks are trained."""
    gains: tuple[float, ...] = ()
    """Expected factor after each pick, in order."""
    n_candidates: int = 0
    source: str = ""
    noise: float = 0.0
    notes: tuple[str, ...] = field(default=())
    law: ChinchillaLaw | None = field(default=None, repr=False, compare=False)
    """The point fit (says where each pick sits relative to the compute-optimal frontier)."""

    @property
    def factor_before(self) -> float:
        return self.hi / self.lo if self.lo > 0 and math.isfinite(self.hi) else math.inf

    @property
    def flops(self) -> float:
        return float(sum(c.flops for c in self.picks))

    def describe(self) -> list[str]:
        """A few lines: the interval before and after, the FLOPs, and why these points."""
        lines = [f"posterior: bootstrap ensemble of {self.source}; run noise {self.noise:.3g} (SD of ln L)",
                 f"N_opt(C* = {self.target_flops:.3g} FLOPs, C = 6ND) = {self.n_opt:.3g}, 95% interval "
                 f"[{self.lo:.3g}, {self.hi:.3g}] ({self.factor_before:.3g}x wide) now"]
        if not self.picks:
            lines.append(f"no run proposed: none of {self.n_candidates} candidates fits the budget of "
                         f"{self.budget:.3g} FLOPs or narrows the interval")
            return lines + list(self.notes)
        lines.append(f"proposed {len(self.picks)} run(s), {self.flops:.3g} of {self.budget:.3g} FLOPs "
                     f"(picked from {self.n_candidates} candidates): expected interval {self.factor_after:.3g}x "
                     f"wide after them (from {self.factor_before:.3g}x)")
        lines.append("why: each pick is the candidate whose loss the ensemble members disagree on most in the "
                     "way that decides N_opt(C*), per FLOP (greedy, each pick counted as observed before the next)")
        for c, after in zip(self.picks, self.gains):
            C6 = 6.0 * c.n_params * c.n_tokens
            n_opt = self._n_opt_at(C6)
            # An unidentified law may put N_opt at 0 or infinity; the ratio is then not a number to print.
            ratio = f"{c.n_params / n_opt:.2g}" if 0 < n_opt < math.inf else f"undefined (N_opt = {n_opt:.3g})"
            lines.append(f"  {c.label or 'N'} N={c.n_params:.3g} D={c.n_tokens:.3g} ({c.n_tokens / c.n_params:.3g} "
                         f"tokens/param, 6ND={C6:.3g}, N/N_opt(6ND)={ratio}): {c.flops:.3g} FLOPs -> {after:.3g}x")
        return lines + list(self.notes)

    def _n_opt_at(self, C: float) -> float:
        return float(np.asarray(self.law.compute_optimal(C)[0])) if self.law is not None else math.nan


def _log_n_opt(members: pd.DataFrame, C: float) -> np.ndarray:
    E, A, B, alpha, beta = (members[c].to_numpy(float) for c in PARAM_NAMES)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        # Hoffmann et al. 2022, eq. 4: N_opt = G (C/6)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta))
        return (np.log(alpha * A / (beta * B)) + beta * math.log(C / 6.0)) / (alpha + beta)


def _log_loss(members: pd.DataFrame, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """ln L of every member (rows) at every candidate (columns)."""
    E, A, B, alpha, beta = (members[c].to_numpy(float)[:, None] for c in PARAM_NAMES)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.log(E + A / N[None, :] ** alpha + B / D[None, :] ** beta)


def suggest(ensemble: Ensemble, target_flops: float, budget: float, candidates: Sequence[Candidate],
            max_picks: int = 1000) -> Proposal:
    """The runs among `candidates` expected to shrink the 95% interval of N_opt(target_flops) most per FLOP,
    within `budget` FLOPs (module docstring: steps 2 and 3). Each candidate is picked at most once."""
    if not math.isfinite(target_flops) or target_flops <= 0:
        raise FitError(f"target FLOPs {target_flops!r}: must be a finite number > 0")
    q_all = _log_n_opt(ensemble.members, target_flops)
    N = np.array([c.n_params for c in candidates], float)
    D = np.array([c.n_tokens for c in candidates], float)
    cost = np.array([c.flops for c in candidates], float)
    Y = _log_loss(ensemble.members, N, D) if len(candidates) else np.zeros((len(q_all), 0))
    finite = np.isfinite(q_all) & np.isfinite(Y).all(axis=1)
    if finite.sum() < 10:
        raise FitError(f"only {int(finite.sum())} of {len(q_all)} bootstrap members give a finite N_opt(C*) and "
                       "losses at the candidates; the law is not fitted well enough to design from")
    n_opt = float(np.asarray(ensemble.law.compute_optimal(target_flops)[0]))
    lo, hi = np.exp(np.quantile(q_all[finite], [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))
    q_lo, q_hi = np.quantile(q_all[finite], [TRIM, 1 - TRIM])
    keep = finite & (q_all >= q_lo) & (q_all <= q_hi)
    Z = np.column_stack([q_all[keep], Y[keep]])  # (members, 1 + M)
    P = np.cov(Z, rowvar=False).reshape(1 + len(candidates), 1 + len(candidates))
    var0 = float(P[0, 0])
    s2 = ensemble.noise ** 2
    factor0 = hi / lo
    picks: list[int] = []
    gains: list[float] = []
    left = float(budget)
    taken = np.zeros(len(candidates), bool)
    while len(picks) < max_picks and var0 > 0:
        diag = np.diag(P)[1:]
        reduction = P[0, 1:] ** 2 / (diag + s2)
        ok = ~taken & (cost <= left) & (reduction > 1e-6 * var0)
        if not ok.any():
            break
        score = np.where(ok, reduction / cost, -np.inf)
        j = int(np.argmax(score))
        col = P[:, 1 + j].copy()
        P = P - np.outer(col, col) / (col[1 + j] + s2)  # observe candidate j: rank-one Bayes linear update
        taken[j] = True
        left -= cost[j]
        picks.append(j)
        gains.append(float(factor0 ** math.sqrt(max(P[0, 0], 0.0) / var0)))
    return Proposal(
        picks=tuple(candidates[j] for j in picks), target_flops=float(target_flops), budget=float(budget),
        n_opt=n_opt, lo=float(lo), hi=float(hi), factor_after=gains[-1] if gains else float(factor0),
        gains=tuple(gains), n_candidates=len(candidates), source=ensemble.source, noise=ensemble.noise,
        law=ensemble.law)
