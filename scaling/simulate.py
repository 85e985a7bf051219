"""Simulated sweeps from a known law: how often do a design's intervals cover the truth? Pure and torch-free.

A 95% interval is a claim about repeated experiments: over many sweeps of one design, it should contain the
true value about 95% of the time. That can be checked only where the truth is known, so `coverage` draws
whole datasets from a known L(N, D) with multiplicative noise on the design's (N, D) points, fits each one
exactly as `scaling fit` does (Approach 3 from Hoffmann's start grid, bootstrap over runs), and counts how
often each interval contains the true value. benchmarks/bench_coverage.py prints the table for a
Chinchilla-like grid and a tiny-like design; tests/test_coverage.py runs a smaller version.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from scaling.errors import FitError
from scaling.analysis import ChinchillaLaw, identification, optimum_at

COVERED_QUANTITIES = ("alpha", "beta", "E", "a", "n_opt")
"""What `coverage` checks: the exponents, the floor, N_opt's exponent a and N_opt at one stated budget."""


def grid_design(n_params: Sequence[float], n_tokens: Sequence[float]) -> pd.DataFrame:
    """Every (N, D) pair of the given sizes and token budgets, with C = 6 N D."""
    N, D = (x.ravel() for x in np.meshgrid(np.asarray(n_params, float), np.asarray(n_tokens, float)))
    return pd.DataFrame({"n_params": N, "n_tokens": D, "flops": 6.0 * N * D})


def simulate(law: ChinchillaLaw, design: pd.DataFrame, noise: float, rng: np.random.Generator
             ) -> pd.DataFrame:
    """The design's points with loss = law(N, D) * exp(noise * standard normal) (lognormal noise)."""
    loss = law.predict(design["n_params"].to_numpy(), design["n_tokens"].to_numpy())
    out = design.copy()
    out["loss"] = loss * np.exp(noise * rng.standard_normal(len(design)))
    out["run_id"] = [f"sim{i}" for i in range(len(design))]
    return out


@dataclass(frozen=True)
class CoverageResult:
    """Per-dataset intervals and the coverage summary of one design."""

    intervals: pd.DataFrame
    """One row per (dataset, quantity): lo, hi, truth, covered, identified (the report's verdict)."""
    level: float
    flops: float
    """The budget N_opt is checked at."""

    def summary(self) -> pd.DataFrame:
        """Per quantity: datasets, covered, coverage with its Clopper-Pearson 95% interval, median
        interval factor (hi/lo) and the share the report called not identified."""
        rows = []
        for name in COVERED_QUANTITIES:
            part = self.intervals[self.intervals["quantity"] == name]
            if part.empty:
                continue
            k, n = int(part["covered"].sum()), len(part)
            ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = (part["hi"] / part["lo"]).where(part["lo"] > 0, np.inf)
            rows.append({"quantity": name, "datasets": n, "covered": k, "coverage": k / n,
                         "ci_lo": ci.low, "ci_hi": ci.high, "median_factor": float(np.median(factor)),
                         "not_identified": float(1.0 - part["identified"].mean())})
        return pd.DataFrame(rows)


def coverage(law: ChinchillaLaw, design: pd.DataFrame, n_datasets: int = 50, noise: float = 0.01,
             n_boot: int = 200, level: float = 0.95, flops: float | None = None, seed: int = 0
             ) -> CoverageResult:
    """Fit `n_datasets` simulated sweeps of `design` from the true `law`; record each interval.

    `flops` is the budget at which N_opt's interval is checked (default: the design's largest compute).
    A dataset whose fit fails is recorded as not covering (an honest tool would have said "cannot fit",
    but a user reading this table wants to know how often that happens).
    """
    truth_p = law.params_
    flops = float(design["flops"].max()) if flops is None else float(flops)
    truth = {"alpha": truth_p.alpha, "beta": truth_p.beta, "E": truth_p.E, "a": truth_p.a,
             "n_opt": float(np.asarray(law.compute_optimal(flops)[0]))}
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_datasets):
        data = simulate(law, design, noise, rng)
        N, D, L = data["n_params"], data["n_tokens"], data["loss"]
        try:
            fitted = ChinchillaLaw().fit(N, D, L).bootstrap(N, D, L, n_boot=n_boot, seed=i)
        except FitError:
            rows += [{"dataset": i, "quantity": q, "lo": math.nan, "hi": math.nan, "truth": truth[q],
                      "covered": False, "identified": False} for q in COVERED_QUANTITIES]
            continue
        verdict = identification(fitted, data, level)
        optimum = optimum_at(fitted, flops, level)
        verdict["n_opt"] = "" if optimum["identified"] else "band too wide"
        bounds = {q: fitted.interval(q, level) for q in ("alpha", "beta", "E", "a")}
        bounds["n_opt"] = (float(optimum["n_opt_lo"]), float(optimum["n_opt_hi"]))
        for q in COVERED_QUANTITIES:
            lo, hi = bounds[q]
            identified = not verdict[q]
            rows.append({"dataset": i, "quantity": q, "lo": lo, "hi": hi, "truth": truth[q],
                         "covered": bool(lo <= truth[q] <= hi), "identified": identified})
    return CoverageResult(intervals=pd.DataFrame(rows), level=level, flops=flops)


# ---- whole design campaigns: sequential suggestion vs fixed designs of equal FLOPs (benchmarks/bench_suggest.py)

@dataclass(frozen=True)
class CampaignSetting:
    """One simulated campaign: the true law, the pilot, the sizes and tokens allowed, C* and the FLOPs to spend."""

    name: str
    law: ChinchillaLaw
    target_flops: float
    pilot: pd.DataFrame
    """The pilot runs every design starts from (n_params, n_tokens, flops)."""
    n_params: tuple[float, ...]
    n_tokens: tuple[float, ...]
    """The sizes and token counts a design may use (candidates: every pair)."""
    extra_flops: float
    """FLOPs each design spends after the pilot."""
    rounds: int = 3
    noise: float = 0.01


def log_grid_design(n_lo: float, d_lo: float, flops: float, k: int = 4) -> pd.DataFrame:
    """A k x k grid, log-spaced, from (n_lo, d_lo) up by a common factor chosen so that its runs cost
    `flops` (C = 6ND) in all."""
    def cost(span: float) -> float:
        N, D = np.geomspace(n_lo, n_lo * span, k), np.geomspace(d_lo, d_lo * span, k)
        return 6.0 * N.sum() * D.sum()
    lo, hi = 1.0, 1e6
    for _ in range(200):  # bisection in log(span)
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if cost(mid) < flops else (lo, mid)
    return grid_design(np.geomspace(n_lo, n_lo * lo, k), np.geomspace(d_lo, d_lo * lo, k))


def isoflop_design(centre: ChinchillaLaw, flops: float, n_budgets: int = 3, n_sizes: int = 5,
                   ratio: float = 4.0, window: float = 16.0) -> pd.DataFrame:
    """IsoFLOP budgets `ratio` apart, the largest such that the design costs `flops` in all, with n_sizes sizes
    log-spaced over `window` centred on `centre`'s N_opt(C) at each budget, D = C / (6N)."""
    top = flops / (n_sizes * sum(ratio ** -i for i in range(n_budgets)))
    rows = []
    for i in range(n_budgets):
        C = top / ratio ** i
        n_opt = float(np.asarray(centre.compute_optimal(C)[0]))
        for N in n_opt * np.geomspace(window ** -0.5, window ** 0.5, n_sizes):
            rows.append({"n_params": N, "n_tokens": C / (6.0 * N), "flops": C})
    return pd.DataFrame(rows)


def _interval(points: pd.DataFrame, target: float, n_boot: int, seed: int, n_starts: int | None = 50
              ) -> tuple[float, float, float]:
    """(N_opt, lo, hi) of the 95% bootstrap interval of N_opt(target), as `scaling fit` reports it."""
    N, D, L = points["n_params"], points["n_tokens"], points["loss"]
    law = ChinchillaLaw(n_starts=n_starts).fit(N, D, L).bootstrap(N, D, L, n_boot=n_boot, seed=seed)
    band = law.compute_optimal_interval(target)
    return float(np.asarray(law.compute_optimal(target)[0])), float(band["n_opt_lo"]), float(band["n_opt_hi"])


def campaign(setting: CampaignSetting, seed: int, n_boot: int = 100, n_boot_suggest: int = 50,
             n_starts: int | None = 50) -> list[dict[str, object]]:
    """One campaign per design from the same pilot: "suggest" alternates suggest -> train (sample the law) ->
    fit for `rounds` rounds of extra_flops / rounds each; "grid" and "isoflop" spend extra_flops at once (the
    IsoFLOP windows centred on the pilot's fit, as [grid.prior] pilot does). One row per design. Every fit starts
    from the best `n_starts` of Hoffmann's grid (50 = `scaling fit`; fewer makes a short test)."""
    from scaling.analysis.suggest import Candidate, fit_ensemble, suggest

    rng = np.random.default_rng(seed)
    truth = float(np.asarray(setting.law.compute_optimal(setting.target_flops)[0]))
    pilot = simulate(setting.law, setting.pilot, setting.noise, rng)
    cands = [Candidate(n_params=N, n_tokens=D, flops=6.0 * N * D)
             for N in setting.n_params for D in setting.n_tokens]
    designs: dict[str, pd.DataFrame] = {}
    runs = pilot
    for r in range(setting.rounds):
        ens = fit_ensemble(runs, n_boot=n_boot_suggest, seed=seed * 100 + r, n_starts=n_starts)
        have = set(zip(runs["n_params"].round(6), runs["n_tokens"].round(6)))
        free = [c for c in cands if (round(c.n_params, 6), round(c.n_tokens, 6)) not in have]
        proposal = suggest(ens, setting.target_flops, setting.extra_flops / setting.rounds, free)
        if not proposal.picks:
            break
        new = pd.DataFrame([{"n_params": c.n_params, "n_tokens": c.n_tokens, "flops": c.flops}
                            for c in proposal.picks])
        runs = pd.concat([runs, simulate(setting.law, new, setting.noise, rng)], ignore_index=True)
    designs["suggest"] = runs
    pilot_law = ChinchillaLaw(n_starts=n_starts).fit(pilot["n_params"], pilot["n_tokens"], pilot["loss"])
    for name, extra in (("grid", log_grid_design(min(setting.n_params), min(setting.n_tokens),
                                                 setting.extra_flops)),
                        ("isoflop", isoflop_design(pilot_law, setting.extra_flops))):
        designs[name] = pd.concat([pilot, simulate(setting.law, extra, setting.noise, rng)], ignore_index=True)
    rows = []
    for name, data in designs.items():
        spent = float((6.0 * data["n_params"] * data["n_tokens"]).sum())
        try:
            n_opt, lo, hi = _interval(data, setting.target_flops, n_boot, seed, n_starts)
        except FitError:
            n_opt, lo, hi = math.nan, math.nan, math.nan
        rows.append({"setting": setting.name, "campaign": seed, "design": name, "runs": len(data),
                     "flops": spent, "n_opt": n_opt, "lo": lo, "hi": hi, "truth": truth,
                     "factor": hi / lo if lo > 0 else math.inf,
                     "error": abs(math.log(n_opt / truth)) if n_opt > 0 else math.inf,
                     "covered": bool(lo <= truth <= hi)})
    return rows


def promise(setting: CampaignSetting, seed: int, n_boot: int = 100, n_starts: int | None = 5,
            overhead: float = 0.0, noise: float | None = None, charge_overhead: bool = True) -> dict[str, object]:
    """One round of `scaling suggest` from the setting's pilot, played against the true law: the interval width
    (hi/lo of N_opt(C*)) the proposal promised, and the width the refit on pilot + picks delivered. `overhead`:
    each run's per-run overhead in FLOP-equivalents; `noise`: the true noise (default the setting's).

    The round's budget is wall time, in FLOP-equivalents (FLOPs + overhead per run). With `charge_overhead`
    False the design ignores the overhead (candidates costed at their FLOPs alone, as before --run-overhead)
    and its picks are trained in order until that wall time runs out: the same wall time, spent blind to the
    overhead."""
    from scaling.analysis.suggest import Candidate, drop_existing, fit_ensemble, suggest

    rng = np.random.default_rng(seed)
    noise = setting.noise if noise is None else noise
    pilot = simulate(setting.law, setting.pilot, noise, rng)
    charged = overhead if charge_overhead else 0.0
    cands = [Candidate(n_params=N, n_tokens=D, flops=6.0 * N * D, overhead=charged)
             for N in setting.n_params for D in setting.n_tokens]
    cands, _ = drop_existing(cands, pilot)
    ens = fit_ensemble(pilot, n_boot=n_boot, seed=seed, n_starts=n_starts)
    wall = setting.extra_flops / setting.rounds
    proposal = suggest(ens, setting.target_flops, wall, cands)
    picks, gains = list(proposal.picks), list(proposal.gains)
    if not charge_overhead:  # train the picks in order while the wall time lasts
        spent = np.cumsum([c.flops + overhead for c in picks])
        picks, gains = picks[:int((spent <= wall).sum())], gains[:int((spent <= wall).sum())]
    promised = gains[-1] if gains else proposal.factor_before
    new = pd.DataFrame([{"n_params": c.n_params, "n_tokens": c.n_tokens, "flops": c.flops} for c in picks])
    runs = pd.concat([pilot, simulate(setting.law, new, noise, rng)], ignore_index=True) if len(new) else pilot
    try:
        _, lo, hi = _interval(runs, setting.target_flops, n_boot, seed + 1, n_starts)
        delivered = hi / lo if lo > 0 else math.inf
    except FitError:
        delivered = math.nan
    flops = float(sum(c.flops for c in picks))
    return {"setting": setting.name, "campaign": seed, "true_noise": noise, "noise": ens.noise,
            "overhead": overhead, "charged": charge_overhead, "runs": len(picks), "flops": flops,
            "cost": flops + overhead * len(picks),
            "median_run_flops": float(np.median([c.flops for c in picks])) if picks else math.nan,
            "before": proposal.factor_before, "promised": promised, "delivered": delivered,
            "ratio": math.log(delivered) / math.log(promised) if promised > 1 else math.nan}


def campaign_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, design): campaigns, median FLOPs, median interval factor (hi/lo), median error factor
    exp|ln(N_opt / truth)|, and coverage of the truth."""
    out = rows.groupby(["setting", "design"], sort=False).agg(
        campaigns=("campaign", "count"), runs=("runs", "median"), flops=("flops", "median"),
        median_factor=("factor", "median"), median_error=("error", "median"), coverage=("covered", "mean"))
    out["median_error"] = np.exp(out["median_error"])
    return out.reset_index()


SUGGEST_LAWS = {
    "chinchilla": ChinchillaLaw.from_params(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
    "besiroglu": ChinchillaLaw.from_params(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658),
}
"""The laws benchmarks/bench_suggest.py plays campaigns against: Hoffmann et al. 2022's printed Approach 3
(Chinchilla-like) and Besiroglu et al. 2024's refit."""


def suggest_setting(name: str, rounds: int = 2) -> CampaignSetting:
    """benchmarks/bench_suggest.py's campaign against SUGGEST_LAWS[name] (its docstring says why these numbers):
    a 9-run pilot at 3e7..3e8 parameters, 1e21 FLOPs to spend after it, C* = 1e21."""
    return CampaignSetting(name=name, law=SUGGEST_LAWS[name], target_flops=1e21,
                           pilot=grid_design([3e7, 1e8, 3e8], [1e9, 3e9, 1e10]),
                           n_params=tuple(np.geomspace(3e7, 1e10, 11)), n_tokens=tuple(np.geomspace(1e9, 3e11, 11)),
                           extra_flops=1e21, rounds=rounds)
