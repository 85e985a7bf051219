"""Sweep configuration: one TOML file -> frozen, validated dataclasses.

Each TOML table maps to one dataclass (torchtitan's section <-> dataclass shape). Every field carries an
attribute docstring; `docs/config reference` in the README is generated from them. Unknown keys, wrong
types and out-of-range values raise `ConfigError` with one line naming the file, key and value, before
anything runs.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaling.config_rules import MUP_TIED_EMBEDDING_LR_MULT  # the other names: re-exported at the end
from scaling.errors import ConfigError


@dataclass(frozen=True)
class ShapeConfig:
    """One explicit model shape in `[grid].shapes`."""

    n_layer: int
    """Number of transformer blocks (or LSTM layers)."""
    d_model: int
    """Residual stream width."""
    n_head: int = 0
    """Attention heads; 0 means d_model // model.head_dim."""


@dataclass(frozen=True)
class PointConfig:
    """One explicit (shape, token budget) run in `[grid].points`, e.g. what `scaling suggest` proposes."""

    n_layer: int
    """Number of transformer blocks (or LSTM layers)."""
    d_model: int
    """Residual stream width."""
    n_tokens: float
    """Tokens to train this shape on (rounded to whole optimizer steps, like [grid].n_tokens)."""
    n_head: int = 0
    """Attention heads; 0 means d_model // model.head_dim."""


@dataclass(frozen=True)
class DataConfig:
    """`[data]`: where the training text comes from and how it is split."""

    source: str = "stdlib"
    """"stdlib" (the running interpreter's own standard-library sources, ~30 MB, byte-level tokens),
    a text file or folder of text files (byte-level tokens), or a pre-tokenized uint16 `.bin` memmap."""
    val_fraction: float = 0.02
    """Fraction of the corpus held out for evaluation (whole files for text sources; the tail for .bin)."""
    val_tokens: int = 32768
    """Held-out tokens every run is evaluated on at the end (a fixed, seeded set of windows)."""
    vocab_size: int = 256
    """Vocabulary size: must be 256 for byte-level text; set it for a .bin file (all ids must be below it)."""


@dataclass(frozen=True)
class ModelConfig:
    """`[model]`: architecture and the depth/width rule used to resolve target parameter counts."""

    arch: tuple[str, ...] = ("gpt",)
    """Architecture family: "gpt" (GPT-2-style pre-norm decoder: learned positions, LayerNorm, GELU MLP),
    "llama" (RMSNorm, SwiGLU MLP, rotary positions, no biases), "lstm" or "gru"; a list such as
    ["gpt", "llama", "lstm", "gru"] trains every family on the same grid, and fits and compares each one
    separately. A plug-in "package.module:factory" (importable from the working directory) trains your own
    nn.Module: see "Sweep your own model"."""
    seq_len: int = 128
    """Context length in tokens."""
    head_dim: int = 32
    """Width of one attention head; d_model is a multiple of it when resolved from n_params."""
    aspect_ratio: float = 32.0
    """Depth/width rule for targets: d_model ~= aspect_ratio * n_layer (Kaplan et al. 2020 found loss
    insensitive to the ratio over a wide range; see resolve_shape). Must be in [1, 1000]."""
    mlp_ratio: int = 4
    """MLP hidden width as a multiple of d_model (llama's SwiGLU: 2/3 of it, rounded up to a multiple of 8,
    so its three matrices hold about as many parameters as gpt's two)."""
    tie_embeddings: bool = True
    """The output head reuses the token embedding (every family); false gives each model its own V x d
    head, counted in N and in non-embedding N."""
    parametrization: str = "sp"
    """"sp" (standard) or "mup" (maximal update parametrization, Yang et al. 2022, for gpt and llama:
    init, per-layer LRs and multipliers that let [train].lr tuned at base_width transfer to every width;
    see scaling/mup.py)."""
    base_width: int = 0
    """muP: the d_model of the base model, the width at which [train].lr is the LR of every layer (required
    with parametrization = "mup"; 0 otherwise)."""
    mup_tied_embedding_lr_mult: float = MUP_TIED_EMBEDDING_LR_MULT
    """muP: the tied token embedding/readout weight's Adam LR as a multiple of [train].lr, at every width (a
    per-layer constant tuned on the base model: 8 measured best at base_width 32, benchmarks/README.md; 1 gives
    microsoft/mup's LRs). Only with parametrization = "mup"; left at 8, run ids are as before the key existed."""

    def shape_options(self) -> dict[str, Any]:
        """The scaling.accounting.ModelShape fields this section sets besides the depth/width rule."""
        return {"tie_embeddings": self.tie_embeddings, "parametrization": self.parametrization,
                "base_width": self.base_width, "mup_tied_embedding_lr_mult": self.mup_tied_embedding_lr_mult}


@dataclass(frozen=True)
class PriorConfig:
    """`[grid.prior]`: the law that centres each IsoFLOP budget's window on its predicted N_opt(C).

    Give exactly one of: `law` (a published law), `pilot` (earlier runs, fitted at plan time), or
    E, A, B, alpha, beta (a law you state, e.g. copied from an earlier fit's report)."""

    law: str = ""
    """A published law by name: "Besiroglu 2024", "Chinchilla 2022 (Approach 3, TeX)", ... (the labels of
    scaling.compare.published_laws())."""
    pilot: str = ""
    """A results folder or points CSV (relative to the sweep file), fitted with Approach 3 when the sweep is
    planned (deterministic: same runs, same centres)."""
    E: float = 0.0
    """Stated law L(N, D) = E + A / N^alpha + B / D^beta: the irreducible loss (>= 0; it does not move
    N_opt(C), so an Approach 3 fit that cannot identify it, E ~ 0, still makes a prior)."""
    A: float = 0.0
    """Stated law: the parameter term's coefficient (> 0; 0 = no stated law)."""
    B: float = 0.0
    """Stated law: the data term's coefficient."""
    alpha: float = 0.0
    """Stated law: the parameter exponent."""
    beta: float = 0.0
    """Stated law: the data exponent."""

    @property
    def stated(self) -> bool:
        return any(v != 0 for v in (self.E, self.A, self.B, self.alpha, self.beta))


@dataclass(frozen=True)
class GridConfig:
    """`[grid]`: which (model size, token budget) points to train."""

    design: str = "grid"
    """"grid": every size x every n_tokens; "isoflop": for each budget in `flops`, n_sizes sizes spaced
    in log N over a window of `window` (max/min) centred on the prior's N_opt(C) for that budget (see
    [grid.prior]), each trained for D = C / flops_per_token(N); "grid+isoflop": both, a run planned by both
    trained once. Centred windows keep Approach 2 unbiased: one fixed size range for every budget puts the
    optimum off-centre toward the ends of the range, and the parabola's error then grows with the budget,
    biasing the fitted exponent a (0.44-0.49 instead of 0.513 on noiseless data from Besiroglu et al. 2024's
    law at 1e18-1e22 FLOPs; 0.513 with centred windows). "curves": one run per size to the largest of
    `n_tokens`, whose loss curve ([train].curve_evals) supplies every smaller budget through a curve law
    (`scaling curves`); with schedule = "wsd" the size's trunk also branches a cooldown at the smallest budget
    (two annealed end points per size), with "cosine" it is one cosine run. `scaling plan` prints its FLOPs
    beside the equivalent grid's."""
    shapes: tuple[ShapeConfig, ...] = ()
    """Explicit shapes, e.g. [{n_layer = 2, d_model = 64}]. Either this or n_params (or both)."""
    n_params: tuple[float, ...] = ()
    """"grid" (and the grid part of "grid+isoflop"): target total parameter counts, resolved to shapes by the
    depth/width rule. "isoflop": optional [min, max] limits on the planned sizes; a budget whose window does
    not fit inside them is refused (narrow `window`, move the budget, or widen the limits) rather than
    clipped, since a clipped window is off-centre again."""
    n_tokens: tuple[float, ...] = ()
    """Token budgets for design = "grid"."""
    unique_tokens: tuple[float, ...] = ()
    """Unique-token budgets U_D (design = "grid"): every size x n_tokens budget D is trained once per U_D <= D
    (pairs with U_D > D are skipped) on a fixed subset of U_D tokens of the training split, repeated for
    D / U_D epochs (Muennighoff et al. 2023; `scaling fit` then fits their data-constrained law). The subset:
    the training split cut into 4096-token blocks, the first blocks of one fixed seeded shuffle, the last one
    cut to U_D (scaling.data.unique_subset); it never holds held-out data. 0 = the whole training split (the
    ordinary run, same id as without this key). U_D must be at most the training split, at most the largest
    budget and at least one batch (batch_size x seq_len)."""
    flops: tuple[float, ...] = ()
    """Compute budgets (FLOPs, Chinchilla counting) for the IsoFLOP designs."""
    n_sizes: int = 5
    """Model sizes per compute budget in the IsoFLOP designs (>= 3: a parabola needs 3 points)."""
    window: float = 16.0
    """IsoFLOP designs: each budget's sizes span N_opt / sqrt(window) .. N_opt * sqrt(window), log-spaced
    (16: a factor 4 either side of the prior's optimum). Shapes are discrete, so of the windows shifted by
    up to half a size step the planner takes the least-shifted ones where Approach 2 on the prior's own
    losses misses N_opt by the same factor at every budget (a common factor leaves a unbiased), and
    refuses a design that would still move a by more than 0.005."""
    points: tuple[PointConfig, ...] = ()
    """Extra runs at explicit (shape, tokens) points, planned with any design, e.g.
    [{n_layer = 2, d_model = 64, n_tokens = 3e6}]: `scaling suggest` writes the runs it proposes here, so the
    extended sweep plans its earlier runs (same run ids, trained once) plus these. A point that is already a
    run of the design is trained once."""
    prior: PriorConfig = field(default_factory=PriorConfig)
    """The law whose N_opt(C) centres the IsoFLOP windows (see [grid.prior])."""


@dataclass(frozen=True)
class LrLawConfig:
    """`[train.lr_law]`: the constants of lr_rule = "fitted", lr = a * N^b * D^c (N non-embedding parameters,
    D the run's tokens), e.g. as `scaling fit` printed them for an LR sweep (scaling.analysis.lr_law)."""

    a: float = 0.0
    b: float = 0.0
    c: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """`[train]`: optimizer and schedule, shared by every run of the sweep."""

    batch_size: int = 16
    """Sequences per optimizer step."""
    lr: float = 3e-3
    """Peak learning rate (AdamW)."""
    min_lr_ratio: float = 0.1
    """Final LR of the cosine decay, as a fraction of the peak."""
    warmup_fraction: float = 0.05
    """Linear warmup length as a fraction of the run's steps (at least one step), for warmup_rule = "fraction"."""
    warmup_rule: str = "fraction"
    """Warmup length per run: "fraction" (warmup_fraction of its steps), "params" (N tokens for a model of N
    parameters; Porian et al. 2024) or "kaplan" (3000 steps; Kaplan et al. 2020); see scaling.hparams."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay on matrices (not on norms or biases)."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""
    eval_every_steps: int = 0
    """Held-out evaluation every this many steps during training (0: only at the end)."""
    log_every_steps: int = 10
    """Training-loss entries in metrics.jsonl every this many steps."""
    curve_evals: int = 16
    """Loss-curve points per run: held-out loss on a small fixed sample (curve_tokens) at about this many steps
    along training, half log-spaced from 1/64 of the run, half evenly spaced (scaling.schedule.curve_eval_steps),
    written to metrics.jsonl as {step, tokens, flops, lr, curve_loss} records; the final evaluation adds
    curve_loss beside val_loss. WSD trunks spread theirs over their longest branch, each branch over its cooldown.
    0 = none. Measured cost on the default sweep: see "Loss curves" in the README. Not part of the run id."""
    curve_tokens: int = 4096
    """Held-out tokens of each curve point: ceil(curve_tokens / seq_len) of the [data].val_tokens windows, evenly
    strided through them (capped at val_tokens). Not part of the run id."""
    checkpoint_every_s: float = 60.0
    """Write ckpt.pt at most this often (seconds of training); also written on requeue signals."""
    seeds: tuple[int, ...] = (0,)
    """Seeds per grid point; each seed is its own run."""
    schedule: str = "cosine"
    """LR schedule: "cosine" (warmup, cosine decay over each run) or "wsd" (warmup-stable-decay: one
    constant-LR trunk per model size, a cooldown branch forked from it at each token budget; Hagele et
    al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations"; Hu et al.
    2024, MiniCPM)."""
    cooldown_fraction: float = 0.2
    """WSD: each branch decays over this fraction of its own steps (Hagele et al. find ~20% matches cosine)."""
    cooldown_shape: str = "linear"
    """WSD: "linear" or "1-sqrt" decay to min_lr_ratio * lr (1-sqrt is Hagele et al.'s better shape)."""
    lr_rule: str = "constant"
    """Peak LR per run: "constant" (= lr), "kaplan" (Kaplan et al. 2020 eq. D.1 in N) or "deepseek"
    (DeepSeek LLM 2024 eq. 1 in the run's compute C); see scaling.hparams."""
    batch_rule: str = "constant"
    """Batch size per run: "constant" (= batch_size) or "deepseek" (DeepSeek LLM 2024 eq. 1, B_opt(C))."""
    lr_law: LrLawConfig = field(default_factory=LrLawConfig)
    """The law of lr_rule = "fitted"."""
    lr_sweep: tuple[float, ...] = ()
    """Multipliers of each run's peak LR, e.g. [0.5, 1, 2]: one run per multiplier; fits keep the best."""
    compile: bool = False
    """Train through torch.compile (inductor), meant for GPUs. If compiling fails, the run trains eagerly (one
    warning per process). Compiled losses are close to, not bitwise equal to, eager ones. On 2 CPU cores it did not
    speed up the default sweep's shapes and costs seconds of compiling per run (benchmarks/README.md). Not part of
    the run id or the checkpoint check, so turning it on keeps finished runs and resumes checkpoints."""
    command: str = ""
    """Train every run with your own script instead of the built-in trainer: a command line whose {fields}
    are the run's spec fields, e.g. "{python} train.py --n_layer={n_layer} --out={run_dir}" (see "Sweep
    your own training script" for what it receives and must write; "" = the built-in trainer)."""


@dataclass(frozen=True)
class LaunchConfig:
    """`[launch]`: where and how the runs execute."""

    backend: str = "local"
    """"local" (a bounded pool of processes on this machine) or "slurm"."""
    max_parallel: int = 2
    """Local: at most this many runs at once. Slurm: the job array's parallelism (%K)."""
    threads_per_job: int = 1
    """torch threads in each run; local max_parallel * threads_per_job should not exceed the cores."""
    timeout_min: int = 60
    """Wall-clock limit of one job, minutes (a job that hits it is requeued and resumes)."""
    max_num_timeout: int = 3
    """How many times a timed-out or preempted job is requeued."""
    process_per_run: bool = False
    """Local: true starts a fresh process for every run; false keeps one worker process per slot that trains
    runs one after another (longest first), paying the start-up (interpreter, torch import, corpus, ~2.5 s)
    once per slot. Results are bitwise the same either way. Slurm always runs one run per array task."""
    partition: str = ""
    """Slurm partition ("" = the cluster's default)."""
    runs_per_gpu: int = 1
    """Local, with gpus_per_job = 1: up to this many runs share each GPU at once (small models leave most of a
    GPU idle); max_parallel may then be up to runs_per_gpu x the visible GPUs. Runs are spread over the GPUs
    first, then stacked. Slurm gives each array task its own GPU (1 only)."""
    gpus_per_job: int = 0
    """GPUs per run. On Slurm more than 1 means DDP across them, one process per GPU (locally a run is one
    process, which trains on the first of its GPUs)."""
    tasks_per_job: int = 0
    """Slurm processes per run, training it together with DDP (gloo on CPU, nccl on GPUs); 0 = gpus_per_job
    if that is more than 1, else 1. Set it for multi-process CPU runs; [train].batch_size must divide by it."""
    cpus_per_job: int = 0
    """Slurm CPUs per task (0 = threads_per_job)."""
    mem_gb: float = 0
    """Slurm memory per job in GB (0 = not requested)."""
    account: str = ""
    """Slurm account."""
    qos: str = ""
    """Slurm QOS."""
    max_array_size: int = 1000
    """Job arrays are chunked below this (Slurm's MaxArraySize is often 1001)."""
    sbatch_extra: tuple[str, ...] = ()
    """Extra sbatch options, e.g. ["--constraint=a100"]."""
    est_flops_per_s: float = 5e10
    """Throughput assumed by `scaling plan` for its time estimate, per job."""


@dataclass(frozen=True)
class WandbConfig:
    """`[wandb]`: optional experiment tracking; results/ stays the source of truth."""

    enabled: bool = False
    """Log each run to wandb (group = sweep name, id = run id)."""
    mode: str = "offline"
    """"offline" (no network; sync later), "online" or "disabled"."""
    project: str = "scaling"
    """wandb project."""


@dataclass(frozen=True)
class SweepConfig:
    """A whole sweep: the top-level keys plus one section per table."""

    name: str
    """Sweep name (default: the file name without .toml); results go to <results_dir>/<name>/. One folder
    name: letters, digits, '-', '_', '.', not starting with '.'."""
    results_dir: str = "results"
    """Root folder of results, relative to the current directory unless absolute."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    source: str = ""
    """The file this config was read from (set by load_sweep, not a TOML key)."""

    @property
    def sweep_dir(self) -> Path:
        return Path(self.results_dir) / self.name


from scaling.config_rules import (ARCHS, ASPECT_RATIO_RANGE, BACKENDS, BATCH_RULES, BYTE_VOCAB,  # noqa: F401
                                  COOLDOWN_SHAPES, DESIGNS, LR_RULES, MAX_FLOPS, MAX_PARAMS, MAX_TOKENS, MUP_ARCHS,
                                  MUP_TIED_EMBEDDING_LR_MULT,
                                  PARAMETRIZATIONS, SCHEDULES, WANDB_MODES, WARMUP_RULES, is_safe_component,
                                  is_token_file, tasks_per_job, validate, validate_launch)


def load_sweep(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepConfig:
    """Read a sweep TOML into a validated SweepConfig.

    `overrides` maps dotted keys ("launch.max_parallel") to values, applied before validation.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such sweep file")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        *sections, key = dotted.split(".")
        table = raw
        for section in sections:
            table = table.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: override {dotted} = {value!r}: {section} is not a table")
        table[key] = value
    raw.setdefault("name", path.stem)
    cfg = _build(SweepConfig, raw, str(path), prefix="")
    cfg = dataclasses.replace(cfg, source=str(path))
    if cfg.data.source != "stdlib":
        # Relative corpus paths are relative to the sweep file, so a sweep runs from any directory.
        corpus = Path(cfg.data.source).expanduser()
        corpus = corpus if corpus.is_absolute() else (path.parent / corpus)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=str(corpus.resolve())))
    if cfg.grid.prior.pilot:
        # Like the corpus: a pilot path is relative to the sweep file.
        pilot = Path(cfg.grid.prior.pilot).expanduser()
        pilot = pilot if pilot.is_absolute() else (path.parent / pilot)
        prior = dataclasses.replace(cfg.grid.prior, pilot=str(pilot.resolve()))
        cfg = dataclasses.replace(cfg, grid=dataclasses.replace(cfg.grid, prior=prior))
    validate(cfg)
    return cfg


def _fmt_key(prefix: str, key: str) -> str:
    return f"[{prefix}].{key}" if prefix else key


def _build(cls: type, raw: Any, file: str, prefix: str) -> Any:
    """Recursively turn a TOML table into dataclass `cls`, checking keys and types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: [{prefix}] = {raw!r}: must be a table")
    hints = typing.get_type_hints(cls)
    # SweepConfig.source records the file read; it is not a TOML key
    known = {f.name for f in dataclasses.fields(cls) if not (cls is SweepConfig and f.name == "source")}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{file}: {_fmt_key(prefix, unknown[0])}: unknown key (valid: {', '.join(sorted(known))})"
        )
    kwargs = {}
    for name in known & set(raw):
        key = _fmt_key(prefix, name)
        kwargs[name] = _coerce(hints[name], raw[name], file, key, name if not prefix else f"{prefix}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in kwargs and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        where = f"[{prefix}]" if prefix else "top level"
        raise ConfigError(f"{file}: {where}: missing required key {missing[0] if missing else exc}") from None


def _coerce(hint: Any, value: Any, file: str, key: str, path: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, file, prefix=path)
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item_hint, _ellipsis) = typing.get_args(hint)
        if isinstance(value, str) and item_hint is str:
            value = [value]  # `arch = "gpt"` is shorthand for `arch = ["gpt"]`
        if not isinstance(value, list):
            raise ConfigError(f"{file}: {key} = {value!r}: must be a list")
        return tuple(_coerce(item_hint, v, file, f"{key}[{i}]", path) for i, v in enumerate(value))
    if origin in (types.UnionType, typing.Union):
        raise AssertionError("config fields are not unions")  # keeps the schema simple
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{file}: {key} = {value!r}: must be true or false")
        return value
    if hint is int:
        # TOML writes 1e6 as a float; accept integral floats for counts.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{file}: {key} = {value!r}: must be an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{file}: {key} = {value!r}: must be a number")
        if not math.isfinite(value):
            raise ConfigError(f"{file}: {key} = {value!r}: must be finite")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{file}: {key} = {value!r}: must be a string")
        return value
    raise AssertionError(f"unsupported config type {hint}")


def config_reference() -> str:
    """Markdown reference of every section and key, from the attribute docstrings (used by the README)."""
    import ast
    import inspect

    lines = []
    sections = [("(top level)", SweepConfig)] + [
        (f"[{f.name}]", f.default_factory) for f in dataclasses.fields(SweepConfig)
        if f.default_factory is not dataclasses.MISSING
    ] + [("[grid.prior]", PriorConfig), ("[[grid.shapes]] items", ShapeConfig),
         ("[[grid.points]] items", PointConfig)]
    for title, cls in sections:
        docs: dict[str, str] = {}
        body = ast.parse(inspect.getsource(cls)).body[0].body
        for prev, node in zip(body, body[1:]):
            if (isinstance(prev, ast.AnnAssign) and isinstance(node, ast.Expr)
                    and isinstance(node.value, ast.Constant)):
                docs[prev.target.id] = " ".join(node.value.value.split())
        lines += [f"**{title}**", "", "| key | default | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            if (cls is SweepConfig and f.name == "source") or dataclasses.is_dataclass(f.default_factory):
                continue
            if f.default is not dataclasses.MISSING:
                default = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = repr(f.default_factory())
            else:
                default = "required"
            lines.append(f"| `{f.name}` | `{default}` | {docs.get(f.name, '')} |")
        lines.append("")
    return "\n".join(lines)
