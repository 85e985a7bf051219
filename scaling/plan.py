"""Planning: a validated SweepConfig -> a tuple of fully specified runs. Pure and torch-free.

Each RunSpec (scaling.results.records, the run folder's record) holds everything a training job needs (it is
written to the run's spec.json), and its run_id is derived from that content, so relaunching the same sweep maps every run to the same folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from scaling.accounting import ModelShape, flops_per_token, n_params, resolve_shape
from scaling import hparams
from scaling.config import MAX_FLOPS, MAX_PARAMS, MAX_TOKENS, SweepConfig
from scaling.errors import ConfigError
from scaling.external import template_fields_problem
from scaling.plugin import PluginError
from scaling.isoflop import Window, check_design, design_exponents, plan_windows, resolve_prior
from scaling.results.records import RunSpec, arch_label, run_id_for, trunk_id_for, twin_key

__all__ = ["Plan", "RunSpec", "arch_label", "count_runs", "curve_budgets", "equivalent_grid", "plan_sweep", "run_id_for", "trunk_id_for"]  # RunSpec: scaling.results


@dataclass(frozen=True)
class Plan:
    sweep: SweepConfig
    runs: tuple[RunSpec, ...]
    windows: tuple[Window, ...] = ()
    """IsoFLOP designs: each (family, budget)'s centre and window, in planning order."""
    prior: str = ""
    """IsoFLOP designs: where the law that centres the windows came from."""

    def describe_windows(self) -> list[str]:
        """What `scaling plan` prints about the IsoFLOP centres: the prior, then one line per budget."""
        if not self.windows:
            return []
        lines = [f"IsoFLOP windows centred on the prior's N_opt(C); prior: {self.prior}"]
        lines += ["  " + w.describe() for w in self.windows]
        for arch, (a_prior, a_design) in design_exponents(self.windows).items():
            lines.append(f"  {arch}: the prior's N_opt over these budgets ~ C^{a_prior:.4f}; Approach 2 on its "
                         f"own noiseless losses at the planned sizes finds C^{a_design:.4f}")
        return lines

    def to_frame(self) -> pd.DataFrame:
        est = self.sweep.launch.est_flops_per_s
        frame = pd.DataFrame([{
            "run_id": r.run_id, "arch": r.shape.arch, "n_layer": r.shape.n_layer,
            "d_model": r.shape.d_model, "n_params": r.n_params,
            "n_params_non_embedding": r.n_params_non_embedding, "n_tokens": r.n_tokens,
            "flops": r.flops, "flops_6nd": r.flops_6nd, "tokens_per_param": r.n_tokens / r.n_params,
            "n_steps": r.n_steps, "lr": r.lr, "seed": r.seed, "est_s": r.flops / est,
            "batch_size": r.batch_size, "schedule": r.schedule, "cooldown_steps": r.cooldown_steps,
            "trunk_id": r.trunk_id, "flops_budget": r.flops_budget, "isoflop_centre": r.isoflop_centre,
        } for r in self.runs])
        if any(r.unique_tokens for r in self.runs):  # only sweeps with a unique-data axis show it
            frame["unique_tokens"] = [r.unique_tokens for r in self.runs]
            frame["epochs"] = [r.epochs for r in self.runs]
        return frame

    @property
    def run_ids(self) -> list[str]:
        """The planned runs' ids (their folder names), in planning order."""
        return [r.run_id for r in self.runs]

    @property
    def total_flops(self) -> float:
        """FLOPs of every run trained on its own (what a cosine sweep of the same grid costs)."""
        return float(sum(r.flops for r in self.runs))

    @property
    def trunk_flops(self) -> dict[str, float]:
        """WSD: trunk_id -> FLOPs the trunk's one job trains: the trunk up to its last fork point, plus every
        branch's cooldown."""
        forks: dict[str, float] = {}
        cooldowns: dict[str, float] = {}
        for r in self.runs:
            if r.schedule == "wsd" and r.trunk_id:
                step_flops = r.tokens_per_step * r.flops_per_token
                forks[r.trunk_id] = max(forks.get(r.trunk_id, 0.0), float(r.fork_step * step_flops))
                cooldowns[r.trunk_id] = cooldowns.get(r.trunk_id, 0.0) + float(r.cooldown_steps * step_flops)
        return {t: forks[t] + cooldowns[t] for t in forks}

    @property
    def flops_to_train(self) -> float:
        """FLOPs the sweep actually spends: WSD runs share their trunk up to the last fork point."""
        independent = sum(r.flops for r in self.runs if not (r.schedule == "wsd" and r.trunk_id))
        return float(independent + sum(self.trunk_flops.values()))

    @property
    def flops_saved(self) -> float:
        """total_flops - flops_to_train: what trunk reuse saves versus independent runs (0 for cosine)."""
        return self.total_flops - self.flops_to_train


MAX_RUNS = 100_000
"""Sweeps planning more runs are refused before planning: 10^5 runs take ~15 s to plan here and are
already ~100x the published scaling-law sweeps (Hoffmann et al. 2022 trained ~400 models); 10^6 took
9 minutes and 4 GB, most likely a typo in a grid."""


def count_runs(cfg: SweepConfig) -> int:
    """How many runs plan_sweep will make, from the config alone (sizes x budgets x LRs x seeds)."""
    g = cfg.grid
    points = 0
    if g.design in ("grid", "grid+isoflop"):
        pairs = sum(1 for d in g.n_tokens for u in g.unique_tokens if u <= d) if g.unique_tokens else len(g.n_tokens)
        points += (len(g.shapes) + len(g.n_params)) * pairs
    elif g.design == "curves":
        points += (len(g.shapes) + len(g.n_params)) * min(len(g.n_tokens), 2)
    if g.design in ("isoflop", "grid+isoflop"):
        points += g.n_sizes * len(g.flops)
    points += len(g.points)
    return len(cfg.model.arch) * points * len(cfg.train.lr_sweep or (1.0,)) * len(cfg.train.seeds)


def plan_sweep(cfg: SweepConfig) -> Plan:
    """All runs of a sweep, in a stable order: the grid's (family, size, budget), then the IsoFLOP
    budgets' (budget, family, size); each point's LR multipliers and seeds."""
    try:
        return _plan_sweep(cfg)
    except PluginError as exc:  # a plug-in model that fails to build or count at some planned shape
        raise ConfigError(f"{cfg.source}: {exc}") from None


def _plan_sweep(cfg: SweepConfig) -> Plan:
    g = cfg.grid
    n_runs = count_runs(cfg)
    if n_runs > MAX_RUNS:
        raise ConfigError(
            f"{cfg.source}: the sweep would plan {n_runs:,} runs (sizes x budgets x {len(cfg.model.arch)} "
            f"arch x {len(cfg.train.lr_sweep or (1.0,))} LRs x {len(cfg.train.seeds)} seeds); at most "
            f"{MAX_RUNS:,} are planned: split the sweep or thin its grid")
    # shape, n_tokens_target, budget, key, isoflop centre, unique tokens (0: the whole training split)
    points: list[tuple[ModelShape, float, float, str, float, int]] = []
    if g.design in ("grid", "grid+isoflop"):
        for shape in _model_shapes(cfg):
            for i, n_tok in enumerate(g.n_tokens):
                if not g.unique_tokens:
                    points.append((shape, n_tok, 0.0, f"[grid].n_tokens[{i}]", 0.0, 0))
                # each unique budget U_D <= D (U_D > D cannot repeat: skipped, see GridConfig.unique_tokens)
                for j, unique in enumerate(g.unique_tokens):
                    if unique <= n_tok:
                        points.append((shape, n_tok, 0.0, f"[grid].unique_tokens[{j}]", 0.0, int(unique)))
    elif g.design == "curves":
        for shape in _model_shapes(cfg):
            for i in curve_budgets(cfg):
                points.append((shape, g.n_tokens[i], 0.0, f"[grid].n_tokens[{i}]", 0.0, 0))
    windows: list[Window] = []
    prior = resolve_prior(cfg) if g.design in ("isoflop", "grid+isoflop") else None
    if prior is not None:
        per_arch = {arch: plan_windows(cfg, arch, prior) for arch in cfg.model.arch}
        for i, budget in enumerate(g.flops):
            for arch in cfg.model.arch:
                window = per_arch[arch][i]
                windows.append(window)
                for shape in window.shapes:
                    points.append((shape, budget / flops_per_token(shape), budget, f"[grid].flops[{i}]",
                                   window.centre, 0))
        check_design(cfg, windows)
    for arch in cfg.model.arch:
        for i, shape, n_tok in _explicit_points(cfg, arch):
            points.append((shape, n_tok, 0.0, f"[grid].points[{i}]", 0.0, 0))
    # WSD branches of one size share a trunk, so they share LR, batch size and warmup: the rules are
    # evaluated at the size's largest budget and warmup at its smallest (it must end before any fork).
    span: dict[ModelShape, tuple[float, float]] = {}
    for shape, n_tok, _budget, _key, _centre, _unique in points:
        lo, hi = span.get(shape, (n_tok, n_tok))
        span[shape] = (min(lo, n_tok), max(hi, n_tok))
    runs = []
    planned_by: dict[str, str] = {}  # what a run trains (its digest without labels) -> the key that planned it
    for shape, n_tok, budget, key, centre, unique in points:
        for mult in cfg.train.lr_sweep or (1.0,):
            for seed in cfg.train.seeds:
                run = _make_run(cfg, shape, n_tok, budget, seed, key, mult, span[shape], centre, unique)
                twin = planned_by.setdefault(twin_key(run), key)
                if twin != key:
                    if budget or key.startswith("[grid].points"):
                        # "grid+isoflop": this IsoFLOP point is a grid run already; an explicit point that the
                        # design (or an earlier point) already trains is that run: train it once
                        continue
                    # Two budgets that round to one step count train the same model twice under two ids, and a
                    # fit would then average them as if they were seeds.
                    raise ConfigError(
                        f"{cfg.source}: {key} = {budget or n_tok:g}: gives the same {run.n_steps} steps of "
                        f"{run.tokens_per_step} tokens as {twin} for L{shape.n_layer} d{shape.d_model}; the "
                        f"two would be one run trained twice; space the budgets further apart")
                runs.append(run)
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"{cfg.source}: [grid]: two grid points plan the same run {dup}")
    return Plan(sweep=cfg, runs=tuple(runs), windows=tuple(windows), prior=prior.source if prior else "")


def curve_budgets(cfg: SweepConfig) -> list[int]:
    """design = "curves": the indices of [grid].n_tokens trained per size: the largest budget, and with WSD
    also the smallest (a second cooldown branch off the same trunk); the curve law supplies the rest."""
    tokens = cfg.grid.n_tokens
    longest = max(range(len(tokens)), key=lambda i: tokens[i])
    if cfg.train.schedule != "wsd" or len(tokens) == 1:
        return [longest]
    shortest = min(range(len(tokens)), key=lambda i: tokens[i])
    return sorted({shortest, longest}, key=lambda i: tokens[i])


def equivalent_grid(cfg: SweepConfig) -> Plan:
    """design = "curves": the grid design it stands for (every size x every n_tokens, cosine), for its FLOPs."""
    grid = dataclasses.replace(cfg.grid, design="grid")
    train = dataclasses.replace(cfg.train, schedule="cosine")
    return plan_sweep(dataclasses.replace(cfg, grid=grid, train=train))


def _model_shapes(cfg: SweepConfig) -> list[ModelShape]:
    """Every model of the sweep: per architecture family (in [model].arch order), smallest first."""
    return [shape for arch in cfg.model.arch for shape in _family_shapes(cfg, arch)]


def _family_shapes(cfg: SweepConfig, arch: str) -> list[ModelShape]:
    """One family's models from [grid].shapes and [grid].n_params, smallest first; two that resolve to
    one model are refused (the sweep would train it twice under two names)."""
    m, g, V = cfg.model, cfg.grid, cfg.data.vocab_size
    shapes: list[tuple[str, ModelShape]] = []
    for i, s in enumerate(g.shapes):
        heads = s.n_head or max(1, s.d_model // m.head_dim)
        shapes.append((f"[grid].shapes[{i}]", ModelShape(
            arch=arch, n_layer=s.n_layer, d_model=s.d_model, n_head=heads, seq_len=m.seq_len,
            vocab_size=V, mlp_ratio=m.mlp_ratio, **m.shape_options())))
    for i, target in enumerate(g.n_params):
        shape = resolve_shape(target, arch=arch, seq_len=m.seq_len, vocab_size=V, head_dim=m.head_dim,
                              aspect_ratio=m.aspect_ratio, mlp_ratio=m.mlp_ratio, **m.shape_options())
        shapes.append((f"[grid].n_params[{i}]", shape))
    for key, shape in shapes:  # the config caps hold for what is planned, not only for what was typed
        _check_cap(cfg, key, shape, "parameters", n_params(shape), MAX_PARAMS)
    seen: dict[ModelShape, str] = {}
    for key, shape in shapes:
        if shape in seen:
            raise ConfigError(
                f"{cfg.source}: {key}: resolves to the same model as {seen[shape]} "
                f"({arch} L{shape.n_layer} d{shape.d_model}, {n_params(shape):,} params); "
                f"space the sizes further apart")
        seen[shape] = key
    return sorted(seen, key=n_params)


def _explicit_points(cfg: SweepConfig, arch: str) -> list[tuple[int, ModelShape, float]]:
    """[grid].points as (index, shape, n_tokens) of one family, in file order."""
    m, V = cfg.model, cfg.data.vocab_size
    out = []
    for i, pt in enumerate(cfg.grid.points):
        heads = pt.n_head or max(1, pt.d_model // m.head_dim)
        shape = ModelShape(arch=arch, n_layer=pt.n_layer, d_model=pt.d_model, n_head=heads, seq_len=m.seq_len,
                           vocab_size=V, mlp_ratio=m.mlp_ratio, **m.shape_options())
        _check_cap(cfg, f"[grid].points[{i}]", shape, "parameters", n_params(shape), MAX_PARAMS)
        out.append((i, shape, float(pt.n_tokens)))
    return out


def _check_cap(cfg: SweepConfig, key: str, shape: ModelShape, what: str, value: float, cap: float) -> None:
    """ConfigError naming the config key when a planned run exceeds a config cap (an explicit shape, or a
    target resolved under [model].aspect_ratio / head_dim, can plan far more than the typed values)."""
    if value > cap:
        raise ConfigError(f"{cfg.source}: {key}: plans {shape.arch} L{shape.n_layer} d{shape.d_model} with "
                          f"{float(value):.3g} {what}, more than the cap of {cap:g} (see [model] and [grid])")


def _make_run(cfg: SweepConfig, shape: ModelShape, n_tokens_target: float, budget: float, seed: int,
              key: str, lr_mult: float = 1.0, span: tuple[float, float] | None = None,
              isoflop_centre: float = 0.0, unique_tokens: int = 0) -> RunSpec:
    t = cfg.train
    wsd = t.schedule == "wsd"
    fpt = flops_per_token(shape)
    n_non_emb = n_params(shape, non_embedding=True)
    rule_tokens = span[1] if wsd and span else n_tokens_target
    batch = hparams.batch_size(t.batch_rule, t.batch_size, shape.seq_len, fpt * rule_tokens)
    if t.lr_rule == "fitted":  # [train.lr_law]: lr = a * N^b * D^c
        lr = hparams.fitted_lr(t.lr_law.a, t.lr_law.b, t.lr_law.c, n_non_emb, rule_tokens) * lr_mult
    else:
        lr = hparams.peak_lr(t.lr_rule, t.lr, n_non_emb, fpt * rule_tokens) * lr_mult
    if not 0 < lr < 1:
        raise ConfigError(f"{cfg.source}: [train].lr_rule = {t.lr_rule!r}: gives lr = {lr:.3g} for "
                          f"L{shape.n_layer} d{shape.d_model} (x{lr_mult:g}); must be in (0, 1)")
    tokens_per_step = batch * shape.seq_len
    n_steps = round(n_tokens_target / tokens_per_step)
    if n_steps < 1:
        value = budget if budget else n_tokens_target
        raise ConfigError(
            f"{cfg.source}: {key} = {value:g}: gives {n_tokens_target:.4g} tokens for "
            f"L{shape.n_layer} d{shape.d_model}, less than one optimizer step "
            f"({tokens_per_step} tokens = batch_size x seq_len)")
    n_tok = n_steps * tokens_per_step
    if unique_tokens and unique_tokens < tokens_per_step:  # a batch_rule can raise the batch past the config's
        raise ConfigError(f"{cfg.source}: {key} = {unique_tokens:g}: smaller than one batch of L{shape.n_layer} "
                          f"d{shape.d_model} ({tokens_per_step} tokens = batch_size x seq_len)")
    total = n_params(shape)
    _check_cap(cfg, key, shape, "tokens", n_tok, MAX_TOKENS)
    _check_cap(cfg, key, shape, "FLOPs", fpt * n_tok, MAX_FLOPS)
    warmup_base = max(1, round(span[0] / tokens_per_step)) if wsd and span else n_steps
    warmup_steps = hparams.warmup_steps(t.warmup_rule, t.warmup_fraction, warmup_base, total, tokens_per_step)
    if warmup_steps >= n_steps and t.warmup_rule != "fraction":
        raise ConfigError(
            f"{cfg.source}: [train].warmup_rule = {t.warmup_rule!r}: gives {warmup_steps} warmup steps for "
            f"L{shape.n_layer} d{shape.d_model} at {key} = {budget or n_tokens_target:g}, not fewer than the "
            f"run's {n_steps} steps (it would never reach its peak LR); use \"fraction\" or raise the budget")
    cooldown_steps = max(1, round(t.cooldown_fraction * n_steps)) if wsd else 0
    if wsd and n_steps - cooldown_steps < warmup_steps:
        raise ConfigError(
            f"{cfg.source}: {key} = {budget or n_tokens_target:g}: its WSD cooldown ({cooldown_steps} of "
            f"{n_steps} steps) would start inside the {warmup_steps}-step warmup for L{shape.n_layer} "
            f"d{shape.d_model}; lower [train].cooldown_fraction or warmup_fraction, or raise the budget")
    spec = RunSpec(
        run_id="", sweep=cfg.name, shape=shape, seed=seed, n_params=total,
        n_params_non_embedding=n_non_emb, flops_per_token=fpt,
        n_tokens=n_tok, n_tokens_target=float(n_tokens_target), flops=float(fpt * n_tok),
        flops_6nd=6.0 * total * n_tok, flops_budget=float(budget), n_steps=n_steps,
        warmup_steps=warmup_steps, batch_size=batch, lr=lr, min_lr_ratio=t.min_lr_ratio,
        weight_decay=t.weight_decay, beta1=t.beta1, beta2=t.beta2, grad_clip=t.grad_clip,
        eval_every_steps=t.eval_every_steps, log_every_steps=t.log_every_steps,
        checkpoint_every_s=t.checkpoint_every_s, data=cfg.data, wandb=cfg.wandb,
        schedule=t.schedule, cooldown_steps=cooldown_steps,
        cooldown_shape=t.cooldown_shape if wsd else "linear", lr_mult=lr_mult,
        isoflop_centre=float(isoflop_centre), compile=t.compile, command=t.command,
        curve_evals=t.curve_evals, curve_tokens=min(t.curve_tokens, cfg.data.val_tokens),
        unique_tokens=int(unique_tokens),
    )
    if wsd:
        spec = dataclasses.replace(spec, trunk_id=trunk_id_for(spec))
    if t.command:  # every {field} must exist in this run's spec: a typo fails here, not in a job
        why = template_fields_problem(t.command, spec)
        if why is not None:
            raise ConfigError(f"{cfg.source}: [train].command = {t.command!r}: {why}")
    return dataclasses.replace(spec, run_id=run_id_for(spec))
