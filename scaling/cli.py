"""Command line: `scaling plan|run|status|fit|plot|compare|train`.

Each verb is a thin function over the package API; user errors (ScalingError) print as one line on
stderr with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd

from scaling.config import SweepConfig, is_safe_component, load_sweep
from scaling.errors import ConfigError, FitError, ScalingError
from scaling.plan import Plan, plan_sweep

log = logging.getLogger("scaling")

VERBS = ("plan", "run", "status", "fit", "plot", "compare", "train")


def _overrides(pairs: list[str] | None) -> dict[str, Any]:
    """`--set launch.max_parallel=4` -> {"launch.max_parallel": 4}; values are parsed as TOML."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair}: expected KEY=VALUE, e.g. launch.max_parallel=4")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value  # a bare string such as slurm partition names
    return out


def _load(args: argparse.Namespace) -> SweepConfig:
    overrides = _overrides(getattr(args, "set", None))
    if getattr(args, "backend", None):
        overrides["launch.backend"] = args.backend
    if getattr(args, "max_parallel", None) is not None:  # 0 too: refused by validation, not ignored
        overrides["launch.max_parallel"] = args.max_parallel
    return load_sweep(args.sweep, overrides)


MAX_N_BOOT = 100_000
"""--n-boot above this is refused: the resample table alone is n_boot x runs floats (1e8 x 20 runs = 15 GiB),
and 10^5 resamples already pin a 95% interval's ends to ~0.1% of the band."""


def check_args(args: argparse.Namespace) -> None:
    """One-line ConfigErrors for CLI arguments out of range, before anything is read, trained or written."""
    def bad(flag: str, value: Any, why: str) -> ConfigError:
        return ConfigError(f"{flag} {value}: {why}")

    n_boot = getattr(args, "n_boot", None)
    if n_boot is not None and not 0 <= n_boot <= MAX_N_BOOT:
        raise bad("--n-boot", n_boot, f"must be in [0, {MAX_N_BOOT:,}] (0 skips the bootstrap)")
    if getattr(args, "holdout", None) is not None and args.holdout < 0:
        raise bad("--holdout", args.holdout, "must be >= 0")
    if getattr(args, "threads", None) is not None and args.threads < 1:
        raise bad("--threads", args.threads, "must be >= 1")
    rate = getattr(args, "flops_per_s", None)
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise bad("--flops-per-s", rate, "must be a finite number > 0")
    if getattr(args, "max_parallel", None) is not None and args.max_parallel < 1:
        raise bad("--max-parallel", args.max_parallel, "must be >= 1")
    lo, hi = getattr(args, "min_flops", None), getattr(args, "max_flops", None)
    if lo is not None and hi is not None:
        if not 0 <= lo <= MAX_FLOPS_EXPONENT or not 0 <= hi <= MAX_FLOPS_EXPONENT:
            raise bad("--min-flops/--max-flops", f"{lo}/{hi}", f"powers of ten must be in [0, {MAX_FLOPS_EXPONENT}]")
        if lo > hi:
            raise bad("--min-flops", lo, f"is above --max-flops {hi}")
    out = getattr(args, "out", None)
    if out and Path(out).exists() and not Path(out).is_dir():
        raise bad("--out", out, "exists and is not a folder")


MAX_FLOPS_EXPONENT = 40
"""compare's budgets are powers of ten up to 1e40 FLOPs (published laws are fitted below 1e25)."""


def _printable(text: str) -> str:
    """Control characters (ANSI escapes, newlines, bells) from file names or values in an error message,
    escaped so the terminal prints them instead of obeying them, and the message stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def print_plan(plan: Plan, flops_per_s: float | None = None) -> None:
    frame = plan.to_frame()
    cfg = plan.sweep
    rate = flops_per_s or cfg.launch.est_flops_per_s
    frame["est_s"] = frame["flops"] / rate
    shown = frame[["run_id", "n_params", "n_params_non_embedding", "n_tokens", "flops", "flops_6nd",
                   "tokens_per_param", "n_steps", "est_s"]]
    print_table(shown)
    if plan.windows:
        print("\n" + "\n".join(plan.describe_windows()))
    parallel = max(1, min(cfg.launch.max_parallel, len(plan.runs)))
    est_total = plan.flops_to_train / rate  # WSD branches share their trunk: count it once
    if plan.flops_saved > 0:
        print(f"\nWSD trunk reuse: trains {plan.flops_to_train:.3g} FLOPs instead of {plan.total_flops:.3g} "
              f"for independent runs (saves {plan.flops_saved:.3g}, "
              f"{plan.flops_saved / plan.total_flops:.0%}); one job per trunk")
    print(f"\n{len(plan.runs)} runs, {plan.flops_to_train:.3g} FLOPs; est. {est_total / 3600:.2f} job-hours "
          f"at {rate:.3g} FLOP/s per job, ~{est_total / parallel / 60:.1f} min wall "
          f"on {parallel} parallel jobs ({cfg.launch.backend}); results in {cfg.sweep_dir}/")


SHOWN_ROWS = 60
"""Tables longer than this print their first and last SHOWN_ROWS // 2 rows and a count of the rest
(10^5 planned runs printed 10^5 lines); the totals below a table always cover every row."""


def print_table(table: pd.DataFrame, **options: Any) -> None:
    if len(table) > SHOWN_ROWS:
        half = SHOWN_ROWS // 2
        gap = pd.DataFrame([{c: "..." for c in table.columns}])
        shown = pd.concat([table.head(half).astype(object), gap, table.tail(half).astype(object)])
        note = f"({len(table) - 2 * half:,} of {len(table):,} rows not shown)"
    else:
        shown, note = table, None
    with pd.option_context("display.max_rows", SHOWN_ROWS + 1, "display.width", 200,
                           "display.float_format", _fmt, *[x for kv in options.items() for x in kv]):
        print(shown.to_string(index=False, float_format=_fmt))
    if note:
        print(note)


def cmd_plan(args: argparse.Namespace) -> int:
    plan = plan_sweep(_load(args))
    rate = args.flops_per_s
    if args.measure:
        from scaling.throughput import measure_flops_per_s  # imports torch

        rate = measure_flops_per_s(plan)
        print(f"measured {rate:.3g} FLOP/s per job (2 s on the largest model, "
              f"{plan.sweep.launch.threads_per_job} thread(s), CPU)")
    print_plan(plan, flops_per_s=rate)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from scaling.launch import launch

    cfg = _load(args)
    plan = plan_sweep(cfg)
    if cfg.launch.backend == "local":
        from scaling.data import load_corpus  # imports torch

        # A missing, empty or too-short corpus fails here in one line, not in every job; jobs reuse the cache.
        corpus = load_corpus(cfg.data, seq_len=cfg.model.seq_len)
        _retire_stale_data(plan, corpus.fingerprint)
    print_plan(plan)
    start = time.time()
    report = launch(plan, wait=not args.no_wait)
    print(f"\nlaunch: {report}")
    if args.no_wait:
        print(f"submitted; follow with: scaling status {args.sweep}")
        return 0
    unfinished = _wait_for_runs_elsewhere(plan, report.failed)
    if unfinished:
        print(f"sweep NOT finished after {time.time() - start:.0f} s: {len(unfinished)} of {len(plan.runs)} runs "
              f"were being trained elsewhere and have no result: {_describe(unfinished)}; the fit below is partial "
              f"(rerun `scaling run {args.sweep}` to train them)")
    else:
        print(f"sweep finished in {time.time() - start:.0f} s")
    if not args.no_fit:
        analyze(cfg.sweep_dir, n_boot=args.n_boot, plan=plan)
    return 0 if not report.failed and not unfinished else 1


def _wait_for_runs_elsewhere(plan: Plan, failed: list[str], poll_s: float = 1.0) -> list[str]:
    """Wait while another launcher (or an orphaned job) holds a planned run's lock, so that "finished" and
    the fit cover the whole sweep. Returns the planned runs that still have no final result and did not fail
    in this launch: another process had them and stopped (died, was cancelled) before finishing."""
    from scaling.results import read_result

    elsewhere = _running_elsewhere(plan)
    if elsewhere:
        print(f"waiting for {len(elsewhere)} run(s) being trained elsewhere (their lock is held by another "
              f"launch or job): {_describe(elsewhere)}", flush=True)
    while _running_elsewhere(plan):
        time.sleep(poll_s)
    sweep_dir = Path(plan.sweep.sweep_dir)
    return [r.run_id for r in plan.runs if r.run_id not in set(failed) and read_result(sweep_dir / r.run_id) is None]


def _retire_stale_data(plan: Plan, fingerprint: str) -> None:
    """Planned runs finished on an earlier version of the corpus (edited in place) are set aside and retrained."""
    from scaling.provenance import retire_stale, stale_data_runs

    stale = stale_data_runs(plan, fingerprint)
    for run_id, recorded in stale:
        retire_stale(Path(plan.sweep.sweep_dir) / run_id, recorded)
    if stale:
        old = sorted({fp for _, fp in stale})
        print(f"data changed: {len(stale)} finished run(s) were trained on corpus {', '.join(old)}, the corpus "
              f"is now {fingerprint}; retraining them (old results kept in each run's stale-data-*/): "
              f"{_describe([r for r, _ in stale])}")


def _running_elsewhere(plan: Plan) -> list[str]:
    """Planned runs without a final result whose lock another process holds (another launch is training them)."""
    from scaling.results import RunLock, read_result

    sweep_dir = Path(plan.sweep.sweep_dir)
    return [r.run_id for r in plan.runs if (sweep_dir / r.run_id).is_dir()
            and read_result(sweep_dir / r.run_id) is None and RunLock(sweep_dir / r.run_id).is_held_elsewhere()]


def _describe(ids: list[str], n: int = 3) -> str:
    return ", ".join(ids[:n]) + (f", ... ({len(ids)} in all)" if len(ids) > n else "")


def analyze(sweep_dir: Path, n_boot: int = 1000, holdout: int = 0, out_dir: Path | None = None,
            plan: Plan | None = None) -> None:
    """Table + fits + figures for a finished (or partly finished) sweep folder; with `plan`, of its runs only."""
    from scaling.provenance import check_one_corpus
    from scaling.results import export_csv, load_results

    frame = load_results(sweep_dir)
    if plan is not None:
        frame = _only_planned(frame, plan, str(plan.sweep.source or sweep_dir))
    for note in check_one_corpus(frame, sweep_dir):
        print(note)
    csv = export_csv(frame, Path(sweep_dir) / "runs.csv")
    print(f"\nresults table: {csv} ({len(frame)} runs)")
    fit_and_plot(frame, out_dir or Path(sweep_dir), n_boot=n_boot, holdout=holdout)


def _only_planned(frame: pd.DataFrame, plan: Plan, sweep: str) -> pd.DataFrame:
    """The rows of the plan's runs; says how many run folders of the sweep folder the plan no longer has."""
    from scaling.provenance import planned_rows

    mine, others, missing = planned_rows(frame, plan)
    if len(others):
        print(f"not in this sweep's plan: {len(others)} run folder(s) in {plan.sweep.sweep_dir}/ (left out; "
              f"`scaling fit {sweep} --all-runs` includes them): {_describe(others['run_id'].astype(str).tolist())}")
    if missing:
        print(f"planned but not started: {len(missing)} run(s): {_describe(missing)}")
    return mine


def fit_and_plot(frame: pd.DataFrame, out_dir: Path, n_boot: int, holdout: int = 0,
                 all_seeds: bool = False) -> None:
    """Fit, report and plot a sweep; a sweep of several architecture families gets one fit per family
    (in out_dir/<arch>/) and a side-by-side table and figures of their compute-optimal sizes."""
    from scaling.fit import fit_sweep, split_by_arch
    from scaling.plot import save_figures
    from scaling.results import write_json_atomic

    families = split_by_arch(frame)
    budgets = _budgets_for(frame)
    laws = {}
    for arch, part in families.items():
        if len(families) > 1 and not is_safe_component(arch):  # from spec.json or a CSV: a folder name here
            raise ConfigError(f"{out_dir}: column 'arch' = {arch!r}: must be one folder name (letters, digits, "
                              f"'-', '_', '.', not starting with '.') to hold its family's fit")
        where = out_dir / arch if len(families) > 1 else out_dir
        where.mkdir(parents=True, exist_ok=True)
        report = fit_sweep(part, n_boot=n_boot, n_holdout=holdout or None, budgets=budgets,
                           all_seeds=all_seeds)
        print(f"\n=== architecture: {arch} ({len(part)} runs) ===" if len(families) > 1 else "")
        print(report.to_text())
        write_json_atomic(where / "fit.json", report.to_dict())
        paths = save_figures(part, report, where / "plots")
        print(f"\nfit: {where / 'fit.json'}")
        for p in paths:
            print(f"plot: {p}")
        if report.law is not None:
            laws[arch] = report.law
    if len(families) > 1:
        compare_families(laws, budgets, out_dir)


def compare_families(laws: dict[str, Any], budgets: list[float], out_dir: Path) -> None:
    """Print and save the per-family laws side by side: exponents, then compute-optimal N and D."""
    from scaling.compare import compare_table
    from scaling.plot import plot_compute_optimal, plot_frontiers
    from scaling.results import export_csv

    print("\n=== architectures side by side ===")
    if len(laws) < 2:
        print(f"only {', '.join(laws) or 'no family'} has a fitted law; nothing to compare")
        return
    rows = []
    for arch, law in laws.items():
        row = {"arch": arch}
        for name in ("E", "A", "B", "alpha", "beta", "a", "b"):
            value = getattr(law.params_, name)
            band = law.interval(name) if getattr(law, "bootstrap_params_", None) is not None else None
            row[name] = f"{value:.4g}" + (f" [{band[0]:.3g}, {band[1]:.3g}]" if band else "")
        rows.append(row)
    print(pd.DataFrame(rows).to_string(index=False))
    table = compare_table(laws, budgets)
    print()
    print(_long_compare(table, list(laws)).to_string(index=False))
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    print(f"\ntable: {export_csv(table, out_dir / 'compare_archs.csv')}")
    for name, make in (("compute_optimal_by_arch.png", lambda p: plot_compute_optimal(laws, budgets, path=p)),
                       ("frontiers_by_arch.png", lambda p: plot_frontiers(laws, budgets, path=p))):
        make(plots / name)
        print(f"plot: {plots / name}")


def _budgets_for(frame: pd.DataFrame) -> list[float]:
    """Compute budgets for the compute-optimal table: the sweep's own range and two decades beyond.

    A law fitted on 1e11-1e13 FLOPs says little about 1e24; the table stays near the data.
    """
    import numpy as np

    flops = pd.to_numeric(frame.get("flops"), errors="coerce").dropna() if "flops" in frame else []
    if len(flops) == 0:
        return [float(c) for c in np.logspace(18, 25, 8)]
    lo, hi = np.floor(np.log10(flops.min())), np.ceil(np.log10(flops.max())) + 2
    return [float(c) for c in np.logspace(lo, hi, int(hi - lo) + 1)]


def _frame_for(source: str, all_runs: bool = False) -> tuple[pd.DataFrame, Path]:
    """A points frame from a sweep TOML (its planned runs, or every run folder with `all_runs`), a results
    folder or a CSV (no plan: every run folder or row); and where outputs go."""
    from scaling.fit import read_points_csv
    from scaling.results import load_results

    path = Path(source)
    if path.suffix.lower() == ".toml":
        cfg = load_sweep(path)
        sweep_dir = cfg.sweep_dir
        if not sweep_dir.is_dir():
            raise ConfigError(f"{path}: no results yet in {sweep_dir}/ (run: scaling run {path})")
        frame = load_results(sweep_dir)
        if all_runs:
            print(f"--all-runs: every run folder in {sweep_dir}/, planned by {path} or not ({len(frame)})")
            return frame, sweep_dir
        return _only_planned(frame, plan_sweep(cfg), str(path)), sweep_dir
    if path.is_dir():
        frame = load_results(path)
        if frame.empty:
            raise ConfigError(f"{path}: no run folders with spec.json in this folder")
        print(f"{path}: a results folder has no sweep plan: every run folder in it is used ({len(frame)})")
        return frame, path
    if path.suffix.lower() == ".csv" and path.is_file():
        frame = read_points_csv(path)
        print(f"{path}: a CSV has no sweep plan: every row is used ({len(frame)})")
        return frame, path.with_suffix("")
    raise ConfigError(f"{source}: not a sweep .toml, a results folder or a .csv file")


def cmd_status(args: argparse.Namespace) -> int:
    from scaling.launch import PROGRESS_COLUMNS, progress_line, summarize, sweep_status

    cfg = _load(args)
    table = sweep_status(plan_sweep(cfg))
    print_table(table.drop(columns=PROGRESS_COLUMNS), **{"display.max_colwidth": 120})
    counts = table["state"].value_counts().to_dict()
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    # The launcher's progress line, from the files alone (also for a Slurm sweep or a detached pool).
    print("progress: " + progress_line(summarize(table, slots=cfg.launch.max_parallel,
                                                 est_flops_per_s=cfg.launch.est_flops_per_s)))
    sweep_dir, planned = Path(cfg.sweep_dir), set(table["run_id"])
    others = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and (p / "spec.json").is_file()
                    and p.name not in planned) if sweep_dir.is_dir() else []
    if others:  # folders of an earlier version of the sweep file: fits leave them out (see _only_planned)
        print(f"not in this sweep's plan: {len(others)} run folder(s) in {sweep_dir}/: {_describe(others)}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from scaling.fit import select_done
    from scaling.provenance import check_one_corpus

    frame, out = _frame_for(args.source, all_runs=args.all_runs)
    for note in check_one_corpus(frame, args.source, allow_mixed=args.allow_mixed_data):
        print(note)
    done, excluded = select_done(frame)
    if len(done) < 2:  # no law can be fitted; fail in one line instead of writing an empty report
        raise FitError(f"{args.source}: {len(done)} usable run(s) of {len(frame)}; a fit needs at least 2"
                       + (f" ({excluded[0]}{', ...' if len(excluded) > 1 else ''})" if excluded else ""))
    out = Path(args.out) if args.out else out
    if Path(args.source).suffix.lower() == ".toml" or Path(args.source).is_dir():
        from scaling.results import export_csv

        print(f"results table: {export_csv(frame, out / 'runs.csv')}")
    fit_and_plot(frame, out, n_boot=args.n_boot, holdout=args.holdout, all_seeds=args.all_seeds)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    return cmd_fit(args)


def cmd_compare(args: argparse.Namespace) -> int:
    """Fit each source (Approach 3 + bootstrap) and tabulate compute-optimal sizes beside published laws."""
    import numpy as np

    from scaling.compare import compare_table, published_laws, source_labels
    from scaling.fit import ChinchillaLaw, fit_points, split_by_arch
    from scaling.plot import plot_frontiers
    from scaling.provenance import check_one_corpus
    from scaling.results import export_csv

    laws: dict[str, object] = {}
    published = published_laws()
    frames = [_frame_for(source) for source in args.sources]
    for source, (frame, _) in zip(args.sources, frames):
        for note in check_one_corpus(frame, source, allow_mixed=args.allow_mixed_data):
            print(note)
    # A/runs.csv and B/runs.csv are both "runs": distinct labels, or one law would replace the other.
    labels = source_labels([where for _, where in frames], taken=published)
    for (frame, where), label in zip(frames, labels):
        families = split_by_arch(frame)
        for arch, part in families.items():  # one law per architecture family (see split_by_arch)
            done, _ = fit_points(part)  # best LR per point, seed mean
            law = ChinchillaLaw().fit_frame(done)
            if args.n_boot:
                law.bootstrap(done["n_params"], done["n_tokens"], done["loss"], n_boot=args.n_boot)
            laws[f"{label} ({arch})" if len(families) > 1 else label] = law
    laws.update(published)
    budgets = np.logspace(args.min_flops, args.max_flops, args.max_flops - args.min_flops + 1)
    table = compare_table(laws, budgets)
    print(_long_compare(table, list(laws)).to_string(index=False))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        print(f"\ntable: {export_csv(table, out / 'compare.csv')}")
        fig_path = out / "frontiers.png"
        plot_frontiers(laws, budgets, path=fig_path)
        print(f"plot: {fig_path}")
    return 0


def _long_compare(table: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """compare_table's wide columns ("<law>/n_opt", ...) as one readable row per (budget, law)."""
    rows = []
    for _, r in table.iterrows():
        for label in labels:
            band = ""
            if f"{label}/n_opt_lo" in table:
                band = f"[{r[f'{label}/n_opt_lo']:.3g}, {r[f'{label}/n_opt_hi']:.3g}]"
            rows.append({"flops": f"{r['flops']:.0e}", "law": label, "n_opt": f"{r[f'{label}/n_opt']:.3g}",
                         "n_opt 95%": band, "d_opt": f"{r[f'{label}/d_opt']:.3g}",
                         "tokens/param": f"{r[f'{label}/tokens_per_param']:.3g}"})
    return pd.DataFrame(rows)


def cmd_train(args: argparse.Namespace) -> int:
    from scaling.results import SPEC
    from scaling.train import train_run

    if not (Path(args.run_dir) / SPEC).is_file():
        raise ConfigError(f"{args.run_dir}: not a run folder (no {SPEC}); `scaling run` writes them")

    result = train_run(Path(args.run_dir), num_threads=args.threads, device=args.device)
    print(json.dumps({k: result[k] for k in ("status", "val_loss", "train_loss", "wall_s")}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scaling", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", required=True)

    def sweep_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("sweep", help="sweep config, e.g. sweeps/tiny.toml")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config key, e.g. --set launch.max_parallel=4 (repeatable)")

    p = sub.add_parser("plan", help="print the runs a sweep would train (N, D, C, est. time); runs nothing")
    sweep_arg(p)
    p.add_argument("--flops-per-s", type=float, help="throughput per job for the time estimate "
                   "(default: [launch].est_flops_per_s)")
    p.add_argument("--measure", action="store_true",
                   help="measure the throughput with a 2-second training micro-benchmark first")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("run", help="train every missing run, then fit, plot and print compute-optimal sizes")
    sweep_arg(p)
    p.add_argument("--backend", choices=("local", "slurm"))
    p.add_argument("--max-parallel", type=int, help="concurrent runs (local) / array parallelism (slurm)")
    p.add_argument("--no-wait", action="store_true", help="submit and exit; follow with `scaling status`")
    p.add_argument("--no-fit", action="store_true", help="skip fitting and plots")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for intervals (default 1000)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="state of every run, read from disk")
    sweep_arg(p)
    p.set_defaults(func=cmd_status)

    for verb, helptext, func in (("fit", "fit scaling laws to a sweep or a CSV (params,tokens,loss)", cmd_fit),
                                 ("plot", "fit and draw every figure for a sweep or CSV", cmd_plot)):
        p = sub.add_parser(verb, help=helptext)
        p.add_argument("source", help="sweep .toml, results folder, or CSV with params,tokens,loss")
        p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
        p.add_argument("--holdout", type=int, default=0,
                       help="refit without the K largest-compute runs and report their prediction error")
        p.add_argument("--out", help="output folder (default: the sweep folder or beside the CSV)")
        p.add_argument("--all-seeds", action="store_true",
                       help="fit every seed as its own point (default: the mean loss over seeds per point)")
        p.add_argument("--all-runs", action="store_true",
                       help="for a sweep .toml: every run folder of its results folder, also those its "
                            "current plan does not have (default: the planned runs)")
        p.add_argument("--allow-mixed-data", action="store_true",
                       help="fit runs trained on different versions of the corpus together (default: refuse)")
        p.set_defaults(func=func)

    p = sub.add_parser("compare", help="compute-optimal N, D per budget: sweeps, CSVs and published laws")
    p.add_argument("sources", nargs="*", help="sweep .toml, results folders or CSVs")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--min-flops", type=int, default=15, help="smallest budget, as a power of ten")
    p.add_argument("--max-flops", type=int, default=25, help="largest budget, as a power of ten")
    p.add_argument("--out", help="folder for the comparison table and frontier plot")
    p.add_argument("--allow-mixed-data", action="store_true",
                   help="fit runs trained on different versions of the corpus together (default: refuse)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("train", help="(internal) train one run folder; what each job runs")
    p.add_argument("run_dir")
    p.add_argument("--threads", type=int)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        check_args(args)
        return args.func(args)
    except ScalingError as exc:
        print(f"{type(exc).__name__}: {_printable(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `scaling status ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 128 + 13  # as if killed by SIGPIPE, like other command-line tools
    except OSError as exc:  # the machine, not the code: a full disk, a missing permission (e.g. writing a plot)
        where = f"{exc.filename}: " if exc.filename else ""
        print(_printable(f"{type(exc).__name__}: {where}{exc.strerror or exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", 2)  # scaling.launch.Interrupted: SIGTERM or SIGHUP
        print(f"interrupted{f' ({exc})' if signum != 2 else ''}; finished runs are kept, rerun the same "
              "command to continue", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
