"""WSD trunk reuse vs independent cosine runs: fitted exponents and FLOPs on the same grid.

Trains sweeps/wsd_vs_cosine.toml twice, as planned (schedule = "wsd": one trunk per size, a cooldown
branch per budget) and with schedule = "cosine" (every (N, D) from scratch), fits ChinchillaLaw to each and
prints alpha, beta, a, b, their differences and the FLOP ratio. Target: |d alpha|, |d beta| <= 0.03 at
<= 40% of the cosine FLOPs. A few minutes on 2 CPU cores; finished runs are reused on a second call.

    python benchmarks/bench_wsd.py [--results results] [--n-boot 0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from scaling.config import load_sweep
from scaling.errors import FitError
from scaling.analysis import ChinchillaLaw, fit_loss_vs_tokens, select_done
from scaling.launch import launch
from scaling.plan import plan_sweep
from scaling.provenance import planned_rows
from scaling.results import load_results

SWEEP = Path(__file__).resolve().parents[1] / "sweeps" / "wsd_vs_cosine.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default=str(SWEEP))
    parser.add_argument("--results", default="results", help="results root (default: results)")
    parser.add_argument("--n-boot", type=int, default=0, help="bootstrap resamples for exponent intervals")
    args = parser.parse_args()
    out: dict[str, dict[str, float]] = {}
    plans = {}
    points: dict[str, object] = {}
    laws: dict[str, ChinchillaLaw] = {}
    for schedule in ("cosine", "wsd"):
        cfg = load_sweep(args.sweep, {"name": f"{load_sweep(args.sweep).name}-{schedule}",
                                      "train.schedule": schedule, "results_dir": args.results})
        plan = plans[schedule] = plan_sweep(cfg)
        t0 = time.perf_counter()
        report = launch(plan, verbose=False)
        wall = time.perf_counter() - t0
        frame, _, _ = planned_rows(load_results(cfg.sweep_dir), plan.run_ids)  # this sweep's runs, not older folders
        done, notes = select_done(frame)
        # Same (N, D) order under both schedules, so one bootstrap seed resamples the same grid points.
        done = done.sort_values(["n_params", "n_tokens"]).reset_index(drop=True)
        points[schedule] = done
        # Per-size L(D) = E + A / D^beta_N slices: defined even when Approach 3 is not (see below).
        slices = fit_loss_vs_tokens(done).table
        out[schedule] = {"n_runs": len(done), "flops_planned": plan.flops_to_train, "wall_s": wall,
                         "failed": len(report.failed),
                         "beta_per_size": {f"{n:.0f}": a for n, a in zip(slices["fixed"], slices["alpha"])}}
        try:
            law = ChinchillaLaw().fit(done["n_params"], done["n_tokens"], done["loss"])
        except FitError as exc:
            print(f"{schedule}: Approach 3 not fitted: {exc}")
            nan = float("nan")
            out[schedule].update(alpha=nan, beta=nan, a=nan, b=nan, E=nan)
            continue
        p = law.params_
        laws[schedule] = law
        out[schedule].update(alpha=p.alpha, beta=p.beta, a=p.a, b=p.b, E=p.E)
        if args.n_boot:
            law.bootstrap(done["n_params"], done["n_tokens"], done["loss"], n_boot=args.n_boot, seed=0)
            for name in ("alpha", "beta"):
                out[schedule][f"{name}_95"] = list(law.interval(name))
    for schedule, plan in plans.items():
        frame, _, _ = planned_rows(load_results(plan.sweep.sweep_dir), plan.run_ids)
        # FLOPs actually spent, from the results: WSD branches record their own cooldown, trunks are shared.
        if schedule == "wsd":
            spent = 0.0
            trunks: dict[str, float] = {}
            for run_dir in frame["run_dir"]:
                result = json.loads((Path(run_dir) / "result.json").read_text())
                spent += result.get("flops_spent", result["flops"])
                tid = result.get("trunk_id")
                if tid:
                    trunks[tid] = max(trunks.get(tid, 0.0), result.get("flops_trunk", 0.0))
            out[schedule]["flops_spent"] = spent + sum(trunks.values())
        else:
            out[schedule]["flops_spent"] = float(frame["flops"].sum())
    cos, wsd = out["cosine"], out["wsd"]
    print(f"{'':>8} {'alpha':>8} {'beta':>8} {'a':>8} {'b':>8} {'E':>8} {'runs':>5} {'FLOPs':>10} {'wall_s':>7}")
    for name, row in out.items():
        print(f"{name:>8} {row['alpha']:8.4f} {row['beta']:8.4f} {row['a']:8.4f} {row['b']:8.4f} "
              f"{row['E']:8.4f} {row['n_runs']:5d} {row['flops_spent']:10.3g} {row['wall_s']:7.0f}")
    d_alpha, d_beta = wsd["alpha"] - cos["alpha"], wsd["beta"] - cos["beta"]
    ratio = wsd["flops_spent"] / cos["flops_spent"]
    print(f"\nwsd - cosine: d_alpha = {d_alpha:+.4f}, d_beta = {d_beta:+.4f}, d_a = {wsd['a'] - cos['a']:+.4f}, "
          f"d_b = {wsd['b'] - cos['b']:+.4f}; FLOPs ratio {ratio:.1%} "
          f"(planned {plans['wsd'].flops_to_train / plans['cosine'].total_flops:.1%})")
    paired = _paired_intervals(points, laws) if args.n_boot else {}
    for name, (lo, hi, n) in paired.items():
        print(f"  paired bootstrap ({n} resamples of the same grid points): d_{name} 95% interval "
              f"[{lo:+.4f}, {hi:+.4f}]")
    out["paired_95"] = {k: [lo, hi] for k, (lo, hi, _n) in paired.items()}
    ok = max(abs(d_alpha), abs(d_beta)) <= 0.03 and ratio <= 0.40
    print(f"target (|d| <= 0.03 at <= 40% FLOPs): {'met' if ok else 'NOT met'}")
    print("per-size data exponents beta_N of L(D) = E + A / D^beta_N (N: cosine, wsd, difference):")
    for n, b_cos in cos["beta_per_size"].items():
        b_wsd = wsd["beta_per_size"][n]
        print(f"  N={float(n):9.3g}  {b_cos:.4f}  {b_wsd:.4f}  {b_wsd - b_cos:+.4f}")
    print(json.dumps(out, indent=1))


def _paired_intervals(points: dict, laws: dict) -> dict[str, tuple[float, float, int]]:
    """95% intervals of wsd - cosine for alpha and beta over resamples that drew the same (N, D) points.

    The spread of a difference between two fits of one grid: what "within 0.03" can be told apart from.
    """
    cos, wsd = points.get("cosine"), points.get("wsd")
    if set(laws) != {"cosine", "wsd"} or cos is None or wsd is None or len(cos) != len(wsd) or not (
            (cos[["n_params", "n_tokens"]].to_numpy() == wsd[["n_params", "n_tokens"]].to_numpy()).all()):
        print("  paired bootstrap skipped: the two schedules do not have the same finished grid points")
        return {}
    a, b = laws["cosine"].bootstrap_params_, laws["wsd"].bootstrap_params_
    both = a.index.intersection(b.index)  # resamples that converged under both schedules
    out = {}
    for name in ("alpha", "beta"):
        diff = (b.loc[both, name] - a.loc[both, name]).to_numpy()
        out[name] = (float(np.quantile(diff, 0.025)), float(np.quantile(diff, 0.975)), len(both))
    return out


if __name__ == "__main__":
    main()
