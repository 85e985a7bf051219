"""Time the full Approach 3 fit (starting grid included) and 1,000 bootstrap refits on ~250 points.

Target: < 30 s on a 2-core machine. Data: the Chinchilla reference runs kept in the project
(analysis/data/svg_extracted_data.csv, 245 runs; provenance in analysis/README.md), or with --synthetic
250 runs drawn from Besiroglu et al.'s law with 2% noise.

    python benchmarks/bench_fit.py [--n-boot 1000] [--repeat 3] [--synthetic]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from scaling.analysis import ChinchillaLaw, read_points_csv

REFERENCE = Path(__file__).resolve().parents[1] / "analysis" / "data" / "svg_extracted_data.csv"


def load_points(synthetic: bool = False) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    if not synthetic:
        frame = read_points_csv(REFERENCE)
        return (f"reference ({len(frame)} runs)", frame["n_params"].to_numpy(),
                frame["n_tokens"].to_numpy(), frame["loss"].to_numpy())
    rng = np.random.default_rng(0)
    truth = ChinchillaLaw.from_params(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
    N = 10 ** rng.uniform(7.5, 10.5, 250)
    D = 10 ** rng.uniform(9.0, 11.5, 250)
    return "synthetic (250 runs)", N, D, truth.predict(N, D) * np.exp(0.02 * rng.standard_normal(250))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--synthetic", action="store_true", help="250 synthetic runs instead of the reference data")
    args = parser.parse_args()
    name, N, D, L = load_points(args.synthetic)
    print(f"data: {name}")
    totals = []
    for i in range(args.repeat):
        start = time.perf_counter()
        law = ChinchillaLaw().fit(N, D, L)
        fit_s = time.perf_counter() - start
        law.bootstrap(N, D, L, n_boot=args.n_boot, seed=i)
        total = time.perf_counter() - start
        totals.append(total)
        print(f"run {i}: fit {fit_s:.2f} s, {args.n_boot} bootstrap refits {total - fit_s:.2f} s, "
              f"total {total:.2f} s ({law.n_boot_failed_} refits failed)")
    print(f"best total {min(totals):.2f} s, median {float(np.median(totals)):.2f} s (target < 30 s)")


if __name__ == "__main__":
    main()
