"""Exact parameter and FLOP accounting for the models in scaling.model, without torch.

`tests/test_accounting.py` asserts these counts equal `sum(p.numel())` of the real torch modules, so the
two cannot drift apart. Conventions (Pearce & Song 2024 show they move exponents at small scale):
- `n_params` is the total trainable parameter count (tied input/output embedding counted once).
- `n_params_non_embedding` leaves out the token and position embeddings (Kaplan et al. 2020).
- `flops_per_token` counts training FLOPs (forward + backward = 3x forward) the way Hoffmann et al.
  2022, Appendix F, do: embeddings and logits as matmuls, full (unmasked) attention over seq_len.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """Everything that fixes a model's parameter tensors."""

    arch: str
    """"gpt" or "lstm"."""
    n_layer: int
    d_model: int
    n_head: int
    """Attention heads (gpt); ignored by lstm."""
    seq_len: int
    vocab_size: int
    mlp_ratio: int = 4


def n_params(shape: ModelShape, non_embedding: bool = False) -> int:
    """Exact trainable parameter count of scaling.model.build_model(shape)."""
    if ":" in shape.arch:  # a plug-in model (scaling.plugin): counted from the module it builds
        from scaling import plugin

        c = plugin.counts(shape)
        return c.n_params_non_embedding if non_embedding else c.n_params
    d, L, V, T = shape.d_model, shape.n_layer, shape.vocab_size, shape.seq_len
    if shape.arch == "gpt":
        # per block: qkv (d x 3d) + out proj (d x d) + mlp (d x rd, rd x d), no biases; 2 LayerNorm weights
        per_block = (4 + 2 * shape.mlp_ratio) * d * d + 2 * d
        body = L * per_block + d  # + final LayerNorm weight
        embeddings = V * d + T * d  # token (tied with the output head) + learned positions
    elif shape.arch == "lstm":
        # torch.nn.LSTM per layer: W_ih (4d x d), W_hh (4d x d), b_ih (4d), b_hh (4d)
        per_layer = 8 * d * d + 8 * d
        body = L * per_layer + d  # + final LayerNorm weight
        embeddings = V * d  # tied with the output head; no position embedding
    else:
        raise ValueError(f"unknown arch {shape.arch!r}")
    return body if non_embedding else body + embeddings


def forward_flops_per_token(shape: ModelShape) -> int:
    """Forward FLOPs per token, Hoffmann et al. 2022 Appendix F (one multiply-add = 2 FLOPs)."""
    d, L, V, T, r = shape.d_model, shape.n_layer, shape.vocab_size, shape.seq_len, shape.mlp_ratio
    embed_and_logits = 2 * V * d + 2 * d * V
    if shape.arch == "gpt":
        attention = (
            2 * 3 * d * d  # key, query, value projections
            + 2 * T * d  # key @ query logits (full T x T, as Chinchilla counts)
            + 3 * shape.n_head * T  # softmax
            + 2 * T * d  # softmax @ value reduction
            + 2 * d * d  # output projection
        )
        dense = 2 * 2 * d * (r * d)
        return embed_and_logits + L * (attention + dense)
    if shape.arch == "lstm":
        # 4 gates, each an input and a recurrent matmul; elementwise gate math is negligible (~10d)
        return embed_and_logits + L * (2 * 8 * d * d)
    raise ValueError(f"unknown arch {shape.arch!r}")


def flops_per_token(shape: ModelShape) -> int:
    """Training FLOPs per token: backward costs twice the forward (Kaplan et al. 2020, sec. 2.1)."""
    if ":" in shape.arch:  # a plug-in model: its own count, or scaling.plugin's stated estimate
        from scaling import plugin

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
) -> ModelShape:
    """The shape whose total parameter count is nearest `target_params` (in log) under the depth/width rule.

    Rule: d_model is a multiple of head_dim, n_layer is d_model / aspect_ratio rounded down or up (at
    least 1), n_head = d_model / head_dim. A near-fixed aspect ratio keeps shapes comparable across sizes;
    Kaplan et al. 2020 (fig. 5) found loss depends only weakly on it over a wide range. Allowing both
    roundings gives finer size steps at the tiny scale, where one layer is a large share of the model.
    """
    best: tuple[float, ModelShape] | None = None
    for multiple in range(1, 4097):
        d = multiple * head_dim
        depths = sorted({max(1, math.floor(d / aspect_ratio)), max(1, math.ceil(d / aspect_ratio))})
        for n_layer in depths:
            shape = ModelShape(arch=arch, n_layer=n_layer, d_model=d, n_head=multiple, seq_len=seq_len,
                               vocab_size=vocab_size, mlp_ratio=mlp_ratio)
            gap = abs(math.log(n_params(shape) / target_params))
            if best is None or gap < best[0]:
                best = (gap, shape)
        if n_params(shape) > target_params and gap > best[0]:
            break  # counts grow with d: past the target and getting worse
    assert best is not None
    return best[1]
