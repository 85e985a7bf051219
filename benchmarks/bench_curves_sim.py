"""Simulated: the FLOPs each design needs to pin N_opt(C*) to a 1.5x-wide 95% interval (issue 26 item 8).

    python benchmarks/bench_curves_sim.py [--datasets 5] [--fractions 0.0625 0.25 1 4] [--n-boot 30]

scaling/simulate_curves.py's docstring gives the truth (Chinchilla's printed law as the constant-LR loss,
a known multi-power law per size for the whole curve, 1% run noise plus 0.2% per curve point) and the four
designs: a centred IsoFLOP design, a 4 x 4 grid, the curves design (one WSD trunk per size, three cooldown
branches, the joint curve law predicting cosine end points) and the curves design at half the FLOPs plus
`suggest` spending the other half. For each design and each total FLOPs (a fraction of C* = 1e21) the
script simulates --datasets sweeps, fits Approach 3 and its 95% interval of N_opt(C*) (--interval: a
bootstrap over whole units, a trained run or one size's curve-predicted points; each unit's level redrawn
around the fitted law, scaling.analysis.size_levels; or that and the curve law refitted in each replicate,
as `scaling fit --curves` does, the curves designs' default), and prints the median interval width,
the share of intervals at most 1.5x wide and the coverage of the true N_opt(C*); then, per design, the least
FLOPs whose median interval is at most 1.5x wide, and the coverage pooled over every FLOPs level with its
Clopper-Pearson 95% interval (target: >= 90%).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import binomtest

from scaling.simulate_curves import CURVE_SIZES, DESIGNS, INTERVALS, default_truth, flops_needed, ladder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=5, help="simulated sweeps per design and FLOPs level")
    ap.add_argument("--fractions", type=float, nargs="+", default=[1 / 16, 1 / 4, 1.0, 4.0],
                    help="total FLOPs of each design, as fractions of C* = 1e21")
    ap.add_argument("--n-boot", type=int, default=30, help="unit resamples per interval")
    ap.add_argument("--n-starts", type=int, default=3, help="Approach 3 starts per (re)fit")
    ap.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=DESIGNS)
    ap.add_argument("--curve-sizes", type=int, default=CURVE_SIZES, help="model sizes (trunks) of the curves designs")
    ap.add_argument("--interval", default="auto", choices=(*INTERVALS, "auto"),
                    help="units: resample whole units; levels: redraw each unit's level (size_levels); "
                         "levels+refits: also refit the curve law per replicate (as scaling fit --curves); auto: "
                         "levels+refits for the curves designs, units for the others")
    ap.add_argument("--first-seed", type=int, default=0,
                    help="seed of the first dataset (FLOPs level i uses first-seed + i * datasets onwards)")
    args = ap.parse_args()
    truth = default_truth()
    t0 = time.perf_counter()
    table = ladder(truth, designs=args.designs, fractions=tuple(args.fractions), n_datasets=args.datasets,
                   n_boot=args.n_boot, n_starts=args.n_starts, curve_sizes=args.curve_sizes,
                   interval=args.interval, first_seed=args.first_seed)
    print(f"true N_opt(C* = {truth.target_flops:.3g}) of the cosine end loss: {truth.n_opt(truth.target_flops):.4g} "
          f"(Chinchilla's constant-LR law alone: {float(np.asarray(truth.law.compute_optimal(truth.target_flops)[0])):.4g})\n")
    print("| design | interval | FLOPs | / C* | datasets | median width | <= 1.5x | coverage |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in table.itertuples():
        print(f"| {r.design} | {r.interval} | {r.flops:.3g} | {r.fraction:.3g} | {r.datasets} | {r.median_width:.2f}x | "
              f"{r.pinned:.0%} | {r.coverage:.0%} |")
    need = flops_needed(table)
    print("\n| design | least FLOPs with median width <= 1.5x | its median width | its coverage | coverage, all levels "
          "[95% CI] |\n|---|---|---|---|---|")
    for r in need.itertuples():
        part = table[table.design == r.design]
        k, n = int(round((part.coverage * part.datasets).sum())), int(part.datasets.sum())
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        print(f"| {r.design} | {'not reached' if np.isnan(r.flops_needed) else f'{r.flops_needed:.3g}'} | "
              f"{'-' if np.isnan(r.median_width) else f'{r.median_width:.2f}x'} | "
              f"{'-' if np.isnan(r.coverage) else f'{r.coverage:.0%}'} | {k}/{n} = {k / n:.0%} [{ci.low:.0%}, {ci.high:.0%}] |")
    print(f"\n(curves designs: {args.curve_sizes} sizes; {args.datasets} datasets per cell, {args.n_boot} unit resamples, "
          f"{args.n_starts} Approach 3 starts; {time.perf_counter() - t0:.0f} s wall on this machine)")


if __name__ == "__main__":
    main()
