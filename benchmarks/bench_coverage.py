"""Coverage of the fit's 95% intervals, measured on simulated sweeps from known laws.

    python benchmarks/bench_coverage.py [--datasets 50] [--n-boot 200] [--noise 0.01]

Two designs, each simulated `--datasets` times from a known law with lognormal noise and fitted as
`scaling fit` does (scaling.simulate.coverage):
  chinchilla-like  8 sizes 7e7..1.6e10 x 8 token budgets 5e9..5e11 (64 runs) from Besiroglu et al. 2024's
                   law (E 1.8172, A 482.01, B 2085.43, alpha 0.3478, beta 0.3658); N_opt checked at 1e21 FLOPs
  tiny-like        the default sweep's shape, 4 sizes 2.5e4..2.6e5 x 5 budgets 2.5e5..4e6 (20 runs), from the
                   same law, far above its floor (loss ~20x E); N_opt checked at the design's largest compute
Prints, per quantity, the share of datasets whose interval holds the truth with its exact binomial 95%
interval, the median interval factor (hi/lo) and how often the report called the quantity not identified.
Target (issue #10): coverage >= 90% for alpha, beta, E, a and N_opt on both designs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from scaling.analysis import ChinchillaLaw
from scaling.simulate import coverage, grid_design

BESIROGLU = ChinchillaLaw.from_params(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
DESIGNS = {
    "chinchilla-like": (grid_design(np.geomspace(7e7, 1.6e10, 8), np.geomspace(5e9, 5e11, 8)), 1e21),
    "tiny-like": (grid_design(np.geomspace(2.5e4, 2.6e5, 4), np.geomspace(2.5e5, 4e6, 5)), None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=50)
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.01, help="lognormal noise sigma on each loss")
    parser.add_argument("--designs", nargs="*", default=list(DESIGNS))
    args = parser.parse_args()
    for name in args.designs:
        design, flops = DESIGNS[name]
        start = time.perf_counter()
        result = coverage(BESIROGLU, design, n_datasets=args.datasets, noise=args.noise,
                          n_boot=args.n_boot, flops=flops)
        table = result.summary()
        print(f"\n{name}: {len(design)} runs, {args.datasets} datasets, noise {args.noise:g}, "
              f"{args.n_boot} bootstrap resamples, N_opt at {result.flops:.3g} FLOPs "
              f"({time.perf_counter() - start:.0f} s)")
        shown = table.assign(coverage=[f"{c:.0%} [{lo:.0%}, {hi:.0%}]" for c, lo, hi in
                                       zip(table["coverage"], table["ci_lo"], table["ci_hi"])])
        with pd.option_context("display.width", 160, "display.float_format", "{:.3g}".format):
            print(shown[["quantity", "datasets", "covered", "coverage", "median_factor",
                         "not_identified"]].to_string(index=False))


if __name__ == "__main__":
    main()
