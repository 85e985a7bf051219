"""sweeps/tiny_curves.toml (design = "curves") against sweeps/tiny.toml (grid + IsoFLOP, cosine), issue 26 item 7.

Prints, for each sweep, its planned FLOPs and (where its results exist) the summed wall time of its runs; then,
for every cosine run of tiny, its final held-out loss as predicted from tiny_curves' curves (the multi-power
law fitted per model size to that size's trunk and branches, the run's own cosine schedule rebuilt from its
spec by scaling.schedule.lr_at_steps) against the loss tiny's run reached, and the mean relative error.

The curve points are measured on the small fixed held-out sample ([train].curve_tokens); a run's final record
holds that sample's loss beside the full held-out set's val_loss, so each size's prediction is rescaled by the
mean val_loss / curve_loss of its own tiny_curves runs at their ends (measured in tiny_curves, not in tiny).

Usage: python benchmarks/bench_curves.py [--run]   (--run trains both sweeps first: tiny takes 6-16 min on 2 cores)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from scaling.analysis.curves import fit_curves, predict_curve
from scaling.analysis.approach3 import ChinchillaLaw
from scaling.analysis.curves_pipeline import curve_points, curves_from_folder
from scaling.errors import FitError
from scaling.config import load_sweep
from scaling.plan import equivalent_grid, plan_sweep
from scaling.results import read_metrics, read_result
from scaling.schedule import lr_at_steps

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help="train both sweeps first (scaling run), timing each")
    ap.add_argument("--n-boot", type=int, default=50, help="curve-bootstrap replicates for the N_opt interval")
    args = ap.parse_args()
    cfg_c = load_sweep(REPO / "sweeps" / "tiny_curves.toml")
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
    sizes = sorted({(r.shape.n_layer, r.shape.d_model) for r in plan_c.runs})
    errors = []
    print("\n| tiny run | tokens | predicted | actual | error |\n|---|---|---|---|---|")
    for size in sizes:
        mine = [r for r in plan_c.runs if (r.shape.n_layer, r.shape.d_model) == size]
        fit = fit_curves([curves[r.run_id] for r in mine], "mpl")
        ratios = []
        for r in mine:
            end = [m for m in read_metrics(dir_c / r.run_id) if m.get("step") == r.n_steps and "val_loss" in m]
            if end and "curve_loss" in end[-1]:
                ratios.append(end[-1]["val_loss"] / end[-1]["curve_loss"])
        scale = float(np.mean(ratios)) if ratios else 1.0
        print(f"<!-- L{size[0]} d{size[1]}: mpl {fit.params_}, val/curve sample ratio {scale:.4f} -->")
        for r in plan_t.runs:
            if (r.shape.n_layer, r.shape.d_model) != size:
                continue
            pred = scale * float(predict_curve("mpl", list(fit.params_.values()), lr_at_steps(r), [r.n_steps])[0])
            res = read_result(dir_t / r.run_id) if dir_t.exists() else None
            actual = res.get("val_loss") if res and res.get("status") == "done" else None
            err = None if actual is None else (pred - actual) / actual
            if err is not None:
                errors.append(abs(err))
            print(f"| {r.run_id} | {r.n_tokens:.3g} | {pred:.4f} | {'-' if actual is None else f'{actual:.4f}'} | "
                  f"{'-' if err is None else f'{100 * err:+.2f}%'} |")
    if errors:
        print(f"\nmean |relative error| over {len(errors)} tiny runs: {100 * np.mean(errors):.2f}% "
              f"(max {100 * np.max(errors):.2f}%)")
    # N_opt at tiny's largest compute from tiny_curves: Approach 3 on the curve-predicted end points (tiny's grid
    # budgets), interval from Approach 3 refits on the curve bootstrap's replicates (whole runs resampled per size)
    c_max = max(r.flops_6nd for r in plan_t.runs)
    points = curve_points(dir_c, sorted(set(cfg_c.grid.n_tokens)), law="mpl", n_boot=args.n_boot)
    frame = points.frame
    fit = ChinchillaLaw().fit(frame.n_params, frame.n_tokens, frame.loss)
    n_opts = []
    for replicate in points.replicates:
        try:
            n_opts.append(_n_opt(ChinchillaLaw(n_starts=10).fit(frame.n_params, frame.n_tokens, replicate).params_,
                                 c_max))
        except FitError:
            continue
    p = fit.params_
    print(f"\ntiny_curves, Approach 3 on curve-predicted end points: E {p.E:.4g}, A {p.A:.4g}, B {p.B:.4g}, "
          f"alpha {p.alpha:.4g}, beta {p.beta:.4g}; N_opt at C = 6ND = {c_max:.3g}: {_n_opt(p, c_max):.3g}"
          + (f" [{np.quantile(n_opts, .025):.3g}, {np.quantile(n_opts, .975):.3g}] over {len(n_opts)} refits"
             if len(n_opts) >= 2 else ""))


def _n_opt(p, c: float) -> float:
    """Chinchilla's N_opt(C) = G (C / 6)^(beta / (alpha + beta)), G = (alpha A / (beta B))^(1 / (alpha + beta))."""
    g = (p.alpha * p.A / (p.beta * p.B)) ** (1 / (p.alpha + p.beta))
    return g * (c / 6) ** (p.beta / (p.alpha + p.beta))


if __name__ == "__main__":
    main()
