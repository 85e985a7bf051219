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
   (Evensen 1994, J. Geophys. Res. 99(C5)); s is the runs' noise: a stated prior (1%) updated by the fit's
   residuals and by repeated runs (`estimate_noise`), so a small pilot cannot drive it to zero.
   Minimising one scalar's posterior variance is Bayesian c-optimal design (Chaloner & Verdinelli 1995,
   "Bayesian experimental design: a review", Stat. Sci. 10(3)). The 95% interval's width in ln N is taken
   to scale with the SD: factor_after = factor_before ** (sd_after / sd_before).
3. **Greedy per unit cost within the budget.** Repeatedly take the candidate with the largest variance
   reduction per unit cost (its FLOPs plus a per-run overhead) among those that still fit the budget, and update the covariances as if it had been
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

__all__ = ["Candidate", "Ensemble", "NoiseEstimate", "Proposal", "drop_existing", "estimate_noise", "fit_ensemble",
           "prior_ensemble", "suggest", "NOISE_PRIOR_SD", "NOISE_PRIOR_DOF"]

NOISE_PRIOR_SD = 0.01
"""Prior run-to-run noise, the SD of ln L of one run around the law: 1%, the residual SD of this repo's CPU
sweeps (1-3%, README) and of the simulated campaigns' noise. It is a prior, not a floor: the data update it."""
NOISE_PRIOR_DOF = 5
"""Its weight, in residual degrees of freedom: as much as a fit of 10 runs (5 parameters) would supply. A
9-run pilot has 4 residual degrees of freedom, so the prior and its residuals count about equally; a fit of 5
runs passes through every point and says nothing of the noise, and the prior alone speaks. Before this prior,
a MAD estimate with a floor of 0.002 sat at the floor in 7 of 8 simulated 9-run pilots whose true noise was 0.01,
and the promised interval came out about 1.4x too narrow (issue #29)."""
N_LAW_PARAMS = 5
SCORE_DIGITS = 3
"""Candidates are ranked on their score (variance reduction per unit cost) rounded to this many significant
digits, ties broken by lower cost, then smaller N, then fewer tokens: last-digit differences between machines'
floating point then do not reorder the picks."""
SAME_POINT = 0.05
"""A candidate within 5% of a measured point in both N and D is that point (a repeat)."""
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
    """The run's FLOPs (the sweep's exact count, or 6ND)."""
    label: str = ""
    overhead: float = 0.0
    """What a run costs beyond its FLOPs (start-up, scheduling, evaluation, a queue slot), in FLOP-equivalents:
    seconds of overhead x the machine's FLOP/s. Many tiny runs are worse than their FLOPs say."""

    @property
    def cost(self) -> float:
        """What picking this run spends of the budget: its FLOPs plus its overhead."""
        return self.flops + self.overhead


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
    noise_source: str = ""
    """Where `noise` came from (the prior, residuals, repeats), in words."""


@dataclass(frozen=True)
class NoiseEstimate:
    """The run-to-run noise (SD of ln L) as the prior updated by the data, and what went into it."""

    sd: float
    dof_residual: int
    dof_repeats: int
    prior_sd: float = NOISE_PRIOR_SD
    prior_dof: float = NOISE_PRIOR_DOF

    def describe(self) -> str:
        parts = [f"prior {self.prior_sd:g} ({self.prior_dof:g} degrees of freedom)"]
        if self.dof_residual:
            parts.append(f"{self.dof_residual} residual degrees of freedom of the fit")
        if self.dof_repeats:
            parts.append(f"{self.dof_repeats} from repeated runs of the same (N, D)")
        how = " updated by " + " and ".join(parts[1:]) if len(parts) > 1 else " alone (no data speak to it yet)"
        return f"run noise {self.sd:.3g} (SD of ln L): {parts[0]}{how}"


def estimate_noise(log_residuals: np.ndarray, repeats: pd.DataFrame | None = None,
                   prior_sd: float = NOISE_PRIOR_SD, prior_dof: float = NOISE_PRIOR_DOF) -> NoiseEstimate:
    """The noise as a scaled-inverse-chi-square posterior mean: (prior_dof * prior_sd^2 + SS) / (prior_dof + dof),
    SS and dof pooled from the fit's log residuals (len - 5 degrees of freedom: the law used 5) and, where
    `repeats` (rows n_params, n_tokens, loss, one per run) holds several runs of one (N, D), the spread of
    ln L within each such group (a seed's noise seen directly, with k - 1 degrees of freedom per group of k)."""
    r = np.asarray(log_residuals, float)
    r = r[np.isfinite(r)]
    dof_res = max(0, len(r) - N_LAW_PARAMS)
    ss = float(np.sum(r ** 2)) if dof_res else 0.0
    ss_rep, dof_rep = 0.0, 0
    if repeats is not None and len(repeats):
        logs = np.log(repeats["loss"].to_numpy(float))
        key = [np.round(np.log(repeats[c].to_numpy(float)), 2) for c in ("n_params", "n_tokens")]  # within 1%
        groups = pd.DataFrame({"n": key[0], "d": key[1]}).groupby(["n", "d"], sort=False).indices
        for idx in groups.values():
            if len(idx) > 1:
                ss_rep += float(np.sum((logs[idx] - logs[idx].mean()) ** 2))
                dof_rep += len(idx) - 1
    var = (prior_dof * prior_sd ** 2 + ss + ss_rep) / (prior_dof + dof_res + dof_rep)
    return NoiseEstimate(sd=math.sqrt(var), dof_residual=dof_res, dof_repeats=dof_rep, prior_sd=prior_sd,
                         prior_dof=prior_dof)


def drop_existing(candidates: Sequence[Candidate], points: pd.DataFrame, tol: float = SAME_POINT
                  ) -> tuple[list[Candidate], list[Candidate]]:
    """The candidates that are not a measured point of `points` (within `tol` in both N and D), and those that
    are (proposing them again would train a repeat)."""
    if not len(points):
        return list(candidates), []
    N = np.log(points["n_params"].to_numpy(float))
    D = np.log(points["n_tokens"].to_numpy(float))
    fresh, repeats = [], []
    for c in candidates:
        same = (np.abs(N - math.log(c.n_params)) < tol) & (np.abs(D - math.log(c.n_tokens)) < tol)
        (repeats if same.any() else fresh).append(c)
    return fresh, repeats


def fit_ensemble(points: pd.DataFrame, n_boot: int = 200, seed: int = 0, source: str = "",
                 n_starts: int | None = 50, repeats: pd.DataFrame | None = None) -> Ensemble:
    """Approach 3 fit of `points` (n_params, n_tokens, loss) and its bootstrap ensemble (step 1); `n_starts` as
    in ChinchillaLaw (the default is `scaling fit`'s). The noise is `estimate_noise` of the fit's residuals
    and of `repeats` (every run, before seeds were averaged into `points`), when given."""
    N, D, L = (points[c].to_numpy(float) for c in ("n_params", "n_tokens", "loss"))
    law = ChinchillaLaw(n_starts=n_starts).fit(N, D, L).bootstrap(N, D, L, n_boot=n_boot, seed=seed)
    noise = estimate_noise(np.log(L) - np.log(law.predict(N, D)), repeats)
    return Ensemble(members=law.bootstrap_params_[list(PARAM_NAMES)].reset_index(drop=True), law=law,
                    noise=noise.sd, n_runs=len(N), source=source or f"Approach 3 fit to {len(N)} runs",
                    noise_source=noise.describe())


def prior_ensemble(prior: ChinchillaLaw, design: pd.DataFrame, noise: float = 0.01, n_boot: int = 200,
                   seed: int = 0) -> Ensemble:
    """With no runs: the ensemble a pilot `design` (n_params, n_tokens) would give if the prior law held,
    with lognormal noise `noise` on each run (one simulated pilot, seeded)."""
    rng = np.random.default_rng(seed)
    N, D = design["n_params"].to_numpy(float), design["n_tokens"].to_numpy(float)
    loss = prior.predict(N, D) * np.exp(noise * rng.standard_normal(len(N)))
    ens = fit_ensemble(pd.DataFrame({"n_params": N, "n_tokens": D, "loss": loss}), n_boot=n_boot, seed=seed)
    return Ensemble(members=ens.members, law=ens.law, noise=noise, n_runs=0,
                    source=f"prior law {prior!r}, pilot of {len(N)} runs simulated with noise {noise:g}",
                    noise_source=f"run noise {noise:g} (SD of ln L): the noise the pilot was simulated with")


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
    noise_source: str = ""
    notes: tuple[str, ...] = field(default=())
    law: ChinchillaLaw | None = field(default=None, repr=False, compare=False)
    """The point fit (says where each pick sits relative to the compute-optimal frontier)."""

    @property
    def factor_before(self) -> float:
        return self.hi / self.lo if self.lo > 0 and math.isfinite(self.hi) else math.inf

    @property
    def flops(self) -> float:
        return float(sum(c.flops for c in self.picks))

    @property
    def cost(self) -> float:
        """FLOPs plus the picks' per-run overhead: what they spend of the budget."""
        return float(sum(c.cost for c in self.picks))

    def describe(self) -> list[str]:
        """A few lines: the interval before and after, the FLOPs, and why these points."""
        lines = [f"posterior: bootstrap ensemble of {self.source}",
                 self.noise_source or f"run noise {self.noise:.3g} (SD of ln L)",
                 f"N_opt(C* = {self.target_flops:.3g} FLOPs, C = 6ND) = {self.n_opt:.3g}, 95% interval "
                 f"[{self.lo:.3g}, {self.hi:.3g}] ({self.factor_before:.3g}x wide) now"]
        if not self.picks:
            lines.append(f"no run proposed: none of {self.n_candidates} candidates fits the budget of "
                         f"{self.budget:.3g} FLOPs or narrows the interval")
            return lines + list(self.notes)
        overhead = self.cost - self.flops
        spent = (f"{self.flops:.3g} FLOPs + {overhead:.3g} FLOP-equivalents of per-run overhead = {self.cost:.3g} of "
                 f"{self.budget:.3g}" if overhead > 0 else f"{self.flops:.3g} of {self.budget:.3g} FLOPs")
        lines.append(f"proposed {len(self.picks)} run(s), {spent} (picked from {self.n_candidates} candidates): "
                     f"expected interval {self.factor_after:.3g}x wide after them (from {self.factor_before:.3g}x)")
        lines.append("why: each pick is the candidate whose loss the ensemble members disagree on most in the "
                     "way that decides N_opt(C*), per unit cost (greedy, each pick counted as observed before the next)")
        for c, after in zip(self.picks, self.gains):
            C6 = 6.0 * c.n_params * c.n_tokens
            n_opt = self._n_opt_at(C6)
            # An unidentified law may put N_opt at 0 or infinity; the ratio is then not a number to print.
            ratio = f"{c.n_params / n_opt:.2g}" if 0 < n_opt < math.inf else f"undefined (N_opt = {n_opt:.3g})"
            lines.append(f"  {c.label + ' ' if c.label else ''}N={c.n_params:.3g} D={c.n_tokens:.3g} "
                         f"({c.n_tokens / c.n_params:.3g} tokens/param, 6ND={C6:.3g}, N/N_opt(6ND)={ratio}): "
                         f"{c.flops:.3g} FLOPs -> {after:.3g}x")
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
    cost = np.array([c.cost for c in candidates], float)
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
        score = np.where(ok, _round_significant(reduction / np.where(ok, cost, 1.0), SCORE_DIGITS), -np.inf)
        best = np.flatnonzero(score == score.max())
        j = int(min(best, key=lambda i: (cost[i], N[i], D[i])))  # ties: the cheapest, smallest, shortest
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
        noise_source=ensemble.noise_source, law=ensemble.law)


def _round_significant(x: np.ndarray, digits: int) -> np.ndarray:
    """`x` (> 0) rounded to `digits` significant digits."""
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(x))))
        return np.where(x > 0, np.round(x * scale) / scale, x)
