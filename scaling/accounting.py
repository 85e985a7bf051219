"""Exact parameter and FLOP accounting for the models in scaling.model, without torch.

`tests/test_accounting.py` asserts these counts equal `sum(p.numel())` of the real torch modules, so the
two cannot drift apart. Conventions (Pearce & Song 2024 show they move exponents at small scale):
- `n_params` is the total trainable parameter count (tied input/output embedding counted once).
- `n_params_non_embedding` leaves out the token and position embeddings (Kaplan et al. 2020). An untied
  output head (`tie_embeddings = false`) is a dense layer applied to every token, so it stays in.
- `flops_per_token` counts training FLOPs (forward + backward = 3x forward) the way Hoffmann et al.
  2022, Appendix F, do: embeddings and logits as matmuls, full (unmasked) attention over seq_len.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scaling import plugin
from scaling.config_rules import MUP_TIED_EMBEDDING_LR_MULT
from scaling.plugin import is_plugin


@dataclass(frozen=True)
class ModelShape:
    """Everything that fixes a model's parameter tensors."""

    arch: str
    """"gpt", "llama", "lstm" or "gru"."""
    n_layer: int
    d_model: int
    n_head: int
    """Attention heads (gpt, llama); ignored by lstm and gru."""
    seq_len: int
    vocab_size: int
    mlp_ratio: int = 4
    tie_embeddings: bool = True
    """The output head reuses the token embedding; false gives the model its own V x d head."""
    parametrization: str = "sp"
    """"sp" (standard) or "mup" (scaling.mup): moves no parameter count, only init, LRs and multipliers."""
    base_width: int = 0
    """muP: d_model of the base model whose hyperparameters transfer (0 under "sp")."""
    mup_tied_embedding_lr_mult: float = MUP_TIED_EMBEDDING_LR_MULT
    """muP: the tied token embedding/readout weight's Adam LR over [train].lr (scaling.mup; unused under "sp")."""


RECURRENT = ("lstm", "gru")
GATES = {"lstm": 4, "gru": 3}
"""Gate matmuls per recurrent layer: torch.nn.LSTM has 4 (input, forget, cell, output), nn.GRU 3 (reset,
update, new)."""
SWIGLU_MULTIPLE = 8


def swiglu_hidden(d_model: float, mlp_ratio: int) -> int:
    """Llama's SwiGLU hidden width: 2/3 of mlp_ratio * d_model (three matrices instead of two keep the MLP's
    parameters near the GELU MLP's 2 * mlp_ratio * d^2), rounded up to a multiple of SWIGLU_MULTIPLE
    (Touvron et al. 2023 round 8/3 d up to a multiple of 256; 8 suits widths of tens)."""
    return SWIGLU_MULTIPLE * math.ceil(2 * mlp_ratio * d_model / 3 / SWIGLU_MULTIPLE)


def n_params(shape: ModelShape, non_embedding: bool = False) -> int:
    """Exact trainable parameter count of scaling.model.build_model(shape)."""
    if is_plugin(shape.arch):  # a plug-in model (scaling.plugin): counted from the module it builds
        c = plugin.counts(shape)
        return c.n_params_non_embedding if non_embedding else c.n_params
    d, L, V, T = shape.d_model, shape.n_layer, shape.vocab_size, shape.seq_len
    if shape.arch == "gpt":
        # per block: qkv (d x 3d) + out proj (d x d) + mlp (d x rd, rd x d), no biases; 2 LayerNorm weights
        per_block = (4 + 2 * shape.mlp_ratio) * d * d + 2 * d
        body = L * per_block + d  # + final LayerNorm weight
        embeddings = V * d + T * d  # token (tied with the output head) + learned positions
    elif shape.arch == "llama":
        # per block: qkv (d x 3d) + out proj (d x d) + SwiGLU gate and up (d x h each) and down (h x d),
        # no biases; 2 RMSNorm weights. Rotary embeddings have no parameters.
        per_block = 4 * d * d + 3 * d * swiglu_hidden(d, shape.mlp_ratio) + 2 * d
        body = L * per_block + d  # + final RMSNorm weight
        embeddings = V * d  # token embedding only: positions are rotary
    elif shape.arch in RECURRENT:
        # torch.nn.LSTM / nn.GRU per layer and gate: W_ih (d x d), W_hh (d x d), b_ih (d), b_hh (d)
        per_layer = GATES[shape.arch] * (2 * d * d + 2 * d)
        body = L * per_layer + d  # + final LayerNorm weight
        embeddings = V * d  # no position embedding
    else:
        raise ValueError(f"unknown arch {shape.arch!r}")
    if not shape.tie_embeddings:
        body += d * V  # the untied output head
    return body if non_embedding else body + embeddings


def forward_flops_per_token(shape: ModelShape) -> int:
    """Forward FLOPs per token, Hoffmann et al. 2022 Appendix F (one multiply-add = 2 FLOPs)."""
    d, L, V, T, r = shape.d_model, shape.n_layer, shape.vocab_size, shape.seq_len, shape.mlp_ratio
    embed_and_logits = 2 * V * d + 2 * d * V
    if shape.arch in ("gpt", "llama"):
        attention = (
            2 * 3 * d * d  # key, query, value projections
            + 2 * T * d  # key @ query logits (full T x T, as Chinchilla counts)
            + 3 * shape.n_head * T  # softmax
            + 2 * T * d  # softmax @ value reduction
            + 2 * d * d  # output projection
        )
        if shape.arch == "gpt":
            dense = 2 * 2 * d * (r * d)
        else:
            # SwiGLU: gate, up and down matmuls; rotary embeddings and RMSNorm are elementwise (~d per
            # token), left out like Chinchilla leaves out LayerNorm
            dense = 2 * 3 * d * swiglu_hidden(d, r)
        return embed_and_logits + L * (attention + dense)
    if shape.arch in RECURRENT:
        # each gate is an input and a recurrent matmul; elementwise gate math is negligible (~10d)
        return embed_and_logits + L * (2 * 2 * GATES[shape.arch] * d * d)
    raise ValueError(f"unknown arch {shape.arch!r}")


def flops_per_token(shape: ModelShape) -> int:
    """Training FLOPs per token: backward costs twice the forward (Kaplan et al. 2020, sec. 2.1)."""
    if is_plugin(shape.arch):  # a plug-in model: its own count, or scaling.plugin's stated estimate
        return plugin.counts(shape).flops_per_token
    return 3 * forward_flops_per_token(shape)


def resolve_shape(
    target_params: float,
    *,
    arch: str,
    seq_len: int,
    vocab_size: int,
    head_dim: int,
    aspect_ratio: float,
    mlp_ratio: int = 4,
    **options: object,
) -> ModelShape:
    """The shape whose total parameter count is nearest `target_params` (in log) under the depth/width rule.

    Rule: d_model is a multiple of head_dim, n_layer is d_model / aspect_ratio rounded down or up (at
    least 1), n_head = d_model / head_dim. A near-fixed aspect ratio keeps shapes comparable across sizes;
    Kaplan et al. 2020 (fig. 5) found loss depends only weakly on it over a wide range. Allowing both
    roundings gives finer size steps at the tiny scale, where one layer is a large share of the model.
    `options` are the other ModelShape fields (tie_embeddings, parametrization, base_width).
    """
    best: tuple[float, ModelShape] | None = None
    for multiple in range(1, 4097):
        d = multiple * head_dim
        depths = sorted({max(1, math.floor(d / aspect_ratio)), max(1, math.ceil(d / aspect_ratio))})
        for n_layer in depths:
            shape = ModelShape(arch=arch, n_layer=n_layer, d_model=d, n_head=multiple, seq_len=seq_len,
                               vocab_size=vocab_size, mlp_ratio=mlp_ratio, **options)  # type: ignore[arg-type]
            gap = abs(math.log(n_params(shape) / target_params))
            if best is None or gap < best[0]:
                best = (gap, shape)
        if n_params(shape) > target_params and gap > best[0]:
            break  # counts grow with d: past the target and getting worse
    assert best is not None
    return best[1]
