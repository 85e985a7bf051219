"""What `scaling fit|plot|compare` and the fit at the end of `scaling run` do, from a source to files.

Read a source, choose its points once per architecture family, fit, print the report, write fit.json,
runs.csv and every figure.

The CLI parses arguments and calls these; printing is part of the job (the reports are for a terminal).
The layer just below the CLI: it uses the fits (scaling.analysis), plans, figures and comparisons, and
nothing below imports it. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling.analysis import lr_law
from scaling.analysis.approach3 import ChinchillaLaw
from scaling.analysis.at_compute import at_compute
from scaling.analysis.extrapolation import data_flops, describe_range
from scaling.analysis.points import Points, read_points_csv, select_done, select_points, split_by_arch
from scaling.analysis.report import fit_sweep
from scaling.compare import compare_table, published_laws, source_labels
from scaling.config import is_safe_component, load_sweep
from scaling.errors import ConfigError, FitError
from scaling.page import Section, TextSection, render_page
from scaling.plan import Plan, plan_sweep
from scaling.plot import loss_label, plot_compute_optimal, plot_frontiers, save_figures
from scaling.provenance import check_one_corpus, planned_rows
from scaling.repetition import (allocation_table, draw_repetition, fit_frame, fit_repetition, repeated_mask,
                                repetition_report)
from scaling.results import arch_label, describe_ids, export_csv, load_results, read_json, read_metrics, write_json_atomic
from scaling.safe import printable


def family_folder(arch: str) -> str:
    """The folder of one family's fit: the arch, with a plug-in's "pkg.mod:build" read as pkg.mod.build (as its
    run ids read; ':' is not a safe folder name)."""
    return arch_label(arch)


def analyze(sweep_dir: Path, n_boot: int = 1000, holdout: int = 0, out_dir: Path | None = None,
            plan: Plan | None = None) -> None:
    """The fit at the end of `scaling run`: the same report as `scaling fit` on the sweep (report_frame), of the
    plan's runs when given (the plan `run` launched, --set overrides included)."""
    frame = load_results(sweep_dir)
    source = str(plan.sweep.source or sweep_dir) if plan is not None else str(sweep_dir)
    if plan is not None:
        frame = only_planned(frame, plan, source)
    report_frame(frame, out_dir or Path(sweep_dir), source, n_boot=n_boot, holdout=holdout, run_folders=True)


def say_repeated(frame: pd.DataFrame) -> pd.Series:
    """The runs that repeat their data, said in one line: Approach 3 assumes fresh data, so it fits the
    single-epoch runs and the data-constrained law fits all of them."""
    repeated = repeated_mask(frame)
    if repeated.any():
        print(f"{int(repeated.sum())} of {len(frame)} runs repeat their data ([grid].unique_tokens): Approach 3 below "
              f"fits the other {int((~repeated).sum())}; the data-constrained law after it fits all")
    return repeated


def only_planned(frame: pd.DataFrame, plan: Plan, sweep: str) -> pd.DataFrame:
    """The rows of the plan's runs; says how many run folders of the sweep folder the plan no longer has."""
    mine, others, missing = planned_rows(frame, plan.run_ids)
    if len(others):
        print(f"not in this sweep's plan: {len(others)} run folder(s) in {plan.sweep.sweep_dir}/ (left out; "
              f"`scaling fit {sweep} --all-runs` includes them): {describe_ids(others['run_id'].astype(str).tolist())}")
    if missing:
        print(f"planned but not started: {len(missing)} run(s): {describe_ids(missing)}")
    return mine


DEFAULT_N_BOOT = 1000
"""Bootstrap resamples of `scaling fit` (and of `scaling plot` when there is no saved fit to draw from)."""


def fit_source(source: str, out: str | Path | None = None, n_boot: int | None = DEFAULT_N_BOOT, holdout: int = 0,
               all_seeds: bool = False, all_runs: bool = False, allow_mixed_data: bool = False,
               reuse: bool = False, at: list[float] | None = None) -> None:
    """`scaling fit|plot SOURCE`: fit a sweep .toml, results folder or CSV and write its report and figures
    (to `out`, default the sweep folder or beside the CSV); FitError when fewer than 2 runs are usable.
    `at` (`--at C ...`): also print N_opt, D_opt and the loss at those budgets with their intervals.
    `reuse` (`scaling plot`): draw from the saved fit.json when it was fitted on the same points with the same
    resamples (`n_boot` None: whatever it has), else say why it refits."""
    frame, where = frame_for(source, all_runs=all_runs)
    report_frame(frame, Path(out) if out else where, source, n_boot=n_boot, holdout=holdout, all_seeds=all_seeds,
                 allow_mixed_data=allow_mixed_data, reuse=reuse, at=at,
                 run_folders=Path(source).suffix.lower() == ".toml" or Path(source).is_dir())


def report_frame(frame: pd.DataFrame, where: Path, source: str, *, n_boot: int | None = DEFAULT_N_BOOT,
                 holdout: int = 0, all_seeds: bool = False, allow_mixed_data: bool = False, reuse: bool = False,
                 at: list[float] | None = None, run_folders: bool = False) -> None:
    """The one body of `scaling fit` and of the fit after `scaling run`: corpus check, runs.csv (for run
    folders), the LR/batch laws, Approach 1-3 per family with figures, the data-constrained law when runs
    repeat their data, and the --at rows. FitError when fewer than 2 runs are usable."""
    for note in check_one_corpus(frame, source, allow_mixed=allow_mixed_data):
        print(note)
    if run_folders:  # the table of the runs, even of too few to fit
        print(f"results table: {export_csv(frame, where / 'runs.csv')} ({len(frame)} runs)")
    done, excluded = select_done(frame)
    if len(done) < 2:  # no law can be fitted; fail in one line instead of writing an empty report
        raise FitError(f"{source}: {len(done)} usable run(s) of {len(frame)}; a fit needs at least 2"
                       + (f" ({excluded[0]}{', ...' if len(excluded) > 1 else ''})" if excluded else ""))
    boots = DEFAULT_N_BOOT if n_boot is None else n_boot  # `scaling plot` (None): the laws below fit with the default
    law_lines = hparam_law_lines(frame, source, n_boot=boots)
    repeated = say_repeated(frame)  # a bad lr column failed above, before the fit
    laws = fit_and_plot(frame[~repeated], where, n_boot=n_boot, holdout=holdout, all_seeds=all_seeds, reuse=reuse)
    for line in law_lines:
        print(line)
    if repeated.any():  # Approach 3 above fitted the single-epoch runs; the data-constrained law fits all
        for line in fit_repetition(frame, where, budgets_for(frame), boots):
            print(line)
    if at:
        print("\nat the budgets asked for (--at), Approach 3:")
        for arch, law in laws.items():
            for row in at_compute(law, at):
                print(f"  {printable(arch) + ': ' if len(laws) > 1 else ''}{row.describe()}")
        if not laws:
            print("  no Approach 3 law was fitted (see diagnostics above): nothing to read at --at")


def hparam_law_lines(frame: pd.DataFrame, source: str, n_boot: int = 1000) -> list[str]:
    """The LR and batch-size laws (scaling.analysis.lr_law) of a frame with several values of `lr` or
    `batch_size` per (N, D) point (an lr_sweep / batch_sweep, or such CSV columns); none where neither varies.
    A run that did not finish counts as a swept value with no loss. ConfigError for a sweep of < 3 values per
    point or a non-positive value; a law with fewer than 2 located optima is reported as not identified."""
    lines = []
    status = frame["status"] if "status" in frame.columns else pd.Series("done", index=frame.index)
    for key in ("lr", "batch_size"):
        if key not in frame.columns or frame.groupby(["n_params", "n_tokens"])[key].nunique().max() <= 1:
            continue
        loss = frame["loss"].where(status == "done")
        rows = [(float(n), float(d), float(v), float(x) if pd.notna(x) else math.inf)
                for n, d, v, x in zip(frame["n_params"], frame["n_tokens"], frame[key], loss)]
        try:
            points = lr_law.optima(rows, key, source)
        except lr_law.LawInputError as exc:
            raise ConfigError(str(exc)) from None
        try:
            lines += lr_law.report(points, key, n_boot=n_boot, source=source)
        except lr_law.LawInputError as exc:
            lines.append(f"{'LR' if key == 'lr' else 'Batch'} law: not identified ({exc})")
    return lines


def fit_key(points: Points, n_boot: int, seed: int = 0) -> dict[str, object]:
    """What an Approach 3 fit depends on: a fingerprint of its points (N, D, loss as float64, sorted), their
    count, the resamples and their seed. A fit.json with the same key holds the fit these would give."""
    frame = points.frame[["n_params", "n_tokens", "loss"]].astype(float)
    values = frame.sort_values(list(frame.columns), kind="stable").to_numpy()
    digest = hashlib.sha256(values.tobytes()).hexdigest()[:16]
    return {"points": digest, "n_points": len(frame), "n_boot": int(n_boot), "seed": int(seed)}


def saved_law(path: Path, points: Points, n_boot: int | None) -> tuple[ChinchillaLaw | None, int, str]:
    """(the law saved in fit.json at `path`, its n_boot, "") when it was fitted on these points (with
    `n_boot` resamples, when given); else (None, the n_boot to fit with, why it must be refitted)."""
    wanted = DEFAULT_N_BOOT if n_boot is None else n_boot
    saved = read_json(path)
    if saved is None:
        return None, wanted, f"no readable {path}"
    key, law_data = saved.get("fit_key"), (saved.get("approach3") or {}).get("law")
    if n_boot is None and isinstance(key, dict) and isinstance(key.get("n_boot"), int):
        wanted = key["n_boot"]  # a refit keeps the resamples the user chose for the saved fit
    if not isinstance(key, dict) or not isinstance(law_data, dict):
        return None, wanted, f"{path} holds no saved law (an older version wrote it, or Approach 3 was not fitted)"
    now = fit_key(points, 0)
    if (key.get("points"), key.get("n_points")) != (now["points"], now["n_points"]):
        return None, wanted, (f"the points differ from those {path} was fitted on ({key.get('n_points')} "
                              f"then, {now['n_points']} now, or other N, D or losses)")
    if n_boot is not None and key.get("n_boot") != n_boot:
        return None, wanted, f"--n-boot {n_boot} asked, {path} was fitted with {key.get('n_boot')}; it is overwritten"
    try:
        return ChinchillaLaw.from_dict(law_data), int(key["n_boot"]), ""
    except (FitError, KeyError, TypeError, ValueError) as exc:
        return None, wanted, f"{path}: its saved law is unreadable ({exc})"


def fit_and_plot(frame: pd.DataFrame, out_dir: Path, n_boot: int | None, holdout: int = 0,
                 all_seeds: bool = False, reuse: bool = False) -> dict[str, ChinchillaLaw]:
    """Fit, report and plot a sweep; a sweep of several architecture families gets one fit per family
    (in out_dir/<arch>/) and a side-by-side table and figures of their compute-optimal sizes. Each family's
    points are chosen once; its fits and figures all use them. Returns each family's Approach 3 law."""
    families = split_by_arch(frame)
    budgets = budgets_for(frame)
    laws = {}
    for arch, part in families.items():
        folder = family_folder(arch)
        if len(families) > 1 and not is_safe_component(folder):  # from spec.json or a CSV: a folder name here
            raise ConfigError(f"{out_dir}: column 'arch' = {arch!r}: must be one folder name (letters, digits, "
                              f"'-', '_', '.', not starting with '.') to hold its family's fit")
        where = out_dir / folder if len(families) > 1 else out_dir
        where.mkdir(parents=True, exist_ok=True)
        points = select_points(part, all_seeds=all_seeds)
        law, boots, why = (saved_law(where / "fit.json", points, n_boot) if reuse else
                           (None, DEFAULT_N_BOOT if n_boot is None else n_boot, ""))
        if reuse:
            print(f"plot: drawing from {where / 'fit.json'} (fitted on these {len(points.frame)} points with "
                  f"--n-boot {boots}; give another --n-boot to refit)" if law is not None else
                  f"plot: refitting with --n-boot {boots}: {why}")
        report = fit_sweep(points, n_boot=boots, n_holdout=holdout or None, budgets=budgets, fitted_law=law)
        print(f"\n=== architecture: {printable(arch)} ({len(part)} runs) ===" if len(families) > 1 else "")
        print("\n".join(printable(line) for line in report.to_text().splitlines()))
        if law is None:  # a fit drawn from fit.json leaves it as it was
            write_json_atomic(where / "fit.json", {**report.to_dict(), "fit_key": fit_key(points, boots)})
        paths = save_figures(points, report, where / "plots", curves=loss_curves(part), ylabel=loss_label(part))
        print(f"\nfit: {where / 'fit.json'}")
        for p in paths:
            print(f"plot: {p}")
        if report.law is not None:
            laws[arch] = report.law
    if len(families) > 1:
        compare_families(laws, budgets, out_dir)
    return laws


def loss_curves(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Run id -> its metrics.jsonl records (tokens, train_loss, val_loss, ...) with its n_params, for every row of
    a results frame that has a run folder with a loss curve; empty for a CSV (no run folders)."""
    if "run_dir" not in frame:
        return {}
    curves = {}
    for row in frame.itertuples(index=False):
        if not isinstance(row.run_dir, str):
            continue
        records = read_metrics(Path(row.run_dir))
        if records:
            curves[str(row.run_id)] = pd.DataFrame(records).assign(n_params=row.n_params)
    return curves


def compare_families(laws: dict[str, Any], budgets: list[float], out_dir: Path) -> None:
    """Print and save the per-family laws side by side: exponents, then compute-optimal N and D."""
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
    print(long_compare(table, list(laws)).to_string(index=False))
    for line in describe_ranges(laws):
        print(line)
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    print(f"\ntable: {export_csv(table, out_dir / 'compare_archs.csv')}")
    for name, make in (("compute_optimal_by_arch.png", lambda p: plot_compute_optimal(laws, budgets, path=p)),
                       ("frontiers_by_arch.png", lambda p: plot_frontiers(laws, budgets, path=p))):
        make(plots / name)
        print(f"plot: {plots / name}")


def compare_sources(sources: list[str], budgets: np.ndarray, n_boot: int = 1000, out: str | Path | None = None,
                    allow_mixed_data: bool = False) -> None:
    """`scaling compare`: fit each source (Approach 3 + bootstrap, per architecture family, on the points
    `select_points` chooses, as `scaling fit` does) and tabulate compute-optimal sizes beside published laws."""
    laws: dict[str, object] = {}
    published = published_laws()
    frames = [frame_for(source) for source in sources]
    for source, (frame, _) in zip(sources, frames):
        for note in check_one_corpus(frame, source, allow_mixed=allow_mixed_data):
            print(note)
    # A/runs.csv and B/runs.csv are both "runs": distinct labels, or one law would replace the other.
    labels = source_labels([where for _, where in frames], taken=published)
    # LR / batch laws of sources with several values per (N, D) point, beside the published ones (lr_law);
    # computed first, so a bad lr column fails before any fit
    law_lines = [(label, hparam_law_lines(frame, label, n_boot=n_boot)) for (frame, _), label in zip(frames, labels)]
    for (frame, where), label in zip(frames, labels):
        repeated = repeated_mask(frame)
        if repeated.any():  # the compute-optimal split under the source's unique-token budgets (issue 27)
            try:
                fit, points = fit_frame(frame, n_boot)
            except FitError as exc:
                print(f"{label}: data-constrained law not fitted ({exc})")
            else:
                uniques = sorted(float(u) for u in points.loc[points["epochs"] > 1, "unique"].unique())
                print(f"{label}: data-constrained law, " + "; ".join(fit.summary()))
                print(allocation_table(fit.law, [float(b) for b in budgets], uniques).to_string(
                    index=False, float_format=lambda x: f"{x:.3g}"))
            frame = frame[~repeated]  # Approach 3 and the table below: the single-epoch runs
        families = split_by_arch(frame)
        for arch, part in families.items():  # one law per architecture family (see split_by_arch)
            points = select_points(part)  # best LR per point, seed mean
            law = ChinchillaLaw().fit_frame(points)
            if n_boot:
                done = points.frame
                law.bootstrap(done["n_params"], done["n_tokens"], done["loss"], n_boot=n_boot)
            laws[f"{label} ({arch})" if len(families) > 1 else label] = law
    laws.update(published)
    table = compare_table(laws, budgets)
    print(long_compare(table, list(laws)).to_string(index=False))
    for line in describe_ranges(laws):
        print(line)
    for label, lines in law_lines:
        if lines:
            print(f"\n{label}: hyperparameter laws beside the published ones")
            print("\n".join(lines))
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        print(f"\ntable: {export_csv(table, out / 'compare.csv')}")
        fig_path = out / "frontiers.png"
        plot_frontiers(laws, budgets, path=fig_path)
        print(f"plot: {fig_path}")


DATA_CONSTRAINED_TITLE = "Data-constrained law (Muennighoff et al. 2023)"
"""The heading of the data-constrained law's section on the `scaling report` page."""


def report_source(source: str, out: str | Path | None = None, n_boot: int = 1000, holdout: int = 0,
                  all_runs: bool = False, allow_mixed_data: bool = False) -> Path:
    """`scaling report SOURCE`: fit a sweep .toml, results folder or CSV as `scaling fit` does (one section per
    architecture family) and write one self-contained HTML page (default: report.html in the sweep folder or
    beside the CSV); returns its path. The figures are drawn into the page, not left beside it."""
    frame, where = frame_for(source, all_runs=all_runs)
    for note in check_one_corpus(frame, source, allow_mixed=allow_mixed_data):
        print(note)
    done, _ = select_done(frame)
    if len(done) < 2:
        raise FitError(f"{source}: {len(done)} usable run(s) of {len(frame)}; a report needs at least 2")
    target = Path(out) if out else (where / "report.html" if Path(source).suffix.lower() != ".csv"
                                    else where.with_name(where.name + "_report.html"))
    if target.is_dir():
        raise ConfigError(f"--out {target}: is a folder; give the page's file name, e.g. {target / 'report.html'}")
    budgets = budgets_for(frame)
    repeated = say_repeated(frame)
    more = []
    if repeated.any():  # the data-constrained law fits every run; Approach 3 below the single-epoch ones
        try:
            rep = repetition_report(frame, budgets, n_boot)
        except FitError as exc:
            more.append(TextSection(DATA_CONSTRAINED_TITLE, [f"not fitted ({exc})"]))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                figure = draw_repetition(rep, budgets, Path(tmp) / "allocation.png")
                more.append(TextSection(DATA_CONSTRAINED_TITLE, rep.lines,
                                        figures={figure.name: figure.read_bytes()}))
        frame = frame[~repeated]
    families = split_by_arch(frame)
    sections = []
    for arch, part in families.items():
        points = select_points(part)
        report = fit_sweep(points, n_boot=n_boot, n_holdout=holdout or None, budgets=budgets)
        with tempfile.TemporaryDirectory() as tmp:
            paths = save_figures(points, report, Path(tmp), curves=loss_curves(part), ylabel=loss_label(part))
            figures = {p.name: p.read_bytes() for p in paths}
        sections.append(Section(title=f"architecture: {arch}", report=report, figures=figures, runs=part))
    page = render_page(f"Scaling-law report: {Path(source).name}", sections, source=str(source),
                       methods_url="docs/methods.md in the scaling repository", more=more)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = target.with_name(f".{target.name}.tmp")
    tmp_path.write_text(page, encoding="utf-8")
    tmp_path.replace(target)
    print(f"report: {target} ({len(page) / 1e6:.2f} MB, {sum(len(s.figures) for s in sections)} figures embedded)")
    return target


def budgets_for(frame: pd.DataFrame) -> list[float]:
    """Compute budgets for the compute-optimal table: the sweep's own range and two decades beyond.

    A law fitted on 1e11-1e13 FLOPs says little about 1e24; the table stays near the data.
    """
    flops = pd.to_numeric(frame.get("flops"), errors="coerce").dropna() if "flops" in frame else []
    if len(flops) == 0:
        return [float(c) for c in np.logspace(18, 25, 8)]
    lo, hi = np.floor(np.log10(flops.min())), np.ceil(np.log10(flops.max())) + 2
    return [float(c) for c in np.logspace(lo, hi, int(hi - lo) + 1)]


def frame_for(source: str, all_runs: bool = False, missing_ok: bool = False) -> tuple[pd.DataFrame, Path]:
    """A points frame from a sweep TOML (its planned runs, or every run folder with `all_runs`), a results
    folder or a CSV (no plan: every run folder or row); and where outputs go. A sweep that has not run yet is
    an error, or with `missing_ok` (suggest designs a sweep's first runs) an empty frame."""
    path = Path(source)
    if path.suffix.lower() == ".toml":
        cfg = load_sweep(path)
        sweep_dir = cfg.sweep_dir
        if not sweep_dir.is_dir() and missing_ok:
            print(f"{source}: no results yet in {sweep_dir}/")
            return pd.DataFrame(columns=["n_params", "n_tokens", "flops", "loss"]), sweep_dir
        if not sweep_dir.is_dir():
            raise ConfigError(f"{path}: no results yet in {sweep_dir}/ (run: scaling run {path})")
        frame = load_results(sweep_dir)
        if all_runs:
            print(f"--all-runs: every run folder in {sweep_dir}/, planned by {path} or not ({len(frame)})")
            return frame, sweep_dir
        return only_planned(frame, plan_sweep(cfg), str(path)), sweep_dir
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


def long_compare(table: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """compare_table's wide columns ("<law>/n_opt", ...) as one readable row per (budget, law)."""
    rows = []
    for _, r in table.iterrows():
        for label in labels:
            band = ""
            if f"{label}/n_opt_lo" in table:
                band = f"[{r[f'{label}/n_opt_lo']:.3g}, {r[f'{label}/n_opt_hi']:.3g}]"
            beyond = f"{label}/extrapolated" in table and bool(r[f"{label}/extrapolated"])
            rows.append({"flops": f"{r['flops']:.0e}", "law": label, "n_opt": f"{r[f'{label}/n_opt']:.3g}",
                         "n_opt 95%": band, "d_opt": f"{r[f'{label}/d_opt']:.3g}",
                         "tokens/param": f"{r[f'{label}/tokens_per_param']:.3g}",
                         "range": "extrapolated" if beyond else ""})
    return pd.DataFrame(rows)


def describe_ranges(laws: dict[str, Any]) -> list[str]:
    """One line per fitted law: the compute its runs span and where its rows start being extrapolated."""
    return [f"{label}: {describe_range(law)}" for label, law in laws.items() if data_flops(law) is not None]
