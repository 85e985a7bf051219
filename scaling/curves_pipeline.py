"""What `scaling curves SOURCE --fit RUNS --predict RUNS` does: fit a loss-curve law and predict runs with it.

It reads loss curves from a sweep, a results folder or a long CSV, fits a curve law (scaling.analysis.curves) to some runs, predict others, print and draw it.

Long CSV format: columns `run,step,lr,loss`, one row per optimizer step of each run from step 1, `lr` the LR of
that step on every row, `loss` the loss measured after that step, blank where it was not measured.

A results folder's runs give their LR of every step from spec.json (the schedule is deterministic,
scaling.analysis.lr_schedules.run_lrs) and their measured points from metrics.jsonl: the records with `curve_loss`
(held-out loss on a fixed small sample at [train].curve_evals points and at the end), or where a run has none,
`val_loss` (the full held-out set, every eval_every_steps and at the end). A WSD branch's curve before its
fork is its trunk's; branches sharing a trunk are one bootstrap unit. Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.analysis.approach3 import ChinchillaLaw
from scaling.analysis.curves import (LAW_PARAMS, Curve, CurveFit, bootstrap_curves, curve_metrics, fit_curves,
                                     predict_curve)
from scaling.analysis.curves_joint import (MIN_STEP_WARMUPS, bootstrap_curves_joint_runs, fit_curves_joint,
                                           trim_warmup)
from scaling.analysis.size_levels import level_shifts
from scaling.analysis.lr_schedules import check_lrs, run_lrs
from scaling.config import load_sweep
from scaling.errors import ConfigError, FitError
from scaling.results import METRICS, SPEC, read_json, read_metrics

__all__ = ["read_curves_csv", "curves_from_folder", "load_curves", "CurvesReport", "curves_report", "CurvePoints",
           "curve_points", "predicted_beside_trained", "curves_fit"]

CSV_COLUMNS = ("run", "step", "lr", "loss")


def read_curves_csv(path: str | Path) -> dict[str, Curve]:
    """The curves of a long CSV `run,step,lr,loss`; a one-line ConfigError names the file, column and run."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype={"run": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ConfigError(f"{path}: cannot read CSV: {exc}".replace("\n", " ")) from exc
    missing = [c for c in CSV_COLUMNS if c not in raw.columns]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)} (need run,step,lr,loss); "
                          f"found {list(raw.columns)}")
    curves = {}
    for run, rows in raw.groupby("run", sort=False):
        steps = pd.to_numeric(rows["step"], errors="coerce").to_numpy(dtype=float)
        if not np.array_equal(steps, np.arange(1, len(rows) + 1)):
            raise ConfigError(f"{path}: run {run}: column 'step' must count 1, 2, 3, ... one row per optimizer "
                              f"step (row {_first_gap(steps) + 1} of the run has {steps[_first_gap(steps)]:g})")
        lrs = pd.to_numeric(rows["lr"], errors="coerce").to_numpy(dtype=float)
        if np.isnan(lrs).any():
            step = int(np.flatnonzero(np.isnan(lrs))[0]) + 1
            raise ConfigError(f"{path}: run {run}: column 'lr' is missing at step {step}: lr must be on every "
                              f"row ({int(np.isnan(lrs).sum())} row(s) without it)")
        check_lrs(lrs, f"{path}: run {run}")
        loss = pd.to_numeric(rows["loss"], errors="coerce").to_numpy(dtype=float)
        measured = np.isfinite(loss)
        if (loss[measured] <= 0).any():
            step = int(np.flatnonzero(measured & (loss <= 0))[0]) + 1
            raise ConfigError(f"{path}: run {run}: column 'loss' at step {step} is {loss[step - 1]:g}: must be > 0")
        curves[str(run)] = Curve(name=str(run), lrs=lrs, steps=np.flatnonzero(measured) + 1, loss=loss[measured])
    return curves


def _first_gap(steps: np.ndarray) -> int:
    return int(np.flatnonzero(steps != np.arange(1, len(steps) + 1))[0])


def curves_from_folder(folder: str | Path, run_ids: set[str] | None = None) -> dict[str, Curve]:
    """The curves of a results folder's runs (or of `run_ids`), keyed by run id; runs without a readable
    spec.json are left out."""
    folder = Path(folder)
    curves = {}
    for run_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        spec = read_json(run_dir / SPEC)
        if spec is None or (run_ids is not None and run_dir.name not in run_ids):
            continue
        lrs = run_lrs(n_steps=int(spec["n_steps"]), lr=float(spec["lr"]), warmup_steps=int(spec["warmup_steps"]),
                      min_lr_ratio=float(spec["min_lr_ratio"]), schedule=spec.get("schedule", "cosine"),
                      cooldown_steps=int(spec.get("cooldown_steps", 0)),
                      cooldown_shape=spec.get("cooldown_shape", "linear"))
        points = {}
        records = _measured_records(folder, run_dir, spec)
        # one held-out sample per curve: the trainer's curve points (curve_loss, [train].curve_evals) where the
        # run has them, else the full-set evaluations (val_loss)
        key = "curve_loss" if any("curve_loss" in r for r in records) else "val_loss"
        for record in records:
            loss = record.get(key)
            if isinstance(loss, (int, float)) and math.isfinite(loss) and loss > 0 and \
                    1 <= record["step"] <= len(lrs):
                points[int(record["step"])] = float(loss)
        steps = np.array(sorted(points), dtype=np.int64)
        curves[run_dir.name] = Curve(name=run_dir.name, lrs=lrs, steps=steps,
                                     loss=np.array([points[s] for s in steps]), group=spec.get("trunk_id", ""))
    return curves


def _measured_records(folder: Path, run_dir: Path, spec: dict) -> list[dict]:
    """The run's metrics records; a WSD branch's points before its fork come from its trunk
    (`.trunks/<trunk_id>/metrics.jsonl`), which trained those steps once for every branch."""
    records = read_metrics(run_dir)
    trunk = spec.get("trunk_id", "")
    if spec.get("schedule") == "wsd" and trunk:
        fork = int(spec["n_steps"]) - int(spec.get("cooldown_steps", 0))
        trunk_dir = folder / ".trunks" / trunk
        if (trunk_dir / METRICS).exists():
            records = [r for r in read_metrics(trunk_dir) if r["step"] <= fork] + \
                      [r for r in records if r["step"] > fork]
    return records


def load_curves(source: str | Path) -> tuple[dict[str, Curve], Path]:
    """Curves from a sweep .toml, a results folder or a long CSV; and the folder outputs go to."""
    path = Path(source)
    if path.suffix.lower() == ".toml":
        cfg = load_sweep(path)
        if not cfg.sweep_dir.is_dir():
            raise ConfigError(f"{path}: no results yet in {cfg.sweep_dir}/ (run: scaling run {path})")
        return curves_from_folder(cfg.sweep_dir), cfg.sweep_dir
    if path.is_dir():
        return curves_from_folder(path), path
    if path.suffix.lower() == ".csv" and path.is_file():
        return read_curves_csv(path), path.parent
    raise ConfigError(f"{source}: not a sweep .toml, a results folder or a .csv file of run,step,lr,loss")


@dataclass(frozen=True, eq=False)
class CurvesReport:
    fit: CurveFit
    lines: tuple[str, ...]
    metrics: dict[str, float]
    figure: Path | None


def _pick(curves: dict[str, Curve], names: list[str], flag: str, source: str) -> list[Curve]:
    for name in names:
        if name not in curves:
            shown = ", ".join(list(curves)[:8]) + (" ..." if len(curves) > 8 else "")
            raise ConfigError(f"{source}: run {name!r} named in {flag} does not exist (runs: {shown or 'none'})")
    return [curves[n] for n in names]


def curves_report(source: str, fit_runs: list[str], predict_runs: list[str], law: str = "mpl",
                  n_boot: int = 200, out: str | Path | None = None, seed: int = 0) -> CurvesReport:
    """`scaling curves`: fit `law` to `fit_runs`, predict `predict_runs`, print and draw the result."""
    curves, out_dir = load_curves(source)
    train = _pick(curves, fit_runs, "--fit", source)
    targets = _pick(curves, predict_runs, "--predict", source)
    fit = bootstrap_curves(fit_curves(train, law), train, n_boot=n_boot, seed=seed) if n_boot > 0 else \
        fit_curves(train, law)
    lines = [f"{law} law fitted to {len(train)} run(s), {fit.n_points_} measured points; 95% intervals from "
             f"{0 if fit.bootstrap_ is None else len(fit.bootstrap_)} bootstrap refits over whole runs "
             f"({fit.n_degenerate_} degenerate resample(s) excluded)"]
    for name in LAW_PARAMS[law]:
        lo, hi = fit.interval(name)
        lines.append(f"  {name:6s} {fit.params_[name]:.5g}  [{lo:.4g}, {hi:.4g}]")
    observed_all, predicted_all = [], []
    for curve in targets:
        end = len(curve.lrs)
        final = float(fit.predict(curve.lrs, [end])[0])
        lo, hi = fit.predict_interval(curve.lrs, [end])
        line = f"{curve.name}: final loss predicted {final:.4f} [{lo[0]:.4f}, {hi[0]:.4f}]"
        if len(curve.steps) and curve.steps[-1] == end:
            observed = float(curve.loss[-1])
            line += f", observed {observed:.4f} (error {100 * (final - observed) / observed:+.2f}%)"
        lines.append(line)
        if len(curve.steps):
            observed_all.append(curve.loss)
            predicted_all.append(fit.predict(curve.lrs, curve.steps))
    metrics = {}
    if observed_all:
        metrics = curve_metrics(np.concatenate(observed_all), np.concatenate(predicted_all))
        lines.append("over the predicted runs' measured points: " +
                     ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    figure = _draw(fit, train, targets, Path(out) if out else out_dir / "curves.png")
    lines.append(f"figure: {figure}")
    for line in lines:
        print(line)
    return CurvesReport(fit=fit, lines=tuple(lines), metrics=metrics, figure=figure)


def _draw(fit: CurveFit, train: list[Curve], targets: list[Curve], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for i, curve in enumerate([*train, *targets]):
        colour = f"C{i % 10}"
        role = "fit" if i < len(train) else "predicted"
        steps = np.unique(np.linspace(1, len(curve.lrs), 400).round().astype(int))
        top.plot(steps, fit.predict(curve.lrs, steps), color=colour, lw=1.2, ls="-" if role == "fit" else "--",
                 label=f"{curve.name} ({role})")
        if len(curve.steps):
            top.plot(curve.steps, curve.loss, "o", ms=2.5, color=colour)
        bottom.plot(np.arange(1, len(curve.lrs) + 1), curve.lrs, color=colour, lw=1)
    top.set_ylabel("loss (dots: observed, lines: law)")
    top.set_title(f"{fit.law} curve law")
    top.legend(fontsize=7)
    bottom.set_xlabel("optimizer step")
    bottom.set_ylabel("LR")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------- curves -> (N, D) points

@dataclass(frozen=True, eq=False)
class CurvePoints:
    """End points predicted from each model size's curve law: (N, D, loss) rows usable as the points of
    Approaches 1-3, with the curve fit's uncertainty as `replicates`."""

    frame: pd.DataFrame
    """One row per (size, budget): n_params, n_tokens, flops, loss (the law's final loss), loss_lo, loss_hi
    (95% over the bootstrap), predicted=True, run_id "curve:<size>:<tokens>", and trained_loss where a run of
    that size was trained to that budget (its measured final loss), else NaN."""
    replicates: np.ndarray
    """(n_boot, rows): the final losses under each bootstrap refit of the curve law (_fit_sizes: resampled
    whole runs, a WSD trunk with its branches as one unit), so refitting Approach 3 on each replicate
    carries the curve fit's uncertainty into the scaling law's bootstrap."""
    fits: dict[int, CurveFit]
    how: str = ""
    """How the curve law was fitted (jointly over sizes, or per size)."""


def _template(spec: dict, n_steps: int) -> np.ndarray:
    """The schedule `spec` would use for a run of n_steps (a WSD cooldown keeps its fraction of the run)."""
    wsd = spec.get("schedule") == "wsd"
    cooldown = int(round(n_steps * int(spec.get("cooldown_steps", 0)) / int(spec["n_steps"]))) if wsd else 0
    return run_lrs(n_steps=n_steps, lr=float(spec["lr"]), warmup_steps=min(int(spec["warmup_steps"]), n_steps),
                   min_lr_ratio=float(spec["min_lr_ratio"]), schedule=spec.get("schedule", "cosine"),
                   cooldown_steps=max(1, cooldown) if wsd else 0, cooldown_shape=spec.get("cooldown_shape", "linear"))


def _fit_sizes(by_size: dict[int, list[str]], curves: dict[str, Curve], specs: dict, law: str,
               n_boot: int, seed: int) -> tuple[dict[int, CurveFit], list[dict[int, dict]], str]:
    """Each size's curve law and its bootstrap refits' parameters ({size: params} per refit), and how fitted.

    Two or more sizes with the multi-power law: one joint fit (curves_joint: alpha, C, beta, gamma shared, each
    curve's points before MIN_STEP_WARMUPS warmups left out), refitted on resamples inside every size
    (bootstrap_curves_joint_runs: whole runs, a WSD trunk with its branches as one unit; a size of one unit
    has its curves' residuals resampled in blocks). It predicted tiny's cosine runs from tiny_curves with a
    1.89% mean error against 4.14% for each size's own fit, and 0.91% within the trunks once tiny_curves
    trained all six of tiny's sizes (benchmarks/README.md). The per-size fit stays
    where there is nothing to share: one size, or Tissue et al.'s law (the joint fit is the multi-power law's)."""
    if law == "mpl" and len(by_size) >= 2:
        groups = {}
        for n_params, names in sorted(by_size.items()):
            groups[n_params] = []
            for name in names:
                trimmed = trim_warmup(curves[name], int(specs[name]["warmup_steps"]), MIN_STEP_WARMUPS)
                groups[n_params].append(trimmed if len(trimmed.steps) >= 2 else curves[name])
        fits = fit_curves_joint(groups)
        refits = bootstrap_curves_joint_runs(groups, fits, n_boot=n_boot, seed=seed) if n_boot > 0 else []
        return fits, [{k: f.params_ for k, f in r.items()} for r in refits], \
            f"one {law} law over {len(fits)} sizes (alpha, C, beta, gamma shared; points before " \
            f"{MIN_STEP_WARMUPS:g} warmup left out)"
    fits, columns = {}, {}
    for n_params, names in sorted(by_size.items()):
        runs = [curves[n] for n in names]
        fit = fit_curves(runs, law)
        if n_boot > 0:
            fit = bootstrap_curves(fit, runs, n_boot=n_boot, seed=seed)
        fits[n_params] = fit
        table = fit.bootstrap_
        columns[n_params] = [] if table is None else [dict(zip(LAW_PARAMS[law], row))
                                                       for row in table[list(LAW_PARAMS[law])].to_numpy()]
    depth = min(len(c) for c in columns.values())
    return fits, [{k: columns[k][b] for k in fits} for b in range(depth)], \
        f"{law} law per model size ({len(fits)} sizes)"


def curve_points(folder: str | Path, budgets: list[float], law: str = "mpl", n_boot: int = 100,
                 seed: int = 0) -> CurvePoints:
    """For each model size in a results folder, predict the final loss its schedule would reach at every token
    budget in `budgets` up to the size's longest run (a run of round(D / tokens per step) steps, LR schedule
    as the size's longest run's spec, stretched), from the curve law fitted to the sizes' curves (_fit_sizes:
    jointly over sizes where there are two or more). Budgets past a size's longest run are left out, and
    `how` says how many: the law's extrapolation past its curves is not a measurement."""
    folder = Path(folder)
    curves = curves_from_folder(folder)
    specs = {name: read_json(folder / name / SPEC) for name in curves}
    by_size: dict[int, list[str]] = {}
    for name, spec in specs.items():
        if len(curves[name].steps):
            by_size.setdefault(int(spec["n_params"]), []).append(name)
    if not by_size:
        raise ConfigError(f"{folder}: no run has measured held-out loss points (val_loss in metrics.jsonl)")
    fits, refits, how = _fit_sizes(by_size, curves, specs, law, n_boot, seed)
    rows, replicate_cols, beyond = [], [], 0
    for n_params, names in sorted(by_size.items()):
        fit = fits[n_params]
        longest = max(names, key=lambda n: int(specs[n]["n_steps"]))
        spec = specs[longest]
        tokens_per_step = float(spec["n_tokens"]) / int(spec["n_steps"])
        trained = {int(specs[n]["n_tokens"]): curves[n] for n in names}
        done: set[int] = set()
        for budget in budgets:
            n_steps = max(1, int(round(budget / tokens_per_step)))
            if n_steps > int(spec["n_steps"]):
                # Past the size's longest run the law extrapolates its curves: measured 3-10% low at 1.6-4.5x past
                # the trunks (benchmarks/README.md), against about 1% within them; such budgets are left out.
                beyond += 1
                continue
            if n_steps in done:  # two budgets that round to the same run (1e6 and a run's 999,424 tokens)
                continue
            done.add(n_steps)
            lrs = _template(spec, n_steps)
            loss = float(fit.predict(lrs, [n_steps])[0])
            column = np.array([predict_curve(law, [r[n_params][k] for k in LAW_PARAMS[law]], lrs, [n_steps])[0]
                               for r in refits]) if refits else np.full(1, loss)
            lo, hi = np.quantile(column, [0.025, 0.975]) if len(refits) >= 2 else (math.nan, math.nan)
            n_tokens = n_steps * tokens_per_step
            match = trained.get(int(n_tokens))
            observed = float(match.loss[-1]) if match is not None and len(match.steps) and \
                match.steps[-1] == len(match.lrs) else math.nan
            rows.append({"run_id": f"curve:{n_params}:{n_tokens:.4g}", "n_params": float(n_params),
                         "n_tokens": n_tokens, "flops": float(spec["flops_per_token"]) * n_tokens,
                         "loss": loss, "loss_lo": float(lo), "loss_hi": float(hi), "predicted": True,
                         "trained_loss": observed, "status": "done"})
            replicate_cols.append(column)
    replicates = np.stack(replicate_cols, axis=1)
    if beyond:
        how += f"; {beyond} (size, budget) pair(s) past the size's longest run left out (not extrapolated)"
    return CurvePoints(frame=pd.DataFrame(rows), replicates=replicates, fits=fits, how=how)


def predicted_beside_trained(points: CurvePoints) -> list[str]:
    """One line per predicted point that a run also trained to: predicted [lo, hi] beside trained."""
    out = []
    for row in points.frame.itertuples():
        if math.isfinite(row.trained_loss):
            out.append(f"N={row.n_params:.3g}, D={row.n_tokens:.3g}: predicted from curves {row.loss:.4f} "
                       f"[{row.loss_lo:.4f}, {row.loss_hi:.4f}], trained {row.trained_loss:.4f} "
                       f"({100 * (row.loss - row.trained_loss) / row.trained_loss:+.2f}%)")
    return out


def curves_fit(source: str, law: str = "mpl", n_boot: int = 100, seed: int = 0) -> CurvePoints:
    """`scaling fit SOURCE --curves`: the points predicted from the sizes' curves at the sweep's token budgets
    (each distinct D of its runs, and for a sweep .toml each of its [grid].n_tokens), printed beside the trained end points, and Approach 3 fitted to them with
    intervals from refits on replicates that carry both the curve law's error (its bootstrap refits, whole
    runs resampled inside each size) and the scatter of whole sizes around the law (each size's level
    redrawn, scaling.analysis.size_levels; left out, and said so, where the sizes are too few to estimate it)."""
    path = Path(source)
    cfg = load_sweep(path) if path.suffix.lower() == ".toml" else None
    folder = cfg.sweep_dir if cfg is not None else path
    if not folder.is_dir():
        raise ConfigError(f"{source}: --curves needs a sweep .toml or results folder with run folders")
    budgets = {float(s["n_tokens"]) for s in (read_json(d / SPEC) for d in folder.iterdir() if d.is_dir())
               if s is not None}
    if cfg is not None:  # a curves design trains branches at some budgets only: predict every budget it names
        budgets |= {float(d) for d in cfg.grid.n_tokens}
    budgets = sorted(budgets)
    points = curve_points(folder, budgets, law=law, n_boot=n_boot, seed=seed)
    print(f"curves: {points.how}, {len(points.frame)} end point(s) predicted over {len(points.fits)} size(s)")
    for line in predicted_beside_trained(points):
        print("  " + line)
    frame = points.frame
    fit = ChinchillaLaw().fit(frame.n_params, frame.n_tokens, frame.loss)
    replicates = points.replicates
    try:  # each replicate's sizes shifted by a redrawn level (the sizes' scatter around the law)
        shifts = level_shifts(fit.params_, frame.n_params, frame.n_tokens, frame.loss, frame.n_params,
                              n_boot=len(replicates), seed=seed)
        replicates = replicates * np.exp(shifts)
        levels = "sizes' levels redrawn"
    except FitError as exc:
        levels = f"sizes' levels not redrawn: {exc}"
    refits = []
    for replicate in replicates:
        try:
            refits.append(ChinchillaLaw(n_starts=10).fit(frame.n_params, frame.n_tokens, replicate).params_)
        except FitError:  # a replicate that cannot be fitted is left out
            continue
    p = fit.params_
    line = f"Approach 3 on predicted points: E {p.E:.4g}, A {p.A:.4g}, B {p.B:.4g}, alpha {p.alpha:.4g}, beta {p.beta:.4g}"
    if len(refits) >= 2:
        alphas, betas = np.array([r.alpha for r in refits]), np.array([r.beta for r in refits])
        line += (f"; over {len(refits)} curve-bootstrap replicates ({levels}) alpha [{np.quantile(alphas, .025):.3g}, "
                 f"{np.quantile(alphas, .975):.3g}], beta [{np.quantile(betas, .025):.3g}, {np.quantile(betas, .975):.3g}]")
    print(line)
    return points
