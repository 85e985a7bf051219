"""Simulated campaigns for the curves design (issue 26 item 8): the FLOPs each design needs to pin N_opt(C*).

Known truth: L(N, D) = E + A/N^alpha + B/D^beta (Chinchilla-like, SUGGEST_LAWS) is the loss of a run at
constant LR after D tokens; each size's whole loss curve follows the multi-power law with that power term
(L0 = E + A/N^alpha, its area term A_mpl S1^(-beta) equal to B/D^beta at the peak LR) and a known annealing
term (CURVE_SHAPE), so a cosine run ends below L(N, D) by what its decay earns. N_opt(C*) is the truth's
optimum of the cosine end loss on C = 6ND, found numerically. Noise: every run's losses are multiplied by
exp(noise * z_run) (one draw per run: a seed's offset moves a whole curve) and each curve point by
exp(point_noise * z) besides.

Designs, each at a total of F FLOPs (6ND summed over the tokens trained; a WSD branch costs its cooldown):
- "isoflop": three IsoFLOP budgets 4x apart, five sizes each over a 16x window centred on the true N_opt
  (isoflop_design), cosine runs;
- "grid": a 4 x 4 log-spaced grid (log_grid_design), cosine runs;
- "curves": CURVE_SIZES sizes over a 16x window centred on the truth's N_opt at the design's largest run, one WSD
  trunk per size to D_max with 20% 1-sqrt cooldown branches at D_max/4, D_max/2 and D_max; the multi-power
  law fitted jointly over sizes (curves_joint) predicts each size's cosine end loss at four budgets from
  D_max/8 to D_max, and Approach 3 is fitted to those;
- "curves+suggest": the curves design at F/2, then `suggest` spends the other F/2 on cosine runs.
N_opt's 95% interval, three ways (`INTERVALS`), Approach 3 refitted on each replicate; a unit is one size's
predicted points (one trunk) or one trained cosine run:
- "units": resample whole units with replacement (resamples with < 3 distinct units skipped);
- "levels": redraw each unit's level around the fitted law (scaling.analysis.size_levels: the units' scatter
  estimated with the degrees of freedom the law leaves, a t-like draw); the curves designs' default, since
  five trunks were too few units for the first (simulated coverage 9/20, benchmarks/README.md).
- "levels+refits": as "levels", and each replicate first refits the joint curve law on its curves resampled
  inside each size (bootstrap_curves_joint_runs) and predicts the sizes' points again: what `scaling fit
  --curves` does, and the curves designs' default. With "levels" the curve law is fitted once per dataset,
  and an error in its shared shape, which moves every size's points alike, is in no replicate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling.analysis import ChinchillaLaw
from scaling.analysis.approach3 import compute_optimal_sizes
from scaling.analysis.curves import Curve, predict_curve
from scaling.analysis.curves_joint import bootstrap_curves_joint_runs, fit_curves_joint
from scaling.analysis.lr_schedules import cosine_lrs, wsd_lrs
from scaling.analysis.size_levels import level_shifts
from scaling.analysis.suggest import Candidate, fit_ensemble, suggest
from scaling.errors import FitError
from scaling.simulate import SUGGEST_LAWS, isoflop_design, log_grid_design

CURVE_SHAPE = {"C": 0.05, "beta": 0.6, "gamma": 0.5, "B": 60.0}
"""The truth's annealing term (B: its amplitude; a full decay from PEAK_LR to 10% earns up to ~0.05 in loss)."""
PEAK_LR = 1e-3
STEPS = 2000
"""Every simulated run has STEPS optimizer steps at its own batch (tokens per step = D / STEPS), so a curve
costs the same to compute at any scale; the multi-power law sees the LR schedule, not the batch."""
CURVE_SIZES = 6
"""Model sizes (trunks) of the curves designs, as in sweeps/tiny_curves.toml: six leave Approach 3 three degrees
of freedom for the sizes' scatter; with five (two) the level intervals covered 34 of 40 simulated sweeps, with
six 72 of 80 and narrower (benchmarks/README.md)."""
DESIGNS = ("isoflop", "grid", "curves", "curves+suggest")
INTERVALS = ("units", "levels", "levels+refits")


@dataclass(frozen=True)
class CurveTruth:
    law: ChinchillaLaw
    target_flops: float
    noise: float = 0.01
    point_noise: float = 0.002

    def params(self, n: float, tokens_per_step: float) -> list[float]:
        p = self.law.params_
        a_mpl = p.B * (PEAK_LR / tokens_per_step) ** p.beta  # A_mpl S1^-beta = B / D^beta at constant PEAK_LR
        return [p.E + p.A / n ** p.alpha, a_mpl, p.beta, CURVE_SHAPE["B"], CURVE_SHAPE["C"], CURVE_SHAPE["beta"],
                CURVE_SHAPE["gamma"]]

    def cosine_end(self, n: float, d: float) -> float:
        lrs = cosine_lrs(STEPS, PEAK_LR, 0.1 * PEAK_LR, STEPS // 100)
        return float(predict_curve("mpl", self.params(n, d / STEPS), lrs, [STEPS])[0])

    def n_opt(self, flops: float) -> float:
        """The N minimising the cosine end loss at C = 6ND (grid over 0.1x-10x of Chinchilla's, then a parabola)."""
        n0 = float(np.asarray(self.law.compute_optimal(flops)[0]))
        grid = n0 * np.geomspace(0.1, 10.0, 81)
        loss = np.array([self.cosine_end(n, flops / (6 * n)) for n in grid])
        i = int(np.clip(np.argmin(loss), 1, len(grid) - 2))
        x, y = np.log(grid[i - 1:i + 2]), loss[i - 1:i + 2]
        a, b, _ = np.polyfit(x, y, 2)
        return float(np.exp(-b / (2 * a)))


def _cosine_runs(truth: CurveTruth, design: pd.DataFrame, rng: np.random.Generator, unit0: int = 0) -> pd.DataFrame:
    out = design[["n_params", "n_tokens"]].copy()
    out["loss"] = [truth.cosine_end(n, d) * math.exp(truth.noise * rng.standard_normal())
                   for n, d in zip(out.n_params, out.n_tokens)]
    out["unit"] = np.arange(unit0, unit0 + len(out))
    return out


def curves_design(truth: CurveTruth, flops: float, n_sizes: int = CURVE_SIZES, window: float = 16.0
                  ) -> tuple[np.ndarray, float]:
    """(sizes, D_max) of the curves design costing `flops`: trunks to D_max plus branch cooldowns."""
    def layout(n_mid: float) -> tuple[np.ndarray, float, float]:
        sizes = n_mid * np.geomspace(window ** -0.5, window ** 0.5, n_sizes)
        d_max = float(np.asarray(truth.law.compute_optimal(6 * n_mid * 20 * n_mid)[1]))  # ~20 tokens/param at n_mid
        d_max = 20 * n_mid if not math.isfinite(d_max) else d_max
        return sizes, d_max, 6 * sizes.sum() * d_max * (1 + 0.2 * (0.25 + 0.5))
    lo, hi = 1.0, 1e15
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if layout(mid)[2] < flops else (lo, mid)
    sizes, d_max, _ = layout(lo)
    return sizes, d_max


@dataclass(frozen=True)
class CurveFits:
    """What a curves design's points were predicted from: each size's simulated curves, the joint law fitted
    to them, D_max, and the unit of each size's points (so an interval can refit the law as `scaling fit
    --curves` does)."""
    groups: dict
    fits: dict
    d_max: float
    units: dict


def _budgets(d_max: float) -> np.ndarray:
    """The budgets whose cosine end loss a curves design predicts: four from D_max / 8 to D_max."""
    return d_max * np.geomspace(1 / 8, 1, 4)


def _cosine_ends(fit, d_max: float) -> list[float]:
    """A size's curve law's final loss of a cosine run at each of _budgets(d_max)."""
    out = []
    for d in _budgets(d_max):
        steps_run = int(round(STEPS * d / d_max))
        out.append(float(fit.predict(cosine_lrs(steps_run, PEAK_LR, 0.1 * PEAK_LR, STEPS // 100), [steps_run])[0]))
    return out


def _curve_points(truth: CurveTruth, sizes: np.ndarray, d_max: float, rng: np.random.Generator, unit0: int = 0
                  ) -> tuple[pd.DataFrame, CurveFits]:
    """Simulate each size's trunk and branches, fit the joint curve law, predict cosine end points."""
    groups = {}
    for n in sizes:
        offset = truth.noise * rng.standard_normal()  # the trunk's seed: shared by its branches
        curves = []
        for frac in (0.25, 0.5, 1.0):
            steps_total = int(round(STEPS * frac))
            lrs = wsd_lrs(steps_total, PEAK_LR, 0.1 * PEAK_LR, int(0.8 * steps_total), STEPS // 100, shape="1-sqrt")
            steps = np.unique(np.concatenate([np.geomspace(STEPS // 50, steps_total, 10),
                                              np.linspace(0.8 * steps_total, steps_total, 5)]).round().astype(int))
            loss = predict_curve("mpl", truth.params(n, d_max / STEPS), lrs, steps)
            loss = loss * np.exp(offset + truth.point_noise * rng.standard_normal(len(steps)))
            curves.append(Curve(name=f"{n:.3g}-{frac}", lrs=lrs, steps=steps, loss=loss, group=f"{n:.3g}"))
        groups[float(n)] = curves
    fits = fit_curves_joint(groups, n_starts=2)
    rows = [{"n_params": float(n), "n_tokens": float(d), "loss": loss, "unit": unit0 + i}
            for i, n in enumerate(sizes) for d, loss in zip(_budgets(d_max), _cosine_ends(fits[float(n)], d_max))]
    return pd.DataFrame(rows), CurveFits(groups, fits, d_max, {unit0 + i: float(n) for i, n in enumerate(sizes)})


def unit_interval(points: pd.DataFrame, target: float, n_boot: int, seed: int, n_starts: int = 10
                  ) -> tuple[float, float, float]:
    """(N_opt, lo, hi): Approach 3 on `points`, 95% interval from refits on resamples of whole units."""
    fit = ChinchillaLaw(n_starts=n_starts).fit(points.n_params, points.n_tokens, points.loss)
    units = points["unit"].unique()
    rng = np.random.default_rng(seed)
    n_opts = []
    for _ in range(n_boot):
        drawn = rng.choice(units, len(units))
        if len(set(drawn.tolist())) < 3:
            continue
        sample = pd.concat([points[points.unit == u] for u in drawn])
        try:
            p = ChinchillaLaw(n_starts=n_starts).fit(sample.n_params, sample.n_tokens, sample.loss).params_
        except FitError:
            continue
        if not p.degenerate:
            n_opts.append(float(compute_optimal_sizes(p.A, p.B, p.alpha, p.beta, target)[0]))
    return _estimate_and_interval(fit, target, n_opts)


def level_interval(points: pd.DataFrame, target: float, n_boot: int, seed: int, n_starts: int = 10,
                   curves: CurveFits | None = None) -> tuple[float, float, float]:
    """(N_opt, lo, hi): Approach 3 on `points`, 95% interval from refits on replicates whose units' levels are
    redrawn (scaling.analysis.size_levels). With `curves` (what the points were predicted from), each replicate
    also refits the joint curve law (bootstrap_curves_joint_runs) and re-predicts those points first: the
    interval `scaling fit --curves` gives. A replicate whose law does not fall with N counts as N_opt = 0,
    one that does not fall with D as N_opt = inf (where the compute-optimal split goes), not left out."""
    fit = ChinchillaLaw(n_starts=n_starts).fit(points.n_params, points.n_tokens, points.loss)
    shifts = level_shifts(fit.params_, points.n_params, points.n_tokens, points.loss, points.unit, n_boot, seed)
    losses = [points.loss.to_numpy(float)] * n_boot
    if curves is not None:
        losses = [_repredicted(points, curves, refit)
                  for refit in bootstrap_curves_joint_runs(curves.groups, curves.fits, n_boot=n_boot, seed=seed)]
    n_opts = []
    for loss, shift in zip(losses, shifts):
        try:
            p = ChinchillaLaw(n_starts=n_starts).fit(points.n_params, points.n_tokens, loss * np.exp(shift)).params_
        except FitError:
            continue
        if p.degenerate:
            n_opts.append(0.0 if p.degenerate.split()[0] in ("alpha", "A") else math.inf)
        else:
            n_opts.append(float(compute_optimal_sizes(p.A, p.B, p.alpha, p.beta, target)[0]))
    return _estimate_and_interval(fit, target, n_opts)


def _repredicted(points: pd.DataFrame, curves: CurveFits, refit: dict) -> np.ndarray:
    """`points`' losses with each curve unit's points predicted again from a refit of the curve law."""
    loss = points.loss.to_numpy(float).copy()
    for unit, size in curves.units.items():
        rows = np.flatnonzero(points.unit.to_numpy() == unit)
        loss[rows] = _cosine_ends(refit[size], curves.d_max)
    return loss


def _estimate_and_interval(fit: ChinchillaLaw, target: float, n_opts: list[float]) -> tuple[float, float, float]:
    """(the fit's N_opt at target, the 95% percentile interval of the replicates' N_opt; NaN from < 2)."""
    n_opt = float(np.asarray(fit.compute_optimal(target)[0]))
    if len(n_opts) < 2:
        return n_opt, math.nan, math.nan
    lo, hi = np.quantile(n_opts, [0.025, 0.975])
    return n_opt, float(lo), float(hi)


def dataset(truth: CurveTruth, design: str, flops: float, seed: int, n_starts: int = 10,
            curve_sizes: int = CURVE_SIZES) -> pd.DataFrame:
    """One simulated sweep of `design` spending `flops`: its (N, D, loss, unit) points."""
    return simulate(truth, design, flops, seed, n_starts, curve_sizes)[0]


def simulate(truth: CurveTruth, design: str, flops: float, seed: int, n_starts: int = 10,
             curve_sizes: int = CURVE_SIZES) -> tuple[pd.DataFrame, CurveFits | None]:
    """dataset()'s points, and for the curves designs what their curve points were predicted from."""
    rng = np.random.default_rng(seed)
    if design == "isoflop":
        return _cosine_runs(truth, isoflop_design(truth.law, flops), rng), None
    if design == "grid":
        n_lo = float(np.asarray(truth.law.compute_optimal(truth.target_flops)[0])) / 100
        return _cosine_runs(truth, log_grid_design(n_lo, 20 * n_lo, flops), rng), None
    if design == "curves":
        return _curve_points(truth, *curves_design(truth, flops, curve_sizes), rng)
    if design == "curves+suggest":
        sizes, d_max = curves_design(truth, flops / 2, curve_sizes)
        points, curves = _curve_points(truth, sizes, d_max, rng)
        ens = fit_ensemble(points[["n_params", "n_tokens", "loss"]].assign(run_id=[f"p{i}" for i in range(len(points))]),
                           n_boot=30, seed=seed, n_starts=n_starts)
        cands = [Candidate(n_params=n, n_tokens=d, flops=6 * n * d)
                 for n in np.geomspace(sizes[0], sizes[-1] * 4, 9) for d in np.geomspace(d_max / 8, d_max * 4, 9)]
        picks = suggest(ens, truth.target_flops, flops / 2, cands).picks
        if picks:
            new = pd.DataFrame([{"n_params": c.n_params, "n_tokens": c.n_tokens} for c in picks])
            points = pd.concat([points, _cosine_runs(truth, new, rng, unit0=int(points.unit.max()) + 1)],
                               ignore_index=True)
        return points, curves
    raise ValueError(f"design {design!r}: one of {', '.join(DESIGNS)}")


def design_flops(points: pd.DataFrame, design: str, flops: float) -> float:
    """FLOPs the design spent (the curves designs' by construction, the runs' 6ND otherwise)."""
    return float(flops) if design.startswith("curves") else float((6 * points.n_params * points.n_tokens).sum())


def ladder(truth: CurveTruth, designs=DESIGNS, fractions=(1 / 64, 1 / 16, 1 / 4, 1.0), n_datasets: int = 8,
           n_boot: int = 40, n_starts: int = 10, width: float = 1.5, curve_sizes: int = CURVE_SIZES,
           interval: str = "auto", first_seed: int = 0) -> pd.DataFrame:
    """Per design and total FLOPs (fractions of C*): datasets, median interval width hi/lo, coverage of the
    true N_opt(C*), and the share of datasets whose interval is at most `width` wide. `interval`: one of
    INTERVALS, or "auto" (levels+refits for the curves designs, units for the others). FLOPs level i draws
    seeds first_seed + i * n_datasets onwards (a ladder split over processes stays independent datasets)."""
    if interval not in (*INTERVALS, "auto"):
        raise ValueError(f"interval {interval!r}: one of {', '.join(INTERVALS)}, auto")
    true_n = truth.n_opt(truth.target_flops)
    rows = []
    for design in designs:
        method = interval if interval != "auto" else ("levels+refits" if design.startswith("curves") else "units")
        for level, frac in enumerate(fractions):
            flops = frac * truth.target_flops
            widths, covered, spent = [], [], []
            # distinct seeds per FLOPs level: the same seed draws the same noise pattern at every scale, so
            # reusing seeds 0..n-1 would make the levels' datasets copies of n patterns, not independent
            for seed in range(first_seed + level * n_datasets, first_seed + (level + 1) * n_datasets):
                try:
                    pts, curves = simulate(truth, design, flops, seed, n_starts, curve_sizes)
                    if method == "units":
                        _, lo, hi = unit_interval(pts, truth.target_flops, n_boot, seed, n_starts)
                    else:
                        _, lo, hi = level_interval(pts, truth.target_flops, n_boot, seed, n_starts,
                                                   curves if method == "levels+refits" else None)
                except FitError:
                    lo = hi = math.nan
                    pts = None
                ok = math.isfinite(lo) and lo > 0
                widths.append(hi / lo if ok else math.inf)
                covered.append(bool(lo <= true_n <= hi))  # NaN (no interval) covers nothing; [0, hi] may
                spent.append(design_flops(pts, design, flops) if pts is not None else flops)
            rows.append({"design": design, "interval": method, "flops": float(np.median(spent)), "fraction": frac,
                         "datasets": n_datasets, "median_width": float(np.median(widths)),
                         "pinned": float(np.mean(np.array(widths) <= width)), "coverage": float(np.mean(covered))})
    return pd.DataFrame(rows)


def flops_needed(table: pd.DataFrame, width: float = 1.5) -> pd.DataFrame:
    """Per design: the least FLOPs on the ladder whose median interval is at most `width` wide (NaN if none)."""
    out = []
    for design, part in table.groupby("design", sort=False):
        ok = part[part.median_width <= width].sort_values("flops")
        row = ok.iloc[0] if len(ok) else None
        out.append({"design": design, "flops_needed": math.nan if row is None else row.flops,
                    "median_width": math.nan if row is None else row.median_width,
                    "coverage": math.nan if row is None else row.coverage})
    return pd.DataFrame(out)


def default_truth() -> CurveTruth:
    """Chinchilla's printed law (Hoffmann et al. 2022), C* = 1e21, 1% run noise."""
    return CurveTruth(law=SUGGEST_LAWS["chinchilla"], target_flops=1e21)
