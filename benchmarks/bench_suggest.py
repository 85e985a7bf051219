"""Sequential design (`scaling suggest`) against a log-spaced grid and a centred IsoFLOP design of equal FLOPs.

    python benchmarks/bench_suggest.py [--campaigns 20] [--settings chinchilla besiroglu] [--rows rows.csv]
    python benchmarks/bench_suggest.py --promise [--campaigns 20] [--rows promise.csv]
    python benchmarks/bench_suggest.py --overheads 0 1e18 1e19 [--campaigns 10] [--rows overhead.csv]

Whole campaigns are played against a known law with 1% lognormal noise (scaling.simulate.campaign): every
design starts from the same 9-run pilot (3 sizes 3e7..3e8 x 3 token counts 1e9..1e10) and then spends the
same extra FLOPs (1e21, C = 6ND):
  suggest  2 rounds of suggest -> "train" (sample the law) -> fit, 5e20 FLOPs each, candidates 11 sizes
           3e7..1e10 x 11 token counts 1e9..3e11 (log-spaced);
  grid     a 4 x 4 log-spaced grid from (3e7, 1e9) up, its span chosen so it costs 1e21;
  isoflop  3 budgets 4x apart, 5 sizes each over a window of 16 centred on the pilot fit's N_opt(C) (what
           [grid.prior] pilot does), the largest budget such that the design costs 1e21.
Laws: Chinchilla-like (Hoffmann et al. 2022's printed Approach 3: E 1.69, A 406.4, B 410.7, alpha 0.34,
beta 0.28) and Besiroglu et al. 2024's refit (E 1.8172, A 482.01, B 2085.43, alpha 0.3478, beta 0.3658).
Target C* = 1e21. Each final fit is `scaling fit`'s Approach 3 with a 50-resample bootstrap (from the best 5
starts of Hoffmann's grid instead of 50, and 20 ensemble members per suggestion: 40 campaigns on a shared
2-core machine; `scaling suggest` uses 200 members and 50 starts, `scaling fit` 1000 resamples and 50 starts); per
design: median width of the 95% interval of N_opt(C*) (hi/lo), median error factor exp|ln(N_opt / truth)|,
and coverage of the true N_opt(C*). Target (issue #15): suggest's median interval at most half the grid's,
with coverage >= 90%.

--promise plays one round of suggest per campaign (scaling.simulate.promise: 5e20 FLOPs after the pilot) and
compares the interval it promised with the one the refit on pilot + picks delivered (issue #29: the median of
delivered / promised, as widths in ln N, within [0.8, 1.25]). --overheads plays the same round with a per-run
overhead (FLOP-equivalents) at equal wall time (the round's 5e20 counts FLOPs + overhead): once charging the
overhead to each candidate (--run-overhead), once blind to it, its picks trained in order until the wall time
runs out.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.analysis.suggest import Candidate, fit_ensemble, suggest
from scaling.simulate import SUGGEST_LAWS, campaign, campaign_summary, grid_design, promise, simulate, suggest_setting


def time_one_suggestion() -> None:
    """Wall time of fit + 200-member ensemble + greedy pick on a 10 x 10 grid of runs (100 points)."""
    law = SUGGEST_LAWS["besiroglu"]
    runs = simulate(law, grid_design(np.geomspace(3e7, 3e9, 10), np.geomspace(1e9, 1e11, 10)), 0.01,
                    np.random.default_rng(0))
    setting = suggest_setting("besiroglu")
    cands = [Candidate(n_params=N, n_tokens=D, flops=6 * N * D) for N in setting.n_params for D in setting.n_tokens]
    start, cpu = time.perf_counter(), time.process_time()
    ens = fit_ensemble(runs, n_boot=200, seed=0)
    fitted = time.perf_counter()
    proposal = suggest(ens, setting.target_flops, 1e21, cands)
    done = time.perf_counter()
    print(f"suggestion on {len(runs)} runs: {done - start:.1f} s wall, {time.process_time() - cpu:.1f} s CPU of this "
          f"process ({fitted - start:.1f} s wall fit + 200 bootstrap refits, {done - fitted:.2f} s choosing "
          f"{len(proposal.picks)} of {len(cands)} candidates); load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")


def promise_rows(args: argparse.Namespace, table: pd.DataFrame, path: Path | None,
                 overheads: list[float]) -> pd.DataFrame:
    """Rows of scaling.simulate.promise, one per (law, campaign, overhead, charged?); appended to `path` as they come."""
    start = time.perf_counter()
    for name in args.settings:
        for seed in range(args.first, args.first + args.campaigns):
            for overhead in overheads:
                for charged in ((True,) if overhead == 0 else (True, False)):
                    row = promise(suggest_setting(name), seed, n_boot=args.n_boot, n_starts=args.n_starts,
                                  overhead=overhead, charge_overhead=charged)
                    table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
                    if path:
                        table.to_csv(path, index=False)
            print(f"{name} campaign {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return table.drop_duplicates(["setting", "campaign", "overhead", "charged"], keep="last")


def promise_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (law, overhead, charged): campaigns, median runs and run size, median widths before / promised /
    delivered, and the median of delivered / promised as widths in ln N and as factors."""
    t = table.assign(factor_ratio=table["delivered"] / table["promised"])
    return t.groupby(["setting", "overhead", "charged"], sort=False).agg(
        campaigns=("campaign", "count"), runs=("runs", "median"), median_run_flops=("median_run_flops", "median"),
        flops=("flops", "median"), cost=("cost", "median"), noise=("noise", "median"), before=("before", "median"),
        promised=("promised", "median"), delivered=("delivered", "median"), ln_ratio=("ratio", "median"),
        factor_ratio=("factor_ratio", "median")).reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=20)
    parser.add_argument("--first", type=int, default=0, help="first campaign seed (to split a long run)")
    parser.add_argument("--settings", nargs="*", default=list(SUGGEST_LAWS))
    parser.add_argument("--n-boot", type=int, default=50, help="bootstrap resamples of each final fit")
    parser.add_argument("--n-boot-suggest", type=int, default=20, help="ensemble members behind each suggestion")
    parser.add_argument("--n-starts", type=int, default=5,
                        help="L-BFGS starts of each fit, the best of Hoffmann's grid (scaling fit: 50)")
    parser.add_argument("--rows", help="append every campaign's rows to this CSV; summarise all rows in it")
    parser.add_argument("--timing", action="store_true",
                        help="only time one suggestion on 100 simulated runs, as `scaling suggest` makes it "
                             "(Approach 3 fit from 50 starts, 200 bootstrap members, 121 candidates)")
    parser.add_argument("--promise", action="store_true",
                        help="one round per campaign: the interval promised vs delivered (scaling.simulate.promise)")
    parser.add_argument("--overheads", nargs="+", type=float,
                        help="promise rounds at these per-run overheads (FLOP-equivalents), charged and blind")
    args = parser.parse_args()
    if args.timing:
        time_one_suggestion()
        return
    path = Path(args.rows) if args.rows else None
    table = pd.read_csv(path) if path and path.is_file() else pd.DataFrame()
    if args.promise or args.overheads:
        table = promise_rows(args, table, path, args.overheads or [0.0])
        with pd.option_context("display.width", 200, "display.float_format", "{:.3g}".format):
            print(promise_summary(table).to_string(index=False))
        return
    start = time.perf_counter()
    for name in args.settings:
        for seed in range(args.first, args.first + args.campaigns):
            rows = campaign(suggest_setting(name), seed, n_boot=args.n_boot, n_boot_suggest=args.n_boot_suggest,
                            n_starts=args.n_starts)
            table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
            if path:  # after every campaign: a long run stopped early keeps what it measured
                table.to_csv(path, index=False)
            print(f"{name} campaign {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    summary = campaign_summary(table)
    table = table.drop_duplicates(["setting", "campaign", "design"])  # a campaign is deterministic in its seed
    print(f"\n{len(table) // 3} campaigns, {time.perf_counter() - start:.0f} s this run")
    with pd.option_context("display.width", 160, "display.float_format", "{:.3g}".format):
        print(summary.to_string(index=False))
    for name, part in summary.groupby("setting", sort=False):
        by = part.set_index("design")
        ratio = by.loc["suggest", "median_factor"] / by.loc["grid", "median_factor"]
        log_ratio = np.log(by.loc["suggest", "median_factor"]) / np.log(by.loc["grid", "median_factor"])
        print(f"{name}: suggest's median interval factor / grid's = {ratio:.2f} (in ln N, width / width: "
              f"{log_ratio:.2f}); factor vs isoflop's {by.loc['suggest', 'median_factor'] / by.loc['isoflop', 'median_factor']:.2f}; "
              f"suggest coverage {by.loc['suggest', 'coverage']:.0%}")


if __name__ == "__main__":
    main()
