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
from scaling.fit import ChinchillaLaw, identification, optimum_at

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
