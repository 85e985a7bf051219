"""muP for the transformer families: width multipliers, initialisation scales and per-group learning rates.

The maximal update parametrization (Yang et al. 2022, "Tensor Programs V: Tuning Large Neural
Networks via Zero-Shot Hyperparameter Transfer", arXiv:2203.03466).

Under `[model] parametrization = "mup"` a model of width d trains like its base model of width
`base_width` with the same hyperparameters, so an LR tuned on the base transfers to wider models. With
width multiplier m = d_model / base_width, for Adam (Table 3 of the paper; microsoft/mup's MuAdam and
MuReadout implement the same rules):

| parameters | init | Adam LR | AdamW weight decay |
|---|---|---|---|
| embeddings (token, position: one infinite dimension) | as SP | lr | as SP |
| tied token embedding (also the readout) | as SP | lr * mup_tied_embedding_lr_mult (default 8) | as SP |
| hidden matrices (both dimensions grow with d) | std / sqrt(m), var ~ 1/fan_in | lr / m | wd * m |
| untied output head | zero | lr | as SP |
| norm weights (vectors) | as SP | lr | none |

where m is each hidden matrix's own fan-in multiplier (fan_in_mult: d_model / base_width, except llama's
down projection, whose rounded SwiGLU width gives 344 / 88 at d_model 128 over 32, as microsoft/mup's InfShape
does; tests/test_mup_oracle.py checks every parameter against mup 1.0.0),
and two multipliers in the forward pass: logits times 1/m (the readout's fan-in grows with d; a tied head
shares the embedding's LR and gets the same multiplier, like MuSharedReadout), and attention logits
q.k * 8 / d_head instead of q.k / sqrt(d_head) (Tensor Programs V, sec. 4: q and k become correlated during
training, so their dot product grows like d_head, not sqrt(d_head); 8 / d_head equals 1 / sqrt(d_head) at
d_head = 64, the constant microsoft/mup's README uses). Queries start at zero (Tensor Programs V, appendix
D.2), so every attention starts uniform at every width. The weight decay is multiplied by m because torch's
AdamW decays by lr * wd * p: the product stays at the base model's (microsoft/mup's decoupled_wd=False).

The tied weight's 8x is our one deliberate difference from microsoft/mup (which gives MuSharedReadout's weight
lr): a width-independent per-layer LR constant, tuned on the base model as Yang et al. tune theirs (see
TIED_EMBEDDING_LR_MULT). At m = 1 the init and logits equal SP's; the attention scale and the zero queries still differ, so a
muP base model is close to, not equal to, its SP twin. Under "sp" nothing here changes a run: the
optimizer gets the same two groups in the same order, and the model no multiplier.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn

from scaling.accounting import ModelShape, swiglu_hidden
from scaling.errors import ConfigError
# MUP_ARCHS: every width of theirs scales with d_model
from scaling.config import MUP_ARCHS, MUP_TIED_EMBEDDING_LR_MULT, PARAMETRIZATIONS

ATTENTION_NUMERATOR = 8.0
"""muP attention scale = ATTENTION_NUMERATOR / d_head (equal to SP's 1 / sqrt(d_head) at d_head = 64)."""


TIED_EMBEDDING_LR_MULT = MUP_TIED_EMBEDDING_LR_MULT
"""Under muP, the tied token embedding/readout weight's Adam LR over [train].lr (every width alike): the default of
[model].mup_tied_embedding_lr_mult (ModelShape.mup_tied_embedding_lr_mult), which param_groups reads.

microsoft/mup gives that weight (MuSharedReadout) the base LR. We give it 8x: the constant of a per-layer LR that
Yang et al. tune on the base model, measured at base_width 32 (benchmarks/README.md, bench_mup.py: held-out loss
2.394 -> 2.266 at the base's best LR, and wider better at every width 32..256, which it was not at 1x). Why the
base LR starves it: a hidden matrix's Adam update moves its output by about lr x fan_in x alignment per
coordinate (fan_in = base_width at the base, held there by the 1/m LR), the embedding's by lr (a one-hot input),
and the readout's, through the 1/m logit multiplier, by about lr x base_width x alignment. With one LR tuned for
the hidden matrices, the shared weight moves far less than the layers around it. Width-independent, so it moves
no optimum across widths; 1.0 gives microsoft/mup's LRs exactly."""


def width_mult(shape: ModelShape) -> float:
    """m = d_model / base_width under muP; 1.0 under SP."""
    if shape.parametrization == "sp":
        return 1.0
    if shape.parametrization != "mup":
        raise ValueError(f"unknown parametrization {shape.parametrization!r} (valid: {', '.join(PARAMETRIZATIONS)})")
    if shape.arch not in MUP_ARCHS:
        raise ValueError(f"parametrization 'mup' is defined for {', '.join(MUP_ARCHS)}, not {shape.arch!r}")
    if shape.base_width <= 0:
        raise ValueError(f"parametrization 'mup' needs base_width > 0, got {shape.base_width}")
    return shape.d_model / shape.base_width


def attention_scale(shape: ModelShape) -> float | None:
    """The factor on q.k; None means SDPA's default 1 / sqrt(d_head) (SP)."""
    if shape.parametrization == "sp":
        return None
    return ATTENTION_NUMERATOR / (shape.d_model // shape.n_head)


def output_mult(shape: ModelShape) -> float:
    """The factor on the logits: 1 / m."""
    return 1.0 / width_mult(shape)


def fan_in_mult(shape: ModelShape, fan_in: int) -> float:
    """A hidden matrix's fan-in over its fan-in at the base width: m for every fan-in of d_model or
    mlp_ratio * d_model, but swiglu_hidden(d) / swiglu_hidden(base_width) for llama's down projection, whose
    fan-in is rounded up to a multiple of 8 (344 / 88 = 3.91, not 4, at d_model 128 over 32). microsoft/mup's
    MuAdam and init scale each matrix by its own fan-in multiplier (InfShape.width_mult); so do we."""
    m = width_mult(shape)
    if shape.arch == "llama" and fan_in == swiglu_hidden(shape.d_model, shape.mlp_ratio) and fan_in != shape.d_model:
        return fan_in / swiglu_hidden(shape.base_width, shape.mlp_ratio)
    return m


def kind(name: str, param: torch.Tensor) -> str:
    """"embedding", "output", "hidden" or "vector" for a named parameter of a scaling.model module."""
    if name.split(".")[0] in ("wte", "wpe"):
        return "embedding"
    if name.split(".")[0] == "lm_head":
        return "output"
    return "hidden" if param.dim() >= 2 else "vector"


def init_(model: nn.Module, shape: ModelShape) -> None:
    """Rescale the SP init that the model's constructor drew to muP's (in place, drawing no random numbers,
    so an SP model and its muP twin start from the same draws). No-op under SP."""
    if shape.parametrization == "sp":
        return
    with torch.no_grad():
        for name, p in model.named_parameters():
            k = kind(name, p)
            if k == "hidden":
                p.mul_(1.0 / math.sqrt(fan_in_mult(shape, p.shape[1])))  # std 0.02 at the base width, variance ~ 1 / fan_in
            elif k == "output":
                p.zero_()
        for module in model.modules():
            if hasattr(module, "c_attn"):  # zero queries: the first d_model rows of the fused q, k, v matmul
                module.c_attn.weight[: shape.d_model].zero_()


def predates_tied_group(saved: list[dict], groups: list[dict]) -> bool:
    """Whether an optimizer state's param groups (`saved`, as torch's state_dict holds them) are the ones
    param_groups built before the tied embedding had a group of its own (its LR multiplier): one group fewer, the
    same lr_scales in the same order, the same number of parameters (the tied weight was in the embedding group)."""
    return (len(saved) == len(groups) - 1
            and sum(len(g["params"]) for g in saved) == sum(len(g["params"]) for g in groups)
            and [g.get("lr_scale") for g in saved] == [g["lr_scale"] for g in groups[:-1]])


def refuse_before_tied_group(path: Path, state: dict, groups: list[dict], shape: ModelShape) -> None:
    """ConfigError when checkpoint `state` (at `path`) is a muP run's from before the tied embedding's LR multiplier.

    Its optimizer is one group short and its steps trained the tied weight at 1x [train].lr, while the run's id
    (the multiplier at its default is left out of it) still names this folder. Mapping its groups onto the new
    ones would load, but train that weight at 1x and then at the multiplier, a run of neither; retraining silently
    would mix 1x and 8x runs in one sweep. So the user decides, and the checkpoint stays where it is."""
    saved = state.get("optimizer", {}).get("param_groups", [])
    if shape.parametrization != "mup" or not predates_tied_group(saved, groups):
        return
    raise ConfigError(
        f"{path.parent}: {path.name} predates [model].mup_tied_embedding_lr_mult (its optimizer has {len(saved)} "
        f"parameter groups, this run {len(groups)}): its {int(state.get('step', 0))} steps trained the tied embedding "
        f"at 1x [train].lr, this run trains it at {shape.mup_tied_embedding_lr_mult:g}x; delete {path} to restart "
        f"the run, or set mup_tied_embedding_lr_mult = 1 to train the sweep as before (new run ids: every run "
        f"retrains)")


def param_groups(model: nn.Module, shape: ModelShape, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: matrices decayed, vectors not; under muP hidden matrices also get LR x 1/m and
    weight decay x m. Each group's "lr_scale" multiplies the schedule's LR (scaling.train sets
    lr = lr_at(step) * lr_scale every step)."""
    named = list(model.named_parameters())
    if shape.parametrization == "sp":
        # Exactly the groups scaling.train has always built: SP runs stay bitwise the same.
        return [{"params": [p for _, p in named if p.dim() >= 2], "weight_decay": weight_decay, "lr_scale": 1.0},
                {"params": [p for _, p in named if p.dim() < 2], "weight_decay": 0.0, "lr_scale": 1.0}]
    hidden: dict[float, list[torch.Tensor]] = {}  # one group per fan-in multiplier, as microsoft/mup's MuAdam
    for n, p in named:
        if kind(n, p) == "hidden":
            hidden.setdefault(fan_in_mult(shape, p.shape[1]), []).append(p)
    tied = getattr(model, "lm_head", True) is None  # the token embedding is also the readout
    shared = [p for n, p in named if tied and n == "wte.weight"]
    other_matrices = [p for n, p in named if kind(n, p) in ("embedding", "output") and not (tied and n == "wte.weight")]
    vectors = [p for n, p in named if kind(n, p) == "vector"]
    return [{"params": ps, "weight_decay": weight_decay * fm, "lr_scale": 1.0 / fm} for fm, ps in hidden.items()] + [
            {"params": other_matrices, "weight_decay": weight_decay, "lr_scale": 1.0},
            {"params": vectors, "weight_decay": 0.0, "lr_scale": 1.0}] + (
            [{"params": shared, "weight_decay": weight_decay, "lr_scale": shape.mup_tied_embedding_lr_mult}] if shared else [])
