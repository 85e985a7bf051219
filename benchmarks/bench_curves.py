"""sweeps/tiny_curves.toml (design = "curves") against sweeps/tiny.toml (grid + IsoFLOP, cosine), issue 26 item 7.

Prints, for each sweep, its planned FLOPs and (where its results exist) the summed wall time of its runs; then,
for every cosine run of tiny, its final held-out loss as predicted from tiny_curves' curves (the multi-power
law fitted per model size to that size's trunk and branches, the run's own cosine schedule rebuilt from its
spec by scaling.schedule.lr_at_steps) against the loss tiny's run reached, and the mean relative error.

The curve points are measured on the small fixed held-out sample ([train].curve_tokens); a run's final record
holds that sample's loss beside the full held-out set's val_loss, so each size's prediction is rescaled by the
mean val_loss / curve_loss of its own tiny_curves runs at their ends (measured in tiny_curves, not in tiny).

Three fits of the same curves are printed side by side: each size's own law (every point), one law for all
sizes with alpha, C, beta, gamma shared (scaling.analysis.curves_joint), and the shared law without each
curve's points before one warmup; errors are given on val_loss (rescaled as above) and on the curve sample.
Then N_opt at tiny's largest compute: tiny's Approach 3 (bootstrap over runs) beside Approach 3 on the
shared, trimmed law's predicted cosine end points of the curves sweep's equivalent grid (bootstrap over whole sizes, the
curve law refitted on each resample), and beside it the interval `scaling fit --curves` gives (the joint law
refitted on resamples inside each size, each size's level redrawn around Approach 3: size_levels).

Usage: python benchmarks/bench_curves.py [--run] [--n-boot 100] [--n-boot-tiny 200] [--curves-sweep TOML]   (--run trains both sweeps first: tiny takes 6-16 min on 2 cores)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from scaling.analysis.curves import fit_curves
from scaling.analysis.curves_joint import (bootstrap_curves_joint, bootstrap_curves_joint_runs, fit_curves_joint,
                                          trim_warmup)
from scaling.analysis.size_levels import level_shifts
from scaling.analysis.approach3 import ChinchillaLaw, compute_optimal_sizes
from scaling.curves_pipeline import curves_from_folder
from scaling.errors import FitError
from scaling.config import load_sweep
from scaling.plan import equivalent_grid, plan_sweep
from scaling.results import read_metrics, read_result
from scaling.schedule import lr_at_steps

REPO = Path(__file__).resolve().parent.parent
TRIM_WARMUPS = 1.0
"""Curve points before this many warmups are left out of the trimmed fit (measured: 1 beat 0, 2 and 3)."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help="train both sweeps first (scaling run), timing each")
    ap.add_argument("--n-boot", type=int, default=100, help="size resamples (joint curve refits) for tiny_curves' N_opt interval")
    ap.add_argument("--n-boot-tiny", type=int, default=200, help="run resamples for tiny's own N_opt interval")
    ap.add_argument("--curves-sweep", default=str(REPO / "sweeps" / "tiny_curves.toml"),
                    help="the curves design to compare with tiny (a variant of tiny_curves.toml)")
    args = ap.parse_args()
    cfg_c = load_sweep(args.curves_sweep)
    cfg_t = load_sweep(REPO / "sweeps" / "tiny.toml")
    walls: dict[str, float] = {}
    if args.run:  # wall time of each whole sweep, timed around `scaling run` (finished runs are not retrained)
        for name in ("tiny_curves", "tiny"):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "scaling.cli", "run", f"sweeps/{name}.toml"], cwd=REPO, check=True)
            walls[name] = time.perf_counter() - t0
    plan_c, plan_t = plan_sweep(cfg_c), plan_sweep(cfg_t)
    dir_c, dir_t = REPO / cfg_c.sweep_dir, REPO / cfg_t.sweep_dir
    grid = equivalent_grid(cfg_c)
    print("| sweep | runs | FLOPs | vs tiny | wall s (scaling run) |\n|---|---|---|---|---|")
    for name, p in (("tiny_curves", plan_c), ("tiny", plan_t)):
        wall = walls.get(name)
        print(f"| {name} | {len(p.runs)} | {p.flops_to_train:.3g} | {p.flops_to_train / plan_t.flops_to_train:.0%} "
              f"| {'-' if wall is None else f'{wall:.0f}'} |")
    print(f"(the equivalent grid of tiny_curves: {len(grid.runs)} cosine runs, {grid.flops_to_train:.3g} FLOPs)")
    curves = curves_from_folder(dir_c)
    specs_c = {r.run_id: r for r in plan_c.runs}
    sizes = sorted({(r.shape.n_layer, r.shape.d_model) for r in plan_c.runs})
    size_of = {size: [r for r in plan_c.runs if (r.shape.n_layer, r.shape.d_model) == size] for size in sizes}
    scale = {}
    for size, mine in size_of.items():  # the curve sample's bias against the full held-out set, per size
        ratios = []
        for r in mine:
            end = [m for m in read_metrics(dir_c / r.run_id) if m.get("step") == r.n_steps and "val_loss" in m]
            if end and "curve_loss" in end[-1]:
                ratios.append(end[-1]["val_loss"] / end[-1]["curve_loss"])
        scale[size] = float(np.mean(ratios)) if ratios else 1.0
    # Three fits of the same curves: each size's own multi-power law (every point); the law fitted jointly
    # over sizes with its shape shared (every point); and the joint law without the points before one warmup
    # (the fast early phase), which is what tiny_curves' N_opt below uses.
    fits = {"per-size": {s: fit_curves([curves[r.run_id] for r in size_of[s]], "mpl") for s in sizes},
            "joint": fit_curves_joint({s: [curves[r.run_id] for r in size_of[s]] for s in sizes})}
    trimmed = {s: [trim_warmup(curves[r.run_id], specs_c[r.run_id].warmup_steps, TRIM_WARMUPS) for r in size_of[s]]
               for s in sizes}
    fits["joint, trimmed"] = fit_curves_joint(trimmed)
    for method, by_size in fits.items():
        p = by_size[sizes[-1]].params_
        print(f"<!-- {method}: largest size's mpl {({k: round(v, 4) for k, v in p.items()})} -->")
    errors: dict[str, dict[str, list[float]]] = {m: {"in": [], "out": []} for m in fits}
    on_sample: dict[str, list[float]] = {m: [] for m in fits}  # against tiny's own curve-sample end (no rescale)
    curves_t = curves_from_folder(dir_t) if dir_t.exists() else {}
    print("\n| tiny run | tokens | " + " | ".join(f"{m} pred (err)" for m in fits) + " | actual |\n"
          + "|---" * (3 + len(fits)) + "|")
    trunk = {size: max(r.n_tokens for r in mine) for size, mine in size_of.items()}  # each size's longest run
    for size in sizes:
        for r in plan_t.runs:
            if (r.shape.n_layer, r.shape.d_model) != size:
                continue
            res = read_result(dir_t / r.run_id) if dir_t.exists() else None
            actual = res.get("val_loss") if res and res.get("status") == "done" else None
            cells = []
            for method, by_size in fits.items():
                pred = scale[size] * float(by_size[size].predict(lr_at_steps(r), [r.n_steps])[0])
                if actual is None:
                    cells.append(f"{pred:.4f}")
                    continue
                err = (pred - actual) / actual
                errors[method]["in" if r.n_tokens <= 1.01 * trunk[size] else "out"].append(err)
                own = curves_t.get(r.run_id)
                if own is not None and len(own.steps) and own.steps[-1] == r.n_steps:
                    on_sample[method].append(pred / scale[size] / own.loss[-1] - 1)
                cells.append(f"{pred:.4f} ({100 * err:+.2f}%)")
            print(f"| {r.run_id} | {r.n_tokens:.3g} | " + " | ".join(cells) +
                  f" | {'-' if actual is None else f'{actual:.4f}'} |")
    if any(errors[m]["in"] for m in fits):
        print("\n| fit | mean abs error, tokens <= trunk (n) | beyond the trunk (n) | all | max | mean signed | "
              "all, on the curve sample (n) |\n|---|---|---|---|---|---|---|")
        for method, e in errors.items():
            both = np.array(e["in"] + e["out"])
            print(f"| {method} | {100 * np.mean(np.abs(e['in'])):.2f}% ({len(e['in'])}) | "
                  f"{100 * np.mean(np.abs(e['out'])) if e['out'] else float('nan'):.2f}% ({len(e['out'])}) | "
                  f"{100 * np.mean(np.abs(both)):.2f}% | {100 * np.max(np.abs(both)):.2f}% | {100 * np.mean(both):+.2f}% | "
                  f"{100 * np.mean(np.abs(on_sample[method])) if on_sample[method] else float('nan'):.2f}% "
                  f"({len(on_sample[method])}) |")
    _n_opt_table(args, cfg_c, plan_t, dir_t, sizes, trimmed, fits["joint, trimmed"], scale)


def _n_opt_table(args, cfg_c, plan_t, dir_t, sizes, trimmed, joint, scale) -> None:
    """N_opt at tiny's largest compute: tiny's own Approach 3 with its bootstrap over runs, beside Approach 3
    on tiny_curves' curve-predicted end points (the joint, trimmed law's cosine runs of its equivalent grid,
    rescaled to the full held-out set), its interval from refits on resampled sizes: each replicate draws the sizes with
    replacement (a size, one WSD trunk with its branches, is the design's independent unit), refits the joint
    curve law on them and Approach 3 on the drawn sizes' predicted end points."""
    c_max = max(r.flops_6nd for r in plan_t.runs)
    print(f"\nN_opt at tiny's largest compute C = 6ND = {c_max:.3g}:\n\n| design | points | N_opt | 95% interval | "
          "width | alpha [95%] | beta [95%] |\n|---|---|---|---|---|---|---|")
    ends = [(r.n_params, r.n_tokens, read_result(dir_t / r.run_id)) for r in plan_t.runs] if dir_t.exists() else []
    ends = [(n, d, res["val_loss"]) for n, d, res in ends if res and res.get("status") == "done"]
    if ends:
        N, D, L = (np.array(x, dtype=float) for x in zip(*ends))
        law = ChinchillaLaw().fit(N, D, L).bootstrap(N, D, L, n_boot=args.n_boot_tiny, seed=0)
        band = law.compute_optimal_interval(c_max)
        lo, hi = float(band["n_opt_lo"]), float(band["n_opt_hi"])
        print(f"| tiny (Approach 3, {args.n_boot_tiny} resamples of runs) | {len(ends)} trained | "
              f"{_n_opt(law.params_, c_max):.3g} | [{lo:.3g}, {hi:.3g}] | {hi / lo:.2f}x | "
              f"{law.params_.alpha:.3g} {_fmt(law.interval('alpha'))} | {law.params_.beta:.3g} {_fmt(law.interval('beta'))} |")

    cosine = equivalent_grid(cfg_c).runs  # the curves sweep's sizes x budgets as cosine runs, tiny's settings

    def points(by_size, counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The curve law's final loss of the cosine run of each drawn size at each budget the curves sweep
        stands for (its equivalent grid: every size x every n_tokens, and its explicit points), repeated by the
        size's multiplicity in the resample."""
        rows = []
        for size, count in counts.items():
            for r in cosine:
                if (r.shape.n_layer, r.shape.d_model) == size:
                    loss = scale[size] * float(by_size[size].predict(lr_at_steps(r), [r.n_steps])[0])
                    rows += [(r.n_params, r.n_tokens, loss)] * count
        return tuple(np.array(x, dtype=float) for x in zip(*rows))

    ones = {s: 1 for s in sizes}
    N, D, L = points(joint, ones)
    fit = ChinchillaLaw().fit(N, D, L)
    reps = bootstrap_curves_joint(trimmed, joint, n_boot=args.n_boot, seed=0)
    n_opts, alphas, betas = [], [], []
    for rep in reps:
        try:
            p = ChinchillaLaw(n_starts=10).fit(*points({s: f for s, (f, _) in rep.items()},
                                                       {s: c for s, (_, c) in rep.items()})).params_
        except FitError:
            continue
        if p.degenerate:
            continue
        n_opts.append(_n_opt(p, c_max))
        alphas.append(p.alpha)
        betas.append(p.beta)
    p = fit.params_
    if len(n_opts) >= 2:
        lo, hi = np.quantile(n_opts, [0.025, 0.975])
        cell = f"[{lo:.3g}, {hi:.3g}] | {hi / lo:.2f}x"
    else:
        cell = "- | -"
    print(f"| tiny_curves (joint curve law, trimmed; {len(n_opts)} of {args.n_boot} size resamples usable) | "
          f"{len(L)} predicted (cosine, the equivalent grid) | {_n_opt(p, c_max):.3g} | {cell} | "
          f"{p.alpha:.3g} {_fmt(np.quantile(alphas, [.025, .975]) if alphas else None)} | "
          f"{p.beta:.3g} {_fmt(np.quantile(betas, [.025, .975]) if betas else None)} |")
    # The interval `scaling fit --curves` gives: the joint law refitted on resamples inside every size (a
    # size of one trunk: its curves' residuals in blocks) and each size's level redrawn around Approach 3
    # (size_levels; K sizes sharing their budgets leave K - 3 degrees of freedom for their scatter)
    reps = bootstrap_curves_joint_runs(trimmed, joint, n_boot=args.n_boot, seed=0)
    shifts = level_shifts(fit.params_, N, D, L, N, n_boot=len(reps), seed=0)
    n_opts, alphas, betas = [], [], []
    for rep, shift in zip(reps, shifts):
        try:
            q = ChinchillaLaw(n_starts=10).fit(N, D, points(rep, ones)[2] * np.exp(shift)).params_
        except FitError:
            continue
        if q.degenerate:  # the split goes to N_opt = 0 (no fall with N) or infinity (no fall with D)
            n_opts.append(0.0 if q.degenerate.split()[0] in ("alpha", "A") else np.inf)
            continue
        n_opts.append(_n_opt(q, c_max))
        alphas.append(q.alpha)
        betas.append(q.beta)
    lo, hi = np.quantile(n_opts, [0.025, 0.975]) if len(n_opts) >= 2 else (np.nan, np.nan)
    print(f"| tiny_curves (as `scaling fit --curves`: runs resampled inside sizes, sizes' levels redrawn; "
          f"{len(n_opts)} of {args.n_boot} refits) | {len(L)} predicted | {_n_opt(p, c_max):.3g} | "
          f"[{lo:.3g}, {hi:.3g}] | {hi / lo:.2f}x | {p.alpha:.3g} {_fmt(np.quantile(alphas, [.025, .975]) if alphas else None)} | "
          f"{p.beta:.3g} {_fmt(np.quantile(betas, [.025, .975]) if betas else None)} |")


def _fmt(interval) -> str:
    return "-" if interval is None else f"[{interval[0]:.3g}, {interval[1]:.3g}]"


def _n_opt(p, c: float) -> float:
    """Chinchilla's N_opt(C) of law parameters p (approach3.compute_optimal_sizes, eq. 4)."""
    return float(compute_optimal_sizes(p.A, p.B, p.alpha, p.beta, c)[0])


if __name__ == "__main__":
    main()
