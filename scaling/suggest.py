"""The sweep side of `scaling suggest`: the runs a sweep may add, and the sweep file that adds them.

The method (posterior ensemble, expected shrink of N_opt(C*)'s interval per FLOP, greedy within the budget)
is `scaling.analysis.suggest`; this module turns a sweep into its candidates (shapes on the sweep's own
depth/width rule, token counts log-spaced over the sweep's range) and writes the extended sweep: the original
file's keys plus the proposed runs in `[grid].points`, with the same name and results folder, so `scaling run`
on it trains only the new runs and its fit uses old and new together. Torch-free.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling.accounting import ModelShape, flops_per_token, n_params
from scaling.analysis.suggest import (Candidate, Ensemble, Proposal, drop_existing, fit_ensemble, prior_ensemble,
                                     suggest)
from scaling.config import MAX_PARAMS, MAX_TOKENS, SweepConfig, load_sweep
from scaling.errors import ConfigError, FitError
from scaling.isoflop import candidate_shapes
from scaling.plan import Plan, plan_sweep
from scaling.results import SPEC, atomic_path
from scaling.safe import printable

TOKENS_PER_DECADE = 8
"""Token counts the candidates take: log-spaced, this many per decade (rounded to 3 significant digits)."""
PRIOR_NOISE = 0.01
"""With no finished runs, the pilot is simulated from the prior law with this lognormal noise (1%: the
residual SD of this repo's CPU sweeps is 1-3%)."""


def sweep_candidates(plan: Plan, max_params: float, max_tokens: float
                     ) -> tuple[list[Candidate], dict[str, ModelShape]]:
    """Every (shape, tokens) the sweep may add: shapes on its depth/width rule from its smallest planned model
    up to `max_params`, token counts from its smallest planned budget up to `max_tokens`; a pair the plan
    already trains (same shape, tokens within 5%) is not a candidate. Cost: the exact FLOP count. Also returns
    each candidate label's shape."""
    cfg = plan.sweep
    m = cfg.model
    arch = cfg.model.arch[0]
    n_lo = min(r.n_params for r in plan.runs)
    d_lo = min(r.n_tokens for r in plan.runs)
    shapes = [s for s in candidate_shapes(arch, m.seq_len, cfg.data.vocab_size, m.head_dim, m.aspect_ratio,
                                          m.mlp_ratio, **m.shape_options()) if n_lo <= n_params(s) <= max_params]
    shapes += [r.shape for r in plan.runs if r.shape not in shapes]  # the sweep's own shapes, off the rule
    decades = math.log10(max(max_tokens, d_lo) / d_lo)
    tokens = sorted({float(f"{t:.3g}") for t in np.geomspace(d_lo, max(max_tokens, d_lo),
                                                             max(2, round(decades * TOKENS_PER_DECADE) + 1))})
    have: dict[ModelShape, list[float]] = {}
    for r in plan.runs:
        have.setdefault(r.shape, []).append(r.n_tokens)
    out, by_label = [], {}
    for shape in sorted(set(shapes), key=lambda s: (n_params(s), s.n_layer)):
        label = f"L{shape.n_layer} d{shape.d_model}" + (
            f" h{shape.n_head}" if shape.n_head != max(1, shape.d_model // m.head_dim) else "")
        by_label[label] = shape
        for d in tokens:
            if any(abs(math.log(d / t)) < 0.05 for t in have.get(shape, [])):
                continue
            out.append(Candidate(n_params=float(n_params(shape)), n_tokens=d,
                                 flops=float(flops_per_token(shape) * d), label=label))
    return out, by_label


def frame_candidates(points: pd.DataFrame, max_params: float, max_tokens: float, n: int = 12) -> list[Candidate]:
    """A CSV or results folder has no sweep: candidates are n log-spaced sizes x n token counts from the
    data's smallest up to the limits, costed at C = 6ND."""
    Ns = np.geomspace(points["n_params"].min(), max_params, n)
    Ds = np.geomspace(points["n_tokens"].min(), max_tokens, n)
    return [Candidate(n_params=float(f"{N:.3g}"), n_tokens=float(f"{D:.3g}"), flops=6.0 * float(f"{N:.3g}")
                      * float(f"{D:.3g}")) for N in Ns for D in Ds]


def ensemble_for(points: pd.DataFrame, cfg: SweepConfig | None, plan: Plan | None, n_boot: int, seed: int,
                 runs: pd.DataFrame | None = None) -> Ensemble:
    """The posterior: the bootstrap ensemble of the finished runs (`runs`, every seed, also informs the noise
    estimate); with fewer than 5, of the sweep's planned runs simulated from its stated or published prior law
    ([grid.prior])."""
    if len(points) >= 5:
        return fit_ensemble(points, n_boot=n_boot, seed=seed, source=f"Approach 3 fit to {len(points)} finished runs",
                            repeats=runs)
    if cfg is None or plan is None or not (cfg.grid.prior.stated or cfg.grid.prior.law):
        raise FitError(f"{len(points)} finished run(s): a suggestion needs >= 5 (train a pilot first) or, for a sweep "
                       "with none yet, a stated or published [grid.prior] law to simulate its pilot from")
    from scaling.isoflop import resolve_prior

    law = resolve_prior(cfg).law
    design = pd.DataFrame({"n_params": [r.n_params for r in plan.runs], "n_tokens": [r.n_tokens for r in plan.runs]})
    return prior_ensemble(law, design, noise=PRIOR_NOISE, n_boot=n_boot, seed=seed)


def extended_sweep_text(cfg: SweepConfig, picks: list[Candidate], shapes: dict[str, ModelShape]) -> str:
    """The sweep file `cfg` was read from, plus `picks` in [grid].points: same name, same results folder, its
    corpus and pilot paths made absolute (the new file may live elsewhere). `shapes` maps pick labels to shapes."""
    raw = tomllib.loads(Path(cfg.source).read_text())
    raw["name"] = cfg.name  # the default name is the file's stem: the new file must keep the old results folder
    if cfg.data.source != "stdlib":
        raw.setdefault("data", {})["source"] = cfg.data.source
    if cfg.grid.prior.pilot:
        raw["grid"]["prior"]["pilot"] = cfg.grid.prior.pilot
    grid = raw.setdefault("grid", {})
    points = list(grid.get("points", []))
    for c in picks:
        s = shapes[c.label]
        point: dict[str, Any] = {"n_layer": s.n_layer, "d_model": s.d_model, "n_tokens": c.n_tokens}
        if s.n_head != max(1, s.d_model // cfg.model.head_dim):
            point["n_head"] = s.n_head
        points.append(point)
    grid["points"] = points
    header = (f"# {cfg.source} extended by `scaling suggest` with {len(picks)} run(s) in [grid].points; same name and\n"
              f"# results folder, so `scaling run` on this file trains only the new runs and fits old and new together.\n")
    return header + to_toml(raw)


def to_toml(raw: dict[str, Any]) -> str:
    """TOML text of a table as tomllib reads it (strings, numbers, booleans, lists, nested tables): the
    standard library reads TOML but does not write it, and this subset is all a sweep file holds."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"cannot write {v!r} to a sweep file")
            return repr(v)
        if isinstance(v, str):
            # A TOML basic string: JSON's escapes are TOML's, except that JSON writes a character outside the
            # Basic Multilingual Plane as a surrogate pair (invalid TOML), so those stay literal; DEL must be
            # escaped in TOML and is not in JSON.
            return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        raise ConfigError(f"cannot write {type(v).__name__} {v!r} to a sweep file")

    def table(prefix: str, t: dict[str, Any]) -> None:
        if prefix:
            lines.append(f"\n[{prefix}]")
        for k, v in t.items():
            if not isinstance(v, dict):
                lines.append(f"{k} = {value(v)}")
        for k, v in t.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)

    table("", raw)
    text = "\n".join(lines) + "\n"
    try:  # what is written must read back as the same table
        same = tomllib.loads(text) == raw
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot write this sweep as TOML: {exc}") from None
    if not same:
        raise ConfigError("cannot write this sweep as TOML: it does not read back as written")
    return text


def check_out(target: Path, source: Path, protected: list[Path]) -> Path:
    """`--out` as a safe place for the proposal: never the source itself, a folder, a run folder or inside a
    results folder (a results table there would be read as data), never through a symbolic link."""
    resolved = target.resolve()
    if resolved == source.resolve():
        raise ConfigError(f"--out {target}: is the source itself; the proposal would replace its runs")
    if target.is_dir() or target.is_symlink():
        raise ConfigError(f"--out {target}: is a {'folder' if target.is_dir() else 'symbolic link'}; give a file")
    for folder in protected:
        if folder.is_dir() and resolved.is_relative_to(folder.resolve()):
            raise ConfigError(f"--out {target}: is inside the results folder {folder}; write it elsewhere")
    if (resolved.parent / SPEC).exists():
        raise ConfigError(f"--out {target}: is inside a run folder ({resolved.parent}); write it elsewhere")
    return target


def overhead_flops(run_overhead_s: float, throughput: float | None, runs: pd.DataFrame, source: str) -> float:
    """A run's fixed overhead (start-up, data loading, evaluation) in FLOP-equivalents: seconds x FLOP/s, the
    FLOP/s given or measured as the median of the finished runs' flops / wall_s."""
    check_limit("--run-overhead", run_overhead_s, allow_zero=True)
    check_limit("--throughput", throughput)
    if run_overhead_s == 0:
        return 0.0
    if throughput is None:
        if not {"flops", "wall_s"} <= set(runs.columns) or not (runs["wall_s"] > 0).any():
            raise ConfigError(f"--run-overhead {run_overhead_s:g}: {source} records no run times to measure FLOP/s "
                              "from; give --throughput FLOP/s")
        timed = runs[runs["wall_s"] > 0]
        throughput = float((timed["flops"] / timed["wall_s"]).median())
        print(f"per-run overhead: {run_overhead_s:g} s x {throughput:.3g} FLOP/s (median of {len(timed)} finished "
              f"runs) = {run_overhead_s * throughput:.3g} FLOP-equivalents a run")
    return run_overhead_s * throughput


def check_limit(flag: str, value: float | None, allow_zero: bool = False, cap: float = math.inf) -> None:
    """One-line ConfigError unless `value` is None or a finite number > 0 (>= 0 with allow_zero) and <= cap."""
    if value is not None and not (math.isfinite(value) and (value > 0 or allow_zero and value == 0)):
        raise ConfigError(f"{flag} {value}: must be a finite number {'>=' if allow_zero else '>'} 0")
    if value is not None and value > cap:  # the sweep configs' own cap: beyond it candidates fill the memory
        raise ConfigError(f"{flag} {value:g}: must be at most {cap:g} (the cap on any planned run)")


def suggest_source(source: str, target_flops: float, budget: float, out: str | None = None, seed: int = 0,
                   n_boot: int = 200, max_params: float | None = None, max_tokens: float | None = None,
                   repeats: bool = False, run_overhead_s: float = 0.0, throughput: float | None = None
                   ) -> Proposal:
    """`scaling suggest`: fit SOURCE's runs, propose the next ones, print why, and write the extended sweep
    (a .toml source; default `<stem>_next.toml` beside it) or a CSV of the proposed points (`--out x.csv`)."""
    from scaling.pipeline import frame_for
    from scaling.analysis.points import select_points

    if n_boot < 20:
        raise ConfigError(f"--n-boot {n_boot}: must be >= 20 (the ensemble's covariances need members)")
    if not (math.isfinite(budget) and budget > 0):
        raise ConfigError(f"--budget {budget}: must be a finite number of FLOPs > 0")
    if not (math.isfinite(target_flops) and target_flops > 0):
        raise ConfigError(f"--target-flops {target_flops}: must be a finite number of FLOPs > 0")
    check_limit("--max-params", max_params, cap=MAX_PARAMS)
    check_limit("--max-tokens", max_tokens, cap=MAX_TOKENS)
    path = Path(source)
    is_sweep = path.suffix.lower() == ".toml"
    cfg = load_sweep(path) if is_sweep else None
    plan = plan_sweep(cfg) if cfg is not None else None
    if cfg is not None and len(cfg.model.arch) > 1:
        raise ConfigError(f"{source}: [model].arch = {list(cfg.model.arch)}: suggest designs for one family's law; "
                          "write a sweep per family")
    frame, _ = frame_for(source, missing_ok=True)
    if "arch" in frame.columns and frame["arch"].dropna().nunique() > 1:
        archs = sorted(frame["arch"].dropna().astype(str).unique())
        raise ConfigError(f"{source}: runs of {len(archs)} architectures ({', '.join(map(printable, archs))}): suggest "
                          "fits one family's law; give a source holding one family")
    points = select_points(frame).frame if len(frame) else frame
    runs = frame[frame["status"] == "done"] if "status" in frame.columns else frame
    overhead = overhead_flops(run_overhead_s, throughput, runs, source)
    ensemble = ensemble_for(points, cfg, plan, n_boot=n_boot, seed=seed, runs=runs if len(runs) else None)
    if plan is not None:
        n_hi = max(r.n_params for r in plan.runs)
        d_hi = max(r.n_tokens for r in plan.runs)
        candidates, shapes = sweep_candidates(plan, max_params or 2 * n_hi, max_tokens or 4 * d_hi)
    else:
        for flag, limit, column in (("--max-params", max_params, "n_params"), ("--max-tokens", max_tokens, "n_tokens")):
            if limit is not None and len(points) and limit < points[column].min():
                raise ConfigError(f"{flag} {limit:g}: below every measured run (smallest {points[column].min():.3g}); "
                                  "candidates lie between the smallest measured run and the limit")
        candidates = frame_candidates(points, max_params or 2 * points["n_params"].max(),
                                      max_tokens or 4 * points["n_tokens"].max())
    # the limits bind whatever produced the candidates (a sweep's own shapes rule may overshoot them)
    allowed = [c for c in candidates if (max_params is None or c.n_params <= max_params)
               and (max_tokens is None or c.n_tokens <= max_tokens)]
    if not allowed:
        raise ConfigError(f"--max-params {max_params} / --max-tokens {max_tokens}: no candidate run fits within them "
                          "(the sweep's shapes rule gives none that small)")
    if not repeats:  # a measured point again is a repeat, proposed only when asked for
        allowed, again = drop_existing(allowed, points)
        if again:
            print(f"left out {len(again)} candidate(s) already measured (--repeats proposes them again)")
    if overhead:
        allowed = [dataclasses.replace(c, overhead=overhead) for c in allowed]
    proposal = suggest(ensemble, target_flops, budget, allowed)
    print("\n".join(proposal.describe()))
    if ensemble.n_runs == 0:
        print(f"(no finished runs: the interval 'now' is the one expected after the sweep's {len(plan.runs)} planned "
              "runs, and the proposed runs come on top of them)")
    if not proposal.picks:
        return proposal
    if cfg is not None:
        target = check_out(Path(out) if out else path.with_name(f"{path.stem}_next.toml"), path,
                           [Path(cfg.sweep_dir)])
        text = extended_sweep_text(cfg, list(proposal.picks), shapes)
        with atomic_path(target) as f:
            f.write(text)
        new_plan = plan_sweep(load_sweep(target))
        old, new = {r.run_id for r in plan.runs}, {r.run_id for r in new_plan.runs}
        if not old <= new:  # the contract of the extended file: every earlier run keeps its folder
            target.unlink()
            raise ConfigError(f"{target}: plans {len(old - new)} of {source}'s runs under other ids; not extending")
        print(f"\nwrote {target}: {len(new)} runs, {len(new - old)} new ({new_plan.total_flops - plan.total_flops:.3g} "
              f"FLOPs; results in {new_plan.sweep.sweep_dir}/); train them with: scaling run {target}")
    else:
        target = check_out(Path(out) if out else path.with_name(f"{path.stem}_next.csv"), path,
                           [path] if path.is_dir() else [])
        with atomic_path(target) as f:
            pd.DataFrame([{"params": c.n_params, "tokens": c.n_tokens, "flops": c.flops} for c in proposal.picks]
                         ).to_csv(f, index=False)
        print(f"\nwrote {target}: the {len(proposal.picks)} proposed (params, tokens) points")
    return proposal
