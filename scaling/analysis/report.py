"""The whole-sweep report: every fit a points frame supports (`fit_sweep`), its text and JSON.

Also the compute-optimal table and the holdout check."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from scaling.analysis.approach3 import PARAM_NAMES, ChinchillaLaw, degenerate_reason
from scaling.analysis.approaches import EnvelopeResult, IsoFlopResult, fit_envelope, fit_isoflop, is_isoflop_design
from scaling.analysis.extrapolation import EXTRAPOLATION_FACTOR, describe_range, extrapolated
from scaling.analysis.identify import (
    AT_BOX_SHARE,
    N_OPT_MAX_FACTOR,
    OUTLIER_MIN_REL,
    OUTLIER_Z,
    identification,
    n_boot_warning,
    optimum_at,
    outlying_runs,
    verdict_of,
)
from scaling.analysis.points import Points, rows_for_fit, select_points
from scaling.errors import FitError

log = logging.getLogger("scaling.fit")

__all__ = [
    "LARGE_FIT_POINTS",
    "DEFAULT_BUDGETS",
    "HoldoutResult",
    "holdout_check",
    "compute_optimal_table",
    "compute_optimal",
    "FitReport",
    "fit_sweep",
]

LARGE_FIT_POINTS = 10_000
"""Above this many points fit_sweep warns before it starts: Approach 3 costs ~1 s per 1,000 points per fit
here (10,000 points: 10 s per fit, 17 s for fit_sweep without bootstrap; each bootstrap resample is another
optimizer run), so 10^5 rows take minutes. Averaging seeds or repeated rows (the default) shrinks it."""

DEFAULT_BUDGETS: tuple[float, ...] = tuple(float(c) for c in np.logspace(18, 25, 8))
"""Compute budgets (FLOPs) for the compute-optimal table of a report, 1e18 .. 1e25."""


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


def holdout_check(frame: pd.DataFrame | Points, n_holdout: int | None = None,
                  law: ChinchillaLaw | None = None) -> HoldoutResult:
    """Fit Approach 3 on all but the n_holdout largest-compute done runs; report the relative
    loss error (predicted - actual) / actual on those. n_holdout defaults to 10% (at least 1)."""
    done, _ = rows_for_fit(frame)
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
    n_opt_lo/hi, d_opt_lo/hi when the law has bootstrap samples, and `extrapolated` (True past
    EXTRAPOLATION_FACTOR times the compute of the runs it was fitted on) when the law knows that range.
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
    beyond = extrapolated(law, C, EXTRAPOLATION_FACTOR)
    if beyond is not None:
        table["extrapolated"] = beyond
    return table


def compute_optimal(law: object, budgets: float | Iterable[float], level: float = 0.95) -> pd.DataFrame:
    """Compute-optimal N and D of a fitted law (or report) per budget C = 6ND, as a DataFrame: flops, n_opt,
    d_opt, tokens_per_param and, for a bootstrapped law, its `level` bands (n_opt_lo, n_opt_hi, ...)."""
    return compute_optimal_table(law, np.atleast_1d(np.asarray(budgets, dtype=float)), level)


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
    points: Points | None = field(default=None, repr=False)
    """The points every fit of the report used (`select_points`); figures of the report show these."""

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
                verdict = verdict_of(self.identification.get(name, ""))
                flag = {"identified": "", "borderline": "  BORDERLINE: raise --n-boot (see diagnostics)",
                        "not identified": "  NOT IDENTIFIED (see diagnostics)"}[verdict]
                lines.append(f"  {name:>5} = {values[name]:.6g}{band}{flag}")
            if self.optimum is not None and "n_opt_lo" in self.optimum:
                o = self.optimum
                verdict = {"identified": "identified", "borderline": "BORDERLINE (raise --n-boot)"}.get(
                    o.get("verdict", "identified" if o["identified"] else ""), f"NOT IDENTIFIED (> {N_OPT_MAX_FACTOR:g}x)")
                lines.append(f"  N_opt at the sweep's largest compute (C = 6ND = {o['flops']:.3g}): {o['n_opt']:.3g} "
                             f"[{o['n_opt_lo']:.3g}, {o['n_opt_hi']:.3g}], {o['factor']:.3g}x: {verdict}")
            table = compute_optimal_table(self.law, self.budgets, self.level)
            lines.append("")
            lines.append("compute-optimal allocation (Approach 3, C = 6ND):")
            lines.append(f"  ({describe_range(self.law)})")
            lines.append(f"  {'FLOPs':>9} {'N_opt':>10} {'D_opt':>10} {'tokens/param':>12}"
                         + (f"  {'N_opt ' + pct + ' band':>23}" if "n_opt_lo" in table else ""))
            for row in table.itertuples(index=False):
                band = (f"  [{row.n_opt_lo:.3g}, {row.n_opt_hi:.3g}]".rjust(25)
                        if "n_opt_lo" in table else "")
                mark = "  extrapolated" if getattr(row, "extrapolated", False) else ""
                lines.append(f"  {row.flops:>9.3g} {row.n_opt:>10.3g} {row.d_opt:>10.3g} "
                             f"{row.tokens_per_param:>12.1f}{band}{mark}")
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
            lines.extend(f"  - {d}" for d in dict.fromkeys(self.diagnostics))  # a line said once
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
                "n_points": int(self.law.n_points_), "law": self.law.to_dict()}
            if hasattr(self.law, "bootstrap_params_"):
                approach3["n_boot"] = len(self.law.bootstrap_params_)
                approach3["intervals"] = {name: list(self._interval(name) or ())
                                          for name in (*PARAM_NAMES, "a", "b")}
            table = compute_optimal_table(self.law, self.budgets, self.level)
            approach3["compute_optimal"] = _records(table)
            span = getattr(self.law, "data_flops_", None)
            approach3["data_flops"] = list(span) if span is not None else None
            approach3["extrapolation_factor"] = EXTRAPOLATION_FACTOR
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


def _fit_approach3(done: pd.DataFrame, proto: ChinchillaLaw, n_boot: int, seed: int,
                   diagnostics: list[str]) -> ChinchillaLaw | None:
    """Approach 3 (+ bootstrap) on the points, or None with the reason added to diagnostics."""
    try:
        fitted = ChinchillaLaw(delta=proto.delta, n_starts=proto.n_starts, grid=proto.grid)
        N, D, L = done["n_params"], done["n_tokens"], done["loss"]
        fitted.fit(N, D, L)
        if n_boot > 0:
            fitted.bootstrap(N, D, L, n_boot=n_boot, seed=seed)
        return fitted
    except FitError as exc:
        diagnostics.append(f"Approach 3 not fitted: {exc}")
        return None


def fit_sweep(frame: pd.DataFrame | Points, n_boot: int = 1000, seed: int = 0,
              budgets: Iterable[float] = DEFAULT_BUDGETS, n_holdout: int | None = None,
              level: float = 0.95, law: ChinchillaLaw | None = None,
              rel_tol: float = 0.05, all_seeds: bool = False, fitted_law: ChinchillaLaw | None = None) -> FitReport:
    """Run every fit the frame supports and collect what could not be done as diagnostics.

    Approach 3 (+ bootstrap when n_boot > 0) when there are enough runs; Approach 2 when the frame
    is an IsoFLOP design (>= 2 budgets with >= 3 runs each); Approach 1 always; a holdout check
    on the largest-compute runs when the rest still suffice for Approach 3. Points are the best LR per
    (N, D, seed) and the seed mean per (N, D) unless `all_seeds`, chosen once (`select_points`; a `Points`
    is used as it is, with its own all_seeds) and shared by every fit; the report keeps them as `points`.
    `fitted_law`: an Approach 3 law already fitted (and bootstrapped) on these points, e.g. loaded from a
    fit.json, used as it is instead of fitting again; the other fits are cheap and are redone.
    """
    points = select_points(frame, all_seeds)
    done, diagnostics = points.frame, list(points.diagnostics)
    if len(done) > LARGE_FIT_POINTS:
        note = (f"{len(done):,} points to fit (more than {LARGE_FIT_POINTS:,}): Approach 3 takes ~1 s per 1,000 "
                f"points per fit, {n_boot:,} bootstrap refits and a holdout refit come on top")
        log.warning("fitting %s points: this takes a while (see the diagnostics)", f"{len(done):,}")  # a heads-up
        diagnostics.append(note)
    proto = law if law is not None else ChinchillaLaw()
    fitted = fitted_law if fitted_law is not None else _fit_approach3(done, proto, n_boot, seed, diagnostics)
    if fitted is not None and getattr(fitted, "n_boot_failed_", 0):
        diagnostics.append(f"{fitted.n_boot_failed_} of {fitted.n_boot_failed_ + len(fitted.bootstrap_params_)} "
                           f"bootstrap refits did not converge and were dropped")
    if fitted is not None and getattr(fitted, "n_boot_degenerate_", 0):
        example = fitted.bootstrap_degenerate_.iloc[0]
        why = degenerate_reason(example["A"], example["B"], example["alpha"], example["beta"], example["E"])
        diagnostics.append(f"{fitted.n_boot_degenerate_} of {fitted.n_boot_degenerate_ + len(fitted.bootstrap_params_)} "
                           f"bootstrap refits landed on a degenerate law with no compute-optimal split (e.g. {why}) "
                           f"and were left out of the intervals ({len(fitted.bootstrap_params_)} used)")
    if fitted is not None and hasattr(fitted, "bootstrap_params_"):
        warning = n_boot_warning(len(fitted.bootstrap_params_) + getattr(fitted, "n_boot_degenerate_", 0)
                                 + getattr(fitted, "n_boot_failed_", 0))
        if warning:
            diagnostics.append(warning)  # printed once, with the other diagnostics
    isoflop = None
    if is_isoflop_design(points, rel_tol):
        try:
            isoflop = fit_isoflop(points, rel_tol=rel_tol)
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
        diagnostics.extend(f"{name} {why}" if verdict_of(why) == "borderline" else f"{name} not identified: {why}"
                           for name, why in identified.items() if why)
        # compute_optimal counts C = 6ND (Hoffmann et al. eq. 4), so the sweep's largest compute is taken
        # in the same units (exact FLOPs of tiny models run ~1.5x above 6ND: embeddings and attention).
        optimum = optimum_at(fitted, float((6.0 * done["n_params"] * done["n_tokens"]).max()), level)
        if optimum.get("degenerate_share", 0) > AT_BOX_SHARE:
            diagnostics.append(
                f"N_opt at the sweep's largest compute (C = 6ND = {optimum['flops']:.3g}) is not identified: "
                f"{optimum['degenerate_share']:.0%} of the bootstrap refits had no N_opt at all (a degenerate law); "
                f"add sizes and token budgets over wider ranges")
        elif optimum.get("verdict") == "borderline":
            diagnostics.append(
                f"N_opt at the sweep's largest compute (C = 6ND = {optimum['flops']:.3g}) is borderline (raise "
                f"--n-boot): its {level:.0%} band [{optimum['n_opt_lo']:.3g}, {optimum['n_opt_hi']:.3g}] spans "
                f"{optimum['factor']:.3g}x, and within its Monte-Carlo error the span could be on either side of "
                f"{N_OPT_MAX_FACTOR:g}x")
        elif not optimum.get("identified", True):
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
        envelope = fit_envelope(points)
    except FitError as exc:
        diagnostics.append(f"Approach 1 not fitted: {exc}")
    holdout = None
    if fitted is not None:
        try:
            holdout = holdout_check(points, n_holdout=n_holdout, law=proto)
        except FitError as exc:
            diagnostics.append(f"holdout check not run: {exc}")
    return FitReport(n_runs=points.n_runs, n_done=points.n_done, law=fitted, envelope=envelope,
                     isoflop=isoflop, holdout=holdout, diagnostics=list(dict.fromkeys(diagnostics)),  # once each
                     budgets=tuple(float(c) for c in budgets), level=level, seed_spread=points.seed_spread,
                     all_seeds=points.all_seeds, n_points=len(done), identification=identified, optimum=optimum,
                     outliers=outliers, points=points)
