"""The run folder's records: RunSpec (spec.json), RunResult (result.json), run ids and schema checks.

The spec a run trains (RunSpec, spec.json), the result it ends with (RunResult,
result.json), the one digest that names runs, trunks and checkpoints, and the schema checks that tell a
record from damage. Pure and torch-free.

Records are written from these dataclasses and read back as checked dicts (tables and fits want columns,
not objects): a record that fails its check reads as damage (scaling.results.state), never as a number.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scaling.accounting import ModelShape
from scaling.config import MAX_FLOPS, MAX_PARAMS, MAX_TOKENS, MUP_TIED_EMBEDDING_LR_MULT, DataConfig, WandbConfig

FINAL_STATES = ("done", "diverged")
STATES = ("done", "diverged", "failed", "damaged", "interrupted", "running", "pending")
"""`damaged`: a run file is unreadable or fails the schema check below (the run is redone by the next
launch and never fitted); `interrupted`: the launcher was stopped (Ctrl-C, SIGTERM, SIGHUP) while it trained."""

RESULT_FIELDS = ("status", "train_loss", "val_loss", "n_params", "n_tokens", "flops", "wall_s")
"""What every result.json holds (RunResult's required fields)."""

PLAUSIBLE: dict[str, tuple[float, float]] = {
    "n_params": (1.0, MAX_PARAMS), "n_tokens": (1.0, MAX_TOKENS), "flops": (1.0, MAX_FLOPS),
    "loss": (1e-6, 1e6), "train_loss": (1e-6, 1e6), "val_loss": (1e-6, 1e6),
}
"""Open ranges outside which a recorded number is damage, not a measurement: sizes up to the limits a sweep
config accepts (scaling.config), losses (nats/token) in (1e-6, 1e6): the loss of a uniform guess over even a
10^6-token vocabulary is ln(10^6) ~ 14, and no cross-entropy is below 0."""


@dataclass(frozen=True)
class RunSpec:
    """One training run: model shape, token budget, optimizer, data, and derived accounting."""

    run_id: str
    sweep: str
    shape: ModelShape
    seed: int
    n_params: int
    """Total trainable parameters (tied embedding once)."""
    n_params_non_embedding: int
    flops_per_token: int
    """Training FLOPs per token, Chinchilla's counting (see scaling.accounting)."""
    n_tokens: int
    """Tokens actually trained: n_steps * batch_size * seq_len."""
    n_tokens_target: float
    """The budget the plan asked for, before rounding to whole steps."""
    flops: float
    """flops_per_token * n_tokens."""
    flops_6nd: float
    """6 * n_params * n_tokens, the usual approximation, stored beside the exact count."""
    flops_budget: float
    """The IsoFLOP budget C this run belongs to (0 for grid designs)."""
    n_steps: int
    warmup_steps: int
    batch_size: int
    lr: float
    min_lr_ratio: float
    weight_decay: float
    beta1: float
    beta2: float
    grad_clip: float
    eval_every_steps: int
    log_every_steps: int
    checkpoint_every_s: float
    data: DataConfig
    wandb: WandbConfig
    schedule: str = "cosine"
    """"cosine" or "wsd" (see TrainConfig.schedule)."""
    cooldown_steps: int = 0
    """WSD: the last cooldown_steps steps decay the LR; the steps before them run at the peak LR."""
    cooldown_shape: str = "linear"
    """WSD: "linear" or "1-sqrt"."""
    trunk_id: str = ""
    """WSD: runs sharing a trunk_id share every step before their cooldown; one job trains them all."""
    lr_mult: float = 1.0
    """The [train].lr_sweep multiplier applied to the rule's LR (1.0 without a sweep)."""
    isoflop_centre: float = 0.0
    """IsoFLOP designs: the prior law's N_opt for this run's budget, the centre of its window (0 for grid runs)."""
    command: str = ""
    """[train].command: the template of the user's training command (scaling.external); "" = built-in trainer."""
    curve_evals: int = 0
    """[train].curve_evals: held-out curve points along training (0 in specs written before they existed)."""
    curve_tokens: int = 4096
    """[train].curve_tokens: held-out tokens of each curve point."""
    curve_horizon: int = 0
    """The steps the curve points are spread over (0 = n_steps); a WSD trunk's is its last fork step."""
    unique_tokens: int = 0
    """[grid].unique_tokens: train on a fixed subset of this many unique tokens of the training split, repeated for
    n_tokens / unique_tokens epochs (scaling.data.unique_subset); 0 = the whole training split."""
    compile: bool = False
    """Train through torch.compile, falling back to eager if it fails ([train].compile); how the run executes,
    like its device, so not part of its id (NOT_COMPUTED)."""

    @property
    def fork_step(self) -> int:
        """WSD: the step at which this run leaves its trunk (n_steps for cosine runs)."""
        return self.n_steps - self.cooldown_steps if self.schedule == "wsd" else self.n_steps

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.shape.seq_len

    @property
    def epochs(self) -> float:
        """How often the run sees its unique subset (n_tokens / unique_tokens); 0 without one."""
        return self.n_tokens / self.unique_tokens if self.unique_tokens else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key, default in OMITTED_AT_DEFAULT.items():  # spec.json of every earlier kind of run reads as before
            if out[key] == default:
                del out[key]
        for key, default in SHAPE_OMITTED_AT_DEFAULT.items():
            if out["shape"][key] == default:
                del out["shape"][key]
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunSpec:
        raw = dict(raw)
        raw["shape"] = ModelShape(**raw["shape"])
        raw["data"] = DataConfig(**raw["data"])
        raw["wandb"] = WandbConfig(**raw["wandb"])
        return cls(**raw)



# ------------------------------------------------------------------------------------------------ digest

OMITTED_AT_DEFAULT: dict[str, Any] = {"unique_tokens": 0}
"""Spec fields left out of spec.json (and of RunSpec.to_dict) at their default, so the records of runs that do not
use them stay byte for byte what they were."""
NOT_COMPUTED = frozenset({"eval_every_steps", "log_every_steps", "checkpoint_every_s", "wandb", "compile",
                          "curve_evals", "curve_tokens", "curve_horizon"})
"""Spec fields that do not change what a run computes: editing them keeps its folder and its checkpoint."""
NAMES = frozenset({"run_id", "sweep", "trunk_id"})
"""Spec fields that name a run rather than describe it: left out of its own id."""
ADDED_LATER: dict[str, Any] = {"schedule": "cosine", "cooldown_steps": 0, "cooldown_shape": "linear",
                               "lr_mult": 1.0, "isoflop_centre": 0.0, "command": "", "unique_tokens": 0}
"""Spec fields added after run ids existed, with their defaults: a field at its default is left out of the
digests, so runs planned before it existed keep their folders. A new RunSpec field goes here."""
SHAPE_ADDED_LATER: dict[str, Any] = {"tie_embeddings": True, "parametrization": "sp", "base_width": 0,
                                     "mup_tied_embedding_lr_mult": MUP_TIED_EMBEDDING_LR_MULT}
"""The same for fields of the model shape (ModelShape): left out of every digest at their defaults."""
SHAPE_OMITTED_AT_DEFAULT: dict[str, Any] = {"mup_tied_embedding_lr_mult": MUP_TIED_EMBEDDING_LR_MULT}
"""ModelShape fields also left out of spec.json at their default (as OMITTED_AT_DEFAULT), so the spec.json of
every run that does not set them stays byte for byte what it was."""
ADDED_AFTER_CHECKPOINTS = frozenset({"isoflop_centre", "command", "unique_tokens"})
"""The ADDED_LATER fields that came after checkpoints stored a digest (the others were in it from the start):
only these are left out of checkpoint_id at their default, so an interrupted run still resumes."""
BRANCH_ONLY = frozenset({"n_tokens", "n_tokens_target", "flops", "flops_6nd", "flops_budget", "n_steps",
                         "cooldown_steps", "isoflop_centre"})
"""Fields that differ between the branches of one WSD trunk (everything else is shared)."""
LABELS = frozenset({"flops_budget", "n_tokens_target", "isoflop_centre"})
"""Fields that only label a run (which budget or window planned it): two planned runs equal in everything
else train the same model on the same tokens, so "grid+isoflop" trains them once."""


def spec_digest(spec: RunSpec, leave_out: frozenset[str], n_hex: int = 8,
                added_later: frozenset[str] = frozenset(ADDED_LATER)) -> str:
    """The one content digest of the project: sha1 of the spec's JSON without `leave_out` and without the
    `added_later` fields at their ADDED_LATER defaults, first n_hex hex digits."""
    content = {k: v for k, v in spec.to_dict().items()
               if k not in leave_out and not (k in added_later and v == ADDED_LATER[k])}
    if "shape" in content:
        content["shape"] = {k: v for k, v in content["shape"].items()
                            if not (k in SHAPE_ADDED_LATER and v == SHAPE_ADDED_LATER[k])}
    return hashlib.sha1(json.dumps(content, sort_keys=True).encode()).hexdigest()[:n_hex]


def run_id_for(spec: RunSpec) -> str:
    """Readable and content-addressed: `gpt-L2-d64-T1.05M-s0-1a2b3c4d`."""
    s = spec.shape
    digest = spec_digest(spec, NOT_COMPUTED | NAMES)
    unique = f"-U{si(spec.unique_tokens)}" if spec.unique_tokens else ""  # only runs on a unique subset say so
    return f"{arch_label(s.arch)}-L{s.n_layer}-d{s.d_model}-T{si(spec.n_tokens)}{unique}-s{spec.seed}-{digest}"


def trunk_id_for(spec: RunSpec) -> str:
    """The WSD trunk a run branches from: same model, seed and optimizer, any token budget."""
    s = spec.shape
    digest = spec_digest(spec, NOT_COMPUTED | NAMES | BRANCH_ONLY)
    return f"trunk-{arch_label(s.arch)}-L{s.n_layer}-d{s.d_model}-s{spec.seed}-{digest}"


def describe_ids(ids: list[str], n: int = 3) -> str:
    """The first n run ids, and how many there are in all when there are more (how messages list runs)."""
    return ", ".join(ids[:n]) + (f", ... ({len(ids)} in all)" if len(ids) > n else "")


def arch_label(arch: str) -> str:
    """The arch as it appears in run ids (folder names): a plug-in "pkg.mod:build" reads "pkg.mod.build"."""
    return arch.replace(":", ".")


def twin_key(spec: RunSpec) -> str:
    """Equal for two planned runs that train the same model on the same tokens (they differ in LABELS only)."""
    return spec_digest(spec, NOT_COMPUTED | NAMES | LABELS)


def checkpoint_id(spec: RunSpec) -> str:
    """Stored in ckpt.pt: a checkpoint is resumed only by the run whose computation it is (its name
    included, so a WSD branch resumes only the trunk state handed to it, scaling.wsd)."""
    return spec_digest(spec, NOT_COMPUTED, n_hex=16, added_later=ADDED_AFTER_CHECKPOINTS)


def si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


# ------------------------------------------------------------------------------------------------ result


@dataclass(frozen=True)
class RunResult:
    """result.json: how a run ended. Its presence (passing result_problem) means the run is finished.

    Written by the trainer (scaling.train) and by WSD trunks for their branches (scaling.wsd); fields that
    are None are left out of the file. Keys this class does not know (an external trainer's own) are kept
    in `extra` and written back unchanged.
    """

    status: str
    """"done" or "diverged" (FINAL_STATES)."""
    train_loss: float
    """Mean step loss over the final 5% of steps (NaN when diverged)."""
    val_loss: float
    """Held-out loss at the end (NaN when diverged): the `loss` that fits use."""
    n_params: int
    n_tokens: int
    """Tokens trained (steps_done * tokens per step)."""
    flops: float
    wall_s: float
    """Seconds from the job's call to its result, start-up and evaluation included."""
    run_id: str | None = None
    n_params_non_embedding: int | None = None
    flops_6nd: float | None = None
    steps_done: int | None = None
    train_s: float | None = None
    """Seconds in the training loop, summed over attempts (requeues)."""
    tokens_per_s: float | None = None
    world_size: int | None = None
    reason: str | None = None
    """Why a run diverged."""
    git_sha: str | None = None
    torch_version: str | None = None
    python_version: str | None = None
    device: str | None = None
    num_threads: int | None = None
    hostname: str | None = None
    corpus: dict[str, Any] | None = None
    """source, fingerprint, n_train_tokens, n_val_tokens of the text trained on."""
    finished_at: str | None = None
    trunk_id: str | None = None
    """WSD branches: the trunk this run shared its first fork_step steps with."""
    fork_step: int | None = None
    flops_trunk: float | None = None
    """WSD: FLOPs of the shared trunk steps (counted once per trunk in a sweep's cost)."""
    flops_spent: float | None = None
    """WSD: FLOPs this branch cost on its own (its cooldown)."""
    unique_tokens: int | None = None
    """Runs on a unique subset ([grid].unique_tokens): its size U_D."""
    epochs: float | None = None
    """Runs on a unique subset: tokens trained / unique_tokens (how often each subset token was seen, on average)."""
    subset_fingerprint: str | None = None
    """Runs on a unique subset: sha256 (first 16 hex digits) of the subset's tokens."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**self.extra, **{k: v for k, v in out.items() if v is not None}}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunResult:
        """The record of a result dict; ValueError naming the problem if it fails result_problem."""
        why = result_problem(dict(raw))
        if why is not None:
            raise ValueError(f"not a result record: {why}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in raw.items() if k in known},
                   extra={k: v for k, v in raw.items() if k not in known})

    def replace(self, **changes: Any) -> RunResult:
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------------------------------ schema


def number(value: Any) -> float | None:
    """value as a finite float, or None for bools, strings, NaN, inf and integers too big for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        out = float(value)
    except OverflowError:  # an integer such as 10**400
        return None
    return out if math.isfinite(out) else None


def implausible(name: str, value: Any) -> str | None:
    """Why `value` cannot be a real `name` (see PLAUSIBLE), or None when it can."""
    x = number(value)
    if x is None:
        return f"{name} = {_short(value)} is not a finite number"
    lo, hi = PLAUSIBLE[name]
    if not lo < x < hi if name.endswith("loss") else not lo <= x <= hi:
        return f"{name} = {x:g} is outside the plausible range ({lo:g}, {hi:g})"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_SPEC_SHAPE_INTS = ("n_layer", "d_model", "n_head", "seq_len", "vocab_size")


def spec_problem(spec: dict[str, Any]) -> str | None:
    """The schema check of a spec.json record (the fields tables and fits read), or None when it passes."""
    shape = spec.get("shape")
    if not isinstance(shape, dict):
        return f"shape = {_short(shape)} is not an object"
    if not isinstance(shape.get("arch"), str):
        return f"shape.arch = {_short(shape.get('arch'))} is not a string"
    for key in _SPEC_SHAPE_INTS:
        value = shape.get(key)
        if key in shape and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            return f"shape.{key} = {_short(value)} is not a positive integer"
    for key in ("n_params", "n_tokens", "flops"):
        why = implausible(key, spec.get(key))
        if why and not (key != "n_params" and spec.get(key) == 0):  # a WSD trunk's spec plans no tokens itself
            return why
    for key in ("lr", "n_params_non_embedding", "flops_6nd", "flops_budget"):
        value = number(spec.get(key)) if spec.get(key) is not None else 1.0
        if value is None or value < 0 or (value == 0 and key == "lr"):  # budget 0: a grid run; 0: a WSD trunk
            return f"{key} = {_short(spec[key])} is not a finite number {'> 0' if key == 'lr' else '>= 0'}"
    for key in ("seed", "batch_size", "n_steps"):
        value = spec.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{key} = {_short(value)} is not an integer"
    for key in ("run_id", "sweep"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            return f"{key} = {_short(spec[key])} is not a string"
    return None


def result_problem(result: dict[str, Any]) -> str | None:
    """The schema check of a result.json record, or None when it passes."""
    missing = [k for k in RESULT_FIELDS if k not in result]
    if missing:
        return f"lacks {', '.join(missing)}"
    if result["status"] not in FINAL_STATES:
        return f"status = {_short(result['status'])} is not one of {', '.join(FINAL_STATES)}"
    if result["status"] == "done":
        for key in RESULT_FIELDS[1:6]:
            why = implausible(key, result[key])
            if why:
                return why
    return None


def status_problem(status: dict[str, Any]) -> str | None:
    """The schema check of a status.json record, or None when it passes."""
    if not isinstance(status.get("state"), str):
        return f"state = {_short(status.get('state'))} is not a string"
    if "time" in status and number(status["time"]) is None:
        return f"time = {_short(status['time'])} is not a number"
    for key in ("error", "log", "host", "job_id"):
        if status.get(key) is not None and not isinstance(status[key], str):
            return f"{key} = {_short(status[key])} is not a string"
    return None

