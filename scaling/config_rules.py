"""What a valid sweep config is: the allowed values, the size caps and every check `validate` makes.

scaling.config builds the dataclasses from a TOML file and calls `validate`; it re-exports every name here, so
`from scaling.config import validate, ARCHS` keeps working. This module sits below it: the annotations name
scaling.config's dataclasses without importing them (they are never evaluated), and the checks read only the
fields. A failed check is a ConfigError with one line naming the file, key and value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scaling.errors import ConfigError
from scaling.plugin import is_plugin
from scaling.template import template_problem

# Upper bounds far past any model trained to date (~1e12 parameters, ~1e14 tokens, ~1e26 FLOPs): a value
# above them is a typo (1e300 for 1e3), and would otherwise plan runs of absurd size or overflow the accounting.
MAX_PARAMS, MAX_TOKENS, MAX_FLOPS = 1e13, 1e16, 1e28
# d_model / n_layer of published models spans ~10 to ~400 (Kaplan et al. 2020, fig. 5; GPT-3 175B: 128);
# below 1 a model is deeper than it is wide (1e-10 planned 5e14 parameters for a 3e4 target).
ASPECT_RATIO_RANGE = (1.0, 1000.0)
BYTE_VOCAB = 256
"""Vocabulary of byte-level text sources (stdlib, text files and folders)."""
ARCHS = ("gpt", "llama", "lstm", "gru")
PARAMETRIZATIONS = ("sp", "mup")
MUP_ARCHS = ("gpt", "llama")
"""Families scaling.mup is defined for: every width of theirs scales with d_model (the recurrent families'
gates would need rules of their own)."""
MUP_TIED_EMBEDDING_LR_MULT = 8.0
"""Default of [model].mup_tied_embedding_lr_mult: under muP, the tied embedding/readout's Adam LR over [train].lr
(scaling.mup.param_groups; tuned at base_width 32, benchmarks/README.md bench_mup). Run ids leave it out at this
value (scaling.results.records.SHAPE_ADDED_LATER), so they are as before the key existed."""
DESIGNS = ("grid", "isoflop", "grid+isoflop", "curves")
BACKENDS = ("local", "slurm")
WANDB_MODES = ("offline", "online", "disabled")
SCHEDULES = ("cosine", "wsd")
COOLDOWN_SHAPES = ("linear", "1-sqrt")
LR_RULES = ("constant", "kaplan", "deepseek", "fitted")
WARMUP_RULES = ("fraction", "params", "kaplan")
BATCH_RULES = ("constant", "deepseek")


def _check(ok: bool, cfg: SweepConfig, key: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{cfg.source or '<config>'}: {key} = {value!r}: {rule}")


def validate(cfg: SweepConfig) -> None:
    """Range and consistency checks that need more than one field's type."""
    c = _check
    # The name is a folder under results_dir: "." or ".." (also from a file named `..toml`) would put runs,
    # tables and plots in results_dir itself or outside it.
    c(is_safe_component(cfg.name), cfg, "name", cfg.name,
      "must be one folder name: letters, digits, '-', '_', '.', not starting with '.'"
      + (f" (from the file name {Path(cfg.source).name})" if cfg.source and cfg.name == Path(cfg.source).stem
         else ""))
    d, m, g, t, w = cfg.data, cfg.model, cfg.grid, cfg.train, cfg.wandb
    c(0 < d.val_fraction < 0.5, cfg, "[data].val_fraction", d.val_fraction, "must be in (0, 0.5)")
    c(d.val_tokens > 0, cfg, "[data].val_tokens", d.val_tokens, "must be > 0")
    c(2 <= d.vocab_size <= 65536, cfg, "[data].vocab_size", d.vocab_size, "must be in [2, 65536]")
    # Text sources are byte-level: ids 0..255. A smaller vocabulary loads, then every run fails on an
    # embedding IndexError; a larger one silently adds unused parameters to every model.
    c(is_token_file(d.source) or d.vocab_size == BYTE_VOCAB, cfg, "[data].vocab_size", d.vocab_size,
      f"must be {BYTE_VOCAB} for byte-level text (source {d.source!r}); other sizes need a uint16 .bin file")
    c(d.source == "stdlib" or Path(d.source).exists(), cfg, "[data].source", d.source,
      "no such file or folder (use \"stdlib\", a text file or folder, or a uint16 .bin file)")
    if d.source != "stdlib" and Path(d.source).is_file():
        c(Path(d.source).stat().st_size > 0, cfg, "[data].source", d.source, "is empty")
    c(len(m.arch) > 0, cfg, "[model].arch", list(m.arch), f"give at least one of {', '.join(ARCHS)}")
    for i, arch in enumerate(m.arch):
        key = "[model].arch" if len(m.arch) == 1 else f"[model].arch[{i}]"
        c(arch in ARCHS or is_plugin(arch), cfg, key, arch,
          f"must be one of {', '.join(ARCHS)}, or a plug-in \"package.module:factory\"")
        if is_plugin(arch):  # resolved now, so a typo fails before any job starts (scaling.plugin)
            from scaling.plugin import PluginError, resolve

            try:
                resolve(arch)
            except PluginError as exc:
                raise ConfigError(f"{cfg.source or '<config>'}: {str(exc).replace('[model].arch', key, 1)}") from None
    c(len(set(m.arch)) == len(m.arch), cfg, "[model].arch", list(m.arch), "must not repeat")
    c(m.seq_len > 0, cfg, "[model].seq_len", m.seq_len, "must be > 0")
    c(m.head_dim > 0, cfg, "[model].head_dim", m.head_dim, "must be > 0")
    c("llama" not in m.arch or m.head_dim % 2 == 0, cfg, "[model].head_dim", m.head_dim,
      "must be even for llama (rotary embeddings rotate channel pairs)")
    c(ASPECT_RATIO_RANGE[0] <= m.aspect_ratio <= ASPECT_RATIO_RANGE[1], cfg, "[model].aspect_ratio",
      m.aspect_ratio, f"must be in [{ASPECT_RATIO_RANGE[0]:g}, {ASPECT_RATIO_RANGE[1]:g}] (d_model per layer)")
    c(m.mlp_ratio > 0, cfg, "[model].mlp_ratio", m.mlp_ratio, "must be > 0")
    c(m.parametrization in PARAMETRIZATIONS, cfg, "[model].parametrization", m.parametrization,
      f"must be one of {', '.join(PARAMETRIZATIONS)}")
    c(m.mup_tied_embedding_lr_mult > 0, cfg, "[model].mup_tied_embedding_lr_mult", m.mup_tied_embedding_lr_mult,
      "must be > 0 (the tied embedding's LR over [train].lr)")
    if m.parametrization == "mup":
        c(m.base_width > 0, cfg, "[model].base_width", m.base_width,
          "must be > 0 with parametrization = \"mup\" (the d_model at which [train].lr was tuned)")
        for i, arch in enumerate(m.arch):
            key = "[model].arch" if len(m.arch) == 1 else f"[model].arch[{i}]"
            c(arch in MUP_ARCHS, cfg, key, arch,
              f"parametrization = \"mup\" is defined for {', '.join(MUP_ARCHS)} only")
    else:
        c(m.base_width == 0, cfg, "[model].base_width", m.base_width,
          "only used with parametrization = \"mup\"")
        c(m.mup_tied_embedding_lr_mult == MUP_TIED_EMBEDDING_LR_MULT, cfg, "[model].mup_tied_embedding_lr_mult",
          m.mup_tied_embedding_lr_mult, "only used with parametrization = \"mup\"")
    c(g.design in DESIGNS, cfg, "[grid].design", g.design, f"must be one of {', '.join(DESIGNS)}")
    # explicit shapes and explicit (shape, tokens) points obey the same shape rules
    shaped = [(f"[grid].shapes[{i}]", s) for i, s in enumerate(g.shapes)]
    shaped += [(f"[grid].points[{i}]", pt) for i, pt in enumerate(g.points)]
    for key, s in shaped:
        c(s.n_layer > 0, cfg, f"{key}.n_layer", s.n_layer, "must be > 0")
        c(s.d_model > 0, cfg, f"{key}.d_model", s.d_model, "must be > 0")
        c(s.n_head >= 0, cfg, f"{key}.n_head", s.n_head, "must be >= 0")
        heads = s.n_head or max(1, s.d_model // m.head_dim)
        recurrent_only = all(a in ("lstm", "gru") for a in m.arch)  # no attention, so no heads to divide into
        c(recurrent_only or s.d_model % heads == 0, cfg, f"{key}.d_model", s.d_model,
          f"must be divisible by its {heads} heads")
        c("llama" not in m.arch or (s.d_model // heads) % 2 == 0, cfg, f"{key}.d_model", s.d_model,
          f"gives llama heads of odd width {s.d_model // heads} (rotary embeddings rotate channel pairs)")
    for i, pt in enumerate(g.points):
        c(0 < pt.n_tokens <= MAX_TOKENS, cfg, f"[grid].points[{i}].n_tokens", pt.n_tokens,
          f"must be in (0, {MAX_TOKENS:g}]")
    for i, n in enumerate(g.n_params):
        c(0 < n <= MAX_PARAMS, cfg, f"[grid].n_params[{i}]", n, f"must be in (0, {MAX_PARAMS:g}]")
    for i, n in enumerate(g.n_tokens):
        c(0 < n <= MAX_TOKENS, cfg, f"[grid].n_tokens[{i}]", n, f"must be in (0, {MAX_TOKENS:g}]")
    for i, f in enumerate(g.flops):
        c(0 < f <= MAX_FLOPS, cfg, f"[grid].flops[{i}]", f, f"must be in (0, {MAX_FLOPS:g}]")
    _validate_unique_tokens(cfg)
    grid_part, iso_part = g.design in ("grid", "grid+isoflop", "curves"), g.design in ("isoflop", "grid+isoflop")
    if grid_part:
        # a sweep of explicit points alone (design = "grid", only [grid].points) is a sweep too
        c(bool(g.shapes or g.n_params or g.points), cfg, "[grid].n_params", list(g.n_params),
          "give at least one model size (n_params or shapes) or [grid].points")
        c(bool(g.n_tokens or (g.points and not (g.shapes or g.n_params))), cfg, "[grid].n_tokens",
          list(g.n_tokens), "give at least one token budget")
    else:
        c(not g.n_tokens, cfg, "[grid].n_tokens", list(g.n_tokens), "not used with design = \"isoflop\"")
        c(not g.shapes, cfg, "[grid].shapes", "...", "not used with design = \"isoflop\" (sizes come from "
          "the window around each budget's N_opt)")
        c(len(g.n_params) in (0, 2), cfg, "[grid].n_params", list(g.n_params),
          "isoflop takes optional [min, max] limits on the planned sizes")
        c(g.n_params[0] < g.n_params[1] if len(g.n_params) == 2 else True, cfg, "[grid].n_params",
          list(g.n_params), "must be [min, max] with min < max")
    c(g.window > 1, cfg, "[grid].window", g.window, "must be > 1 (the ratio of a window's largest to smallest size)")
    if not iso_part:
        c(not g.flops, cfg, "[grid].flops", list(g.flops), "only used with design = \"isoflop\" or \"grid+isoflop\"")
    else:
        c(bool(g.flops), cfg, "[grid].flops", list(g.flops), "give at least one compute budget")
        # the planner resolves every size before it can refuse duplicates: 1e9 would plan for hours
        c(3 <= g.n_sizes <= 1000, cfg, "[grid].n_sizes", g.n_sizes,
          "must be in [3, 1000] (a parabola per budget needs 3 sizes)")
        _validate_prior(cfg)
    c(t.batch_size > 0, cfg, "[train].batch_size", t.batch_size, "must be > 0")
    c(0 < t.lr < 1, cfg, "[train].lr", t.lr, "must be in (0, 1)")
    c(0 <= t.min_lr_ratio <= 1, cfg, "[train].min_lr_ratio", t.min_lr_ratio, "must be in [0, 1]")
    c(0 <= t.warmup_fraction < 1, cfg, "[train].warmup_fraction", t.warmup_fraction, "must be in [0, 1)")
    c(t.weight_decay >= 0, cfg, "[train].weight_decay", t.weight_decay, "must be >= 0")
    c(0 <= t.curve_evals <= 10_000, cfg, "[train].curve_evals", t.curve_evals, "must be in [0, 10000]")
    c(t.curve_tokens > 0, cfg, "[train].curve_tokens", t.curve_tokens, "must be > 0")
    c(0 <= t.beta1 < 1, cfg, "[train].beta1", t.beta1, "must be in [0, 1)")
    c(0 <= t.beta2 < 1, cfg, "[train].beta2", t.beta2, "must be in [0, 1)")
    c(t.grad_clip >= 0, cfg, "[train].grad_clip", t.grad_clip, "must be >= 0")
    c(t.eval_every_steps >= 0, cfg, "[train].eval_every_steps", t.eval_every_steps, "must be >= 0")
    c(t.log_every_steps > 0, cfg, "[train].log_every_steps", t.log_every_steps, "must be > 0")
    c(t.checkpoint_every_s > 0, cfg, "[train].checkpoint_every_s", t.checkpoint_every_s, "must be > 0")
    c(len(t.seeds) > 0, cfg, "[train].seeds", list(t.seeds), "give at least one seed")
    c(len(set(t.seeds)) == len(t.seeds), cfg, "[train].seeds", list(t.seeds), "must not repeat")
    c(all(s >= 0 for s in t.seeds), cfg, "[train].seeds", list(t.seeds), "must be >= 0")
    c(t.schedule in SCHEDULES, cfg, "[train].schedule", t.schedule, f"must be one of {', '.join(SCHEDULES)}")
    c(0 < t.cooldown_fraction <= 1, cfg, "[train].cooldown_fraction", t.cooldown_fraction, "must be in (0, 1]")
    c(t.cooldown_shape in COOLDOWN_SHAPES, cfg, "[train].cooldown_shape", t.cooldown_shape,
      f"must be one of {', '.join(COOLDOWN_SHAPES)}")
    c(t.lr_rule in LR_RULES, cfg, "[train].lr_rule", t.lr_rule, f"must be one of {', '.join(LR_RULES)}")
    if t.lr_rule == "fitted":
        c(t.lr_law.a > 0, cfg, "[train.lr_law].a", t.lr_law.a,
          "must be > 0 with lr_rule = \"fitted\" (lr = a * N^b * D^c, as `scaling fit` prints for an LR sweep)")
    c(t.warmup_rule in WARMUP_RULES, cfg, "[train].warmup_rule", t.warmup_rule,
      f"must be one of {', '.join(WARMUP_RULES)}")
    c(t.batch_rule in BATCH_RULES, cfg, "[train].batch_rule", t.batch_rule,
      f"must be one of {', '.join(BATCH_RULES)}")
    if t.command:
        why = template_problem(t.command)
        c(why is None, cfg, "[train].command", t.command, why or "")
        c(t.schedule != "wsd", cfg, "[train].schedule", t.schedule,
          "\"wsd\" shares one trunk between runs inside the built-in trainer; not with [train].command")
    for i, mult in enumerate(t.lr_sweep):
        c(mult > 0, cfg, f"[train].lr_sweep[{i}]", mult, "must be > 0")
    c(len(set(t.lr_sweep)) == len(t.lr_sweep), cfg, "[train].lr_sweep", list(t.lr_sweep), "must not repeat")
    validate_launch(cfg)
    c(w.mode in WANDB_MODES, cfg, "[wandb].mode", w.mode, f"must be one of {', '.join(WANDB_MODES)}")


def validate_launch(cfg: SweepConfig) -> None:
    """The `[launch]` checks (with the [train] keys they depend on): part of `validate`, and run alone by
    scaling.launch.launch() on the [launch] keys given to it, the one other place launch values enter."""
    c, t, la = _check, cfg.train, cfg.launch
    if t.command:
        c(tasks_per_job(la) == 1, cfg, "[launch].tasks_per_job", tasks_per_job(la),
          "[train].command runs one process per run (start your own ranks inside it)")
    c(la.backend in BACKENDS, cfg, "[launch].backend", la.backend, f"must be one of {', '.join(BACKENDS)}")
    c(la.max_parallel > 0, cfg, "[launch].max_parallel", la.max_parallel, "must be > 0")
    c(la.threads_per_job > 0, cfg, "[launch].threads_per_job", la.threads_per_job, "must be > 0")
    c(la.timeout_min > 0, cfg, "[launch].timeout_min", la.timeout_min,
      "must be > 0 (Slurm pends forever on 0)")
    c(la.max_num_timeout >= 0, cfg, "[launch].max_num_timeout", la.max_num_timeout, "must be >= 0")
    c(la.gpus_per_job >= 0, cfg, "[launch].gpus_per_job", la.gpus_per_job, "must be >= 0")
    c(la.tasks_per_job >= 0, cfg, "[launch].tasks_per_job", la.tasks_per_job, "must be >= 0")
    c(la.runs_per_gpu >= 1, cfg, "[launch].runs_per_gpu", la.runs_per_gpu, "must be >= 1")
    c(la.runs_per_gpu == 1 or la.gpus_per_job == 1, cfg, "[launch].runs_per_gpu", la.runs_per_gpu,
      f"sharing a GPU needs gpus_per_job = 1 (it is {la.gpus_per_job})")
    c(la.runs_per_gpu == 1 or la.backend == "local", cfg, "[launch].runs_per_gpu", la.runs_per_gpu,
      "must be 1 on Slurm (each array task gets its own GPU)")
    c(la.gpus_per_job <= 1 or la.tasks_per_job in (0, la.gpus_per_job), cfg, "[launch].tasks_per_job",
      la.tasks_per_job, f"must be 0 or gpus_per_job ({la.gpus_per_job}): one process per GPU")
    c(la.tasks_per_job <= 1 or la.backend == "slurm", cfg, "[launch].tasks_per_job", la.tasks_per_job,
      "more than one process per run needs backend = \"slurm\"")
    c(la.backend != "slurm" or t.batch_size % tasks_per_job(la) == 0, cfg, "[train].batch_size", t.batch_size,
      f"must divide evenly over the run's {tasks_per_job(la)} processes ([launch].tasks_per_job/gpus_per_job)")
    c(la.cpus_per_job >= 0, cfg, "[launch].cpus_per_job", la.cpus_per_job, "must be >= 0")
    c(la.mem_gb >= 0, cfg, "[launch].mem_gb", la.mem_gb, "must be >= 0")
    c(la.max_array_size > 1, cfg, "[launch].max_array_size", la.max_array_size, "must be > 1")
    c(la.est_flops_per_s > 0, cfg, "[launch].est_flops_per_s", la.est_flops_per_s, "must be > 0")


def _validate_unique_tokens(cfg: SweepConfig) -> None:
    """[grid].unique_tokens: design "grid", the built-in trainer, whole token counts, each U_D at most the largest
    budget D (a larger one would plan no run) and at least one batch (batch_size x seq_len tokens)."""
    g, t = cfg.grid, cfg.train
    if not g.unique_tokens:
        return
    _check(g.design == "grid", cfg, "[grid].design", g.design, "[grid].unique_tokens needs design = \"grid\"")
    _check(not t.command, cfg, "[grid].unique_tokens", list(g.unique_tokens),
           "needs the built-in trainer (it draws the unique subset); not with [train].command")
    _check(len(set(g.unique_tokens)) == len(g.unique_tokens), cfg, "[grid].unique_tokens", list(g.unique_tokens),
           "must not repeat")
    batch = t.batch_size * cfg.model.seq_len
    largest = max(g.n_tokens, default=0.0)
    for i, u in enumerate(g.unique_tokens):
        key = f"[grid].unique_tokens[{i}]"
        _check(u == 0 or 1 <= u <= MAX_TOKENS, cfg, key, u, f"must be 0 (the whole training split) or in [1, {MAX_TOKENS:g}]")
        _check(u == int(u), cfg, key, u, "must be a whole number of tokens")
        _check(u <= largest, cfg, key, u, f"U_D > D for every token budget (largest [grid].n_tokens = {largest:g}): "
               "it would plan no run; repeating a subset needs D >= U_D")
        _check(u == 0 or u >= batch, cfg, key, u, f"smaller than one batch ([train].batch_size x [model].seq_len = "
               f"{t.batch_size} x {cfg.model.seq_len} = {batch} tokens)")


def check_unique_tokens_fit(cfg: SweepConfig, n_train_tokens: int) -> None:
    """ConfigError when a [grid].unique_tokens value is larger than the corpus's training split (known only once
    the corpus is loaded: `scaling run` calls this before any job starts)."""
    for i, u in enumerate(cfg.grid.unique_tokens):
        _check(u <= n_train_tokens, cfg, f"[grid].unique_tokens[{i}]", u,
               f"larger than the training split of [data].source {cfg.data.source!r} ({n_train_tokens:,} tokens)")


def is_safe_component(name: str) -> bool:
    """Whether `name` is one path component that stays inside its parent: non-empty, only letters, digits,
    '-', '_', '.', and not starting with '.' (so never "." or "..", and never a hidden folder)."""
    return (isinstance(name, str) and bool(name) and not name.startswith(".")
            and all(ch.isalnum() or ch in "-_." for ch in name))


def is_token_file(source: str) -> bool:
    """Whether a [data].source names a pre-tokenized uint16 file (`.bin`, any case); else it is byte-level text."""
    # a folder named "x.bin" is a folder of text, not a token file (the vocab rule would take it for one)
    return source != "stdlib" and Path(source).suffix.lower() == ".bin" and not Path(source).is_dir()


def _validate_prior(cfg: SweepConfig) -> None:
    """[grid.prior]: exactly one source of the law, a known law name, an existing pilot, and a stated law's
    A, B, alpha, beta > 0 and E >= 0. (Pilots are fitted when the sweep is planned: scaling.isoflop.)"""
    p = cfg.grid.prior
    given = [k for k, on in (("law", bool(p.law)), ("pilot", bool(p.pilot)), ("E, A, B, alpha, beta", p.stated))
             if on]
    choices = ("law = \"Besiroglu 2024\" (a published law), pilot = \"results/<sweep>\" (earlier runs, fitted "
               "at plan time), or a law's E, A, B, alpha, beta")
    if not given:
        raise ConfigError(f"{cfg.source or '<config>'}: [grid.prior]: missing; an IsoFLOP design centres each "
                          f"budget's window on a prior law's N_opt(C): give {choices}")
    if len(given) > 1:
        raise ConfigError(f"{cfg.source or '<config>'}: [grid.prior]: gives {' and '.join(given)}; give exactly "
                          f"one of {choices}")
    if p.stated:
        _check(p.E >= 0, cfg, "[grid.prior].E", p.E, "must be >= 0 (the irreducible loss)")
        for name in ("A", "B", "alpha", "beta"):
            value = getattr(p, name)
            _check(value > 0, cfg, f"[grid.prior].{name}", value,
                   "must be > 0 (a stated prior law needs A, B, alpha, beta; they set N_opt(C))")
    if p.law:
        from scaling.laws import PUBLISHED_LAWS  # NumPy-backed, needed only for IsoFLOP designs

        names = list(PUBLISHED_LAWS)
        _check(p.law in names, cfg, "[grid.prior].law", p.law,
               f"unknown law (published laws: {', '.join(repr(n) for n in names)})")
    if p.pilot:
        _check(Path(p.pilot).exists(), cfg, "[grid.prior].pilot", p.pilot,
               "no such results folder or points CSV (relative paths are relative to the sweep file)")
        # a FIFO or device would block the read forever: only a folder or a regular file is read
        _check(Path(p.pilot).is_dir() or Path(p.pilot).is_file(), cfg, "[grid.prior].pilot", p.pilot,
               "not a results folder or a regular file (a FIFO, device or socket is never read)")


def tasks_per_job(launch: LaunchConfig) -> int:
    """Processes that train one run together: tasks_per_job, else one per GPU, else 1."""
    return launch.tasks_per_job or max(1, launch.gpus_per_job)
