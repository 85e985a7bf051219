"""Command line: `scaling plan|run|status|fit|plot|report|compare|suggest|train`.

Each verb is a thin function over the package API; user errors (ScalingError) print as one line on
stderr with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd

from scaling import hparams
from scaling.analysis.extrapolation import EXTRAPOLATION_FACTOR
from scaling.calibrate import calibrate, lpt_makespan, save_measured_speed
from scaling.config import MAX_PARAMS, MAX_TOKENS, SweepConfig, load_sweep
from scaling.errors import ConfigError, FitError, ScalingError
from scaling.launch.progress import resumable_folders, resume_lines
from scaling.safe import printable
from scaling.plan import Plan, equivalent_grid, plan_sweep
from scaling.results import describe_ids

log = logging.getLogger("scaling")

VERBS = ("plan", "run", "status", "fit", "plot", "report", "compare", "suggest", "curves", "train")


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
    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed < 2 ** 32:  # numpy's generators refuse a negative seed (a traceback)
        raise bad("--seed", seed, f"must be in [0, {2 ** 32 - 1}]")
    for flag, cap in (("max_params", MAX_PARAMS), ("max_tokens", MAX_TOKENS)):  # the caps any planned run has
        value = getattr(args, flag, None)
        if value is not None and not (math.isfinite(value) and 0 < value <= cap):
            raise bad(f"--{flag.replace('_', '-')}", value, f"must be a finite number in (0, {cap:g}]")
    lo, hi = getattr(args, "min_flops", None), getattr(args, "max_flops", None)
    if lo is not None and hi is not None:
        if not 0 <= lo <= MAX_FLOPS_EXPONENT or not 0 <= hi <= MAX_FLOPS_EXPONENT:
            raise bad("--min-flops/--max-flops", f"{lo}/{hi}", f"powers of ten must be in [0, {MAX_FLOPS_EXPONENT}]")
        if lo > hi:
            raise bad("--min-flops", lo, f"is above --max-flops {hi}")
    if getattr(args, "at", None) is not None:
        args.at = [flops_value("--at", v) for v in args.at]
    out = getattr(args, "out", None)
    if out and getattr(args, "func", None) not in (cmd_suggest, cmd_report) and Path(out).exists() and not Path(out).is_dir():
        raise bad("--out", out, "exists and is not a folder")


def flops_value(flag: str, text: str) -> float:
    """A budget in FLOPs from the command line: a finite number > 0, else one ConfigError naming flag and value."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{flag} {printable(str(text))}: must be a finite number of FLOPs > 0 (e.g. 1e21)")
    return value


MAX_FLOPS_EXPONENT = 40
"""compare's budgets are powers of ten up to 1e40 FLOPs (published laws are fitted below 1e25)."""


_printable = printable  # control characters from files escaped (scaling.safe.printable)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def print_plan(plan: Plan, flops_per_s: float | None = None, flops_per_s_source: str = "") -> None:
    """The plan's table and totals. Its time estimate: `flops_per_s` when given (--flops-per-s, --measure), else
    calibrated from this machine's finished runs (scaling.calibrate), else [launch].est_flops_per_s."""
    frame = plan.to_frame()
    cfg = plan.sweep
    if flops_per_s:
        seconds = {r.run_id: r.flops / flops_per_s for r in plan.runs}
        source = flops_per_s_source or f"{flops_per_s:.3g} FLOP/s per job (--flops-per-s)"
    else:
        calibration = calibrate(plan)
        seconds, source = calibration.seconds, calibration.source
    frame["est_s"] = frame["run_id"].map(seconds)
    shown = frame[["run_id", "n_params", "n_params_non_embedding", "n_tokens", "flops", "flops_6nd",
                   "tokens_per_param", "n_steps", "est_s"] + [c for c in ("unique_tokens", "epochs") if c in frame]]
    print_table(shown)
    t = cfg.train
    print(hparams.describe_lr_rule(t.lr_rule, t.lr, (t.lr_law.a, t.lr_law.b, t.lr_law.c), t.lr_sweep))
    if plan.windows:
        print("\n" + "\n".join(plan.describe_windows()))
    parallel = max(1, min(cfg.launch.max_parallel, len(plan.runs)))
    share = plan.flops_to_train / plan.total_flops if plan.total_flops > 0 else 1.0  # WSD: a trunk counts once
    est_total = share * sum(seconds.values())
    est_wall = share * lpt_makespan(seconds.values(), parallel)
    if plan.flops_saved > 0:
        print(f"\nWSD trunk reuse: trains {plan.flops_to_train:.3g} FLOPs instead of {plan.total_flops:.3g} "
              f"for independent runs (saves {plan.flops_saved:.3g}, "
              f"{plan.flops_saved / plan.total_flops:.0%}); one job per trunk")
    if plan.sweep.grid.design == "curves":
        grid = equivalent_grid(plan.sweep)
        print(f"\nCurves design: {len(plan.runs)} runs, {plan.flops_to_train:.3g} FLOPs; the equivalent grid "
              f"(every size x every n_tokens, cosine): {len(grid.runs)} runs, {grid.flops_to_train:.3g} FLOPs "
              f"({plan.flops_to_train / grid.flops_to_train:.0%} of it); the curve law supplies the other budgets")
    print(f"\n{len(plan.runs)} runs, {plan.flops_to_train:.3g} FLOPs; est. {est_total / 3600:.2f} job-hours, "
          f"~{est_wall / 60:.1f} min wall on {parallel} parallel jobs, longest first ({cfg.launch.backend}); "
          f"results in {cfg.sweep_dir}/")
    print(f"time estimate: {source}")


SHOWN_ROWS = 60
"""Tables longer than this print their first and last SHOWN_ROWS // 2 rows and a count of the rest
(10^5 planned runs printed 10^5 lines); the totals below a table always cover every row."""


def print_table(table: pd.DataFrame, **options: Any) -> None:
    # A missing value (a done run's job id, log or error: None or NaN) prints blank, not "None", "nan" or "NaN";
    # the other cells from run files (run-folder names, status.json errors) escaped: they reach a terminal.
    table = table.astype(object).where(table.notna(), "")
    table = table.apply(lambda col: col.map(lambda v: v if isinstance(v, (int, float)) else printable(v)))
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

        smallest, largest = (min(plan.runs, key=lambda r: r.flops_per_token),
                             max(plan.runs, key=lambda r: r.flops_per_token))
        rates = {float(largest.n_params): measure_flops_per_s(plan, seconds=1.0)}
        if smallest.n_params != largest.n_params:
            rates[float(smallest.n_params)] = measure_flops_per_s(plan, seconds=1.0, smallest=True)
        cache = save_measured_speed(plan, rates)
        print(f"measured {', '.join(f'{r:.3g}' for r in rates.values())} FLOP/s per job (1 s each on the largest and "
              f"smallest model, {plan.sweep.launch.threads_per_job} thread(s), CPU); kept in {cache}")
    print_plan(plan, flops_per_s=rate)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from scaling.launch import launch

    cfg = _load(args)
    plan = plan_sweep(cfg)
    print_plan(plan)
    if not cfg.train.command:  # a command resumes from its own checkpoints, which only it can read
        for line in resume_lines(resumable_folders(plan), {r.run_id: r.n_steps for r in plan.runs}):
            print(line)
    start = time.time()
    # launch() also loads the corpus, retires runs of an edited one and waits for runs another launcher trains
    report = launch(plan, wait=not args.no_wait)
    print(f"\nlaunch: {report}")
    if args.no_wait:
        print(f"submitted; follow with: scaling status {args.sweep}")
        return 0
    if report.unfinished:
        print(f"sweep NOT finished after {time.time() - start:.0f} s: {len(report.unfinished)} of {len(plan.runs)} "
              f"runs were being trained elsewhere and have no result: {describe_ids(report.unfinished)}; the fit "
              f"below is partial (rerun `scaling run {args.sweep}` to train them)")
    else:
        print(f"sweep finished in {time.time() - start:.0f} s")
    if not args.no_fit:
        try:
            analyze(cfg.sweep_dir, n_boot=args.n_boot, plan=plan)
        except FitError as exc:  # too few finished runs: the launch's own outcome decides the exit code
            print(f"fit: {exc}")
    return 0 if not report.failed and not report.unfinished else 1


def analyze(sweep_dir: Path, n_boot: int = 1000, holdout: int = 0, out_dir: Path | None = None,
            plan: Plan | None = None) -> None:
    """Table + fits + figures of a sweep folder (scaling.pipeline.analyze; imported here on use)."""
    from scaling.pipeline import analyze as analyze_sweep

    analyze_sweep(sweep_dir, n_boot=n_boot, holdout=holdout, out_dir=out_dir, plan=plan)


def cmd_status(args: argparse.Namespace) -> int:
    from scaling.launch import progress_line, summarize, sweep_status
    from scaling.results import PROGRESS_COLUMNS

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
        print(f"not in this sweep's plan: {len(others)} run folder(s) in {sweep_dir}/: {describe_ids(others)}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from scaling.pipeline import fit_source

    if getattr(args, "curves", False):
        from scaling.curves_pipeline import curves_fit

        curves_fit(args.source, n_boot=min(args.n_boot, 200))
    fit_source(args.source, out=args.out, n_boot=args.n_boot, holdout=args.holdout, all_seeds=args.all_seeds,
               all_runs=args.all_runs, allow_mixed_data=args.allow_mixed_data, reuse=args.verb == "plot",
               at=getattr(args, "at", None))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    return cmd_fit(args)  # reuses the saved fit.json when it matches (see fit_source)


def cmd_report(args: argparse.Namespace) -> int:
    from scaling.pipeline import report_source

    report_source(args.source, out=args.out, n_boot=args.n_boot, holdout=args.holdout, all_runs=args.all_runs,
                  allow_mixed_data=args.allow_mixed_data)
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    from scaling.curves_pipeline import curves_report

    curves_report(args.source, args.fit, args.predict, law=args.law, n_boot=args.n_boot, out=args.out)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Fit each source (Approach 3 + bootstrap) and tabulate compute-optimal sizes beside published laws."""
    import numpy as np

    from scaling.pipeline import compare_sources

    budgets = np.logspace(args.min_flops, args.max_flops, args.max_flops - args.min_flops + 1)
    compare_sources(args.sources, budgets, n_boot=args.n_boot, out=args.out, allow_mixed_data=args.allow_mixed_data)
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    from scaling.suggest import suggest_source

    suggest_source(args.source, target_flops=args.target_flops, budget=args.budget, out=args.out, seed=args.seed,
                   n_boot=args.n_boot, max_params=args.max_params, max_tokens=args.max_tokens,
                   repeats=args.repeats, run_overhead_s=args.run_overhead, throughput=args.throughput)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from scaling.results import SPEC, read_json

    if not (Path(args.run_dir) / SPEC).is_file():
        raise ConfigError(f"{args.run_dir}: not a run folder (no {SPEC}); `scaling run` writes them")
    if (read_json(Path(args.run_dir) / SPEC) or {}).get("command"):  # [train].command: scaling.external runs it
        from scaling.external import run_command

        result = run_command(Path(args.run_dir), num_threads=args.threads or 1)
        print(json.dumps({k: result[k] for k in ("status", "val_loss", "train_loss", "wall_s")}))
        return 0
    from scaling.train import train_run  # imports torch

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
                                 ("plot", "draw every figure for a sweep or CSV (from its saved fit.json when it matches, else fit)",
                                  cmd_plot)):
        p = sub.add_parser(verb, help=helptext)
        p.add_argument("source", help="sweep .toml, results folder, or CSV with params,tokens,loss")
        if verb == "fit":
            p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
        else:
            p.add_argument("--n-boot", type=int, help="bootstrap resamples (default: draw from the saved fit.json "
                           "when it was fitted on the same points, with its resamples; else 1000)")
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
        if verb == "fit":
            # `--at -1e20` must reach check_args as a value (one ConfigError line), not as an unknown option:
            # argparse takes '-1' and '-.5' for numbers but not '-1e20' (the pattern Python 3.13 widened)
            p._negative_number_matcher = re.compile(r"^-\.?\d")
            p.add_argument("--at", nargs="+", metavar="C",
                           help="also print N_opt, D_opt and the loss at these budgets (FLOPs, C = 6ND) with 95%% "
                                f"bootstrap intervals, marked extrapolated past {EXTRAPOLATION_FACTOR:g}x the runs' compute")
        p.add_argument("--curves", action="store_true",
                       help="also predict each size's end points at every budget from its loss curves (multi-power "
                            "law), print them beside the trained ones and fit Approach 3 to them")
        p.set_defaults(func=func)

    p = sub.add_parser("report", help="fit a sweep or CSV and write one self-contained HTML page: the law with "
                       "intervals and verdicts, the compute-optimal table, every figure, the runs, the diagnostics")
    p.add_argument("source", help="sweep .toml, results folder, or CSV with params,tokens,loss")
    p.add_argument("--out", help="the page (default: report.html in the sweep folder, <stem>_report.html beside a CSV)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--holdout", type=int, default=0,
                   help="refit without the K largest-compute runs and report their prediction error")
    p.add_argument("--all-runs", action="store_true",
                   help="for a sweep .toml: every run folder of its results folder, also unplanned ones")
    p.add_argument("--allow-mixed-data", action="store_true",
                   help="fit runs trained on different versions of the corpus together (default: refuse)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("curves", help="fit a loss-curve law (LR-schedule aware) to some runs, predict others")
    p.add_argument("source", help="sweep .toml, results folder, or long CSV with columns run,step,lr,loss")
    p.add_argument("--fit", nargs="+", required=True, metavar="RUN", help="runs the law is fitted to")
    p.add_argument("--predict", nargs="+", required=True, metavar="RUN", help="runs it predicts")
    p.add_argument("--law", choices=("mpl", "tissue"), default="mpl",
                   help="multi-power law (Luo et al. 2025, default) or Tissue et al. 2024")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap refits over whole runs (default 200)")
    p.add_argument("--out", help="figure path (default: curves.png in the results folder or beside the CSV)")
    p.set_defaults(func=cmd_curves)

    p = sub.add_parser("compare", help="compute-optimal N, D per budget: sweeps, CSVs and published laws")
    p.add_argument("sources", nargs="*", help="sweep .toml, results folders or CSVs")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--min-flops", type=int, default=15, help="smallest budget, as a power of ten")
    p.add_argument("--max-flops", type=int, default=25, help="largest budget, as a power of ten")
    p.add_argument("--out", help="folder for the comparison table and frontier plot")
    p.add_argument("--allow-mixed-data", action="store_true",
                   help="fit runs trained on different versions of the corpus together (default: refuse)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("suggest", help="propose the next runs: those expected to narrow N_opt(C*)'s 95%% interval "
                       "most per FLOP, written as a sweep that extends SOURCE")
    p.add_argument("source", help="sweep .toml (extended), results folder or CSV with params,tokens,loss")
    p.add_argument("--target-flops", type=float, required=True, help="C*: the budget whose N_opt matters (6ND)")
    p.add_argument("--budget", type=float, required=True, help="FLOPs the proposed runs may cost in all")
    p.add_argument("--out", help="the extended sweep file (default: <source stem>_next.toml beside it; a CSV "
                                 "source gets <stem>_next.csv)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (same seed, same proposal)")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap members of the posterior (default 200)")
    p.add_argument("--max-params", type=float, help="largest model a proposed run may have (default: 2x the "
                                                    "largest so far)")
    p.add_argument("--max-tokens", type=float, help="most tokens a proposed run may train (default: 4x the most "
                                                    "so far)")
    p.add_argument("--repeats", action="store_true",
                   help="also propose points already measured (repeats: another seed of the same run)")
    p.add_argument("--run-overhead", type=float, default=0.0, metavar="SECONDS",
                   help="fixed cost of each run (start-up, data, evaluation), charged against the budget at "
                        "--throughput FLOP/s (default 0)")
    p.add_argument("--throughput", type=float, metavar="FLOP/S",
                   help="FLOP/s that converts --run-overhead (default: the median of the finished runs')")
    p.set_defaults(func=cmd_suggest)

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
