"""A plug-in model for `[model] arch = "sweeps.own_model:build"` (see the README, "Sweep your own model").

Any importable `package.module:factory` works; this one is a small decoder built from torch's own
nn.TransformerEncoderLayer (pre-norm, with biases, ReLU MLP, a causal mask), unlike the
built-in "gpt" (no biases, GELU). The factory gets the resolved shape and returns the module; the framework
counts N from it (embedding = the nn.Embedding parameters) and, since it has no flops_per_token() method,
estimates FLOPs per token as 6 N_non_embedding + 6 n_layer seq_len d_model + 6 d_model vocab_size
(after Kaplan et al. 2020; scaling.plugin states the rule).
"""

from __future__ import annotations

import torch
import torch.nn as nn


class TorchDecoder(nn.Module):
    def __init__(self, n_layer: int, d_model: int, n_head: int, seq_len: int, vocab_size: int, mlp_ratio: int):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(seq_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_head, dim_feedforward=mlp_ratio * d_model, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, n_layer, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(d_model)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))  # (B, T, C)
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=idx.device)  # (T, T) causal
        x = self.ln_f(self.blocks(x, mask=mask, is_causal=True))
        return x @ self.wte.weight.T  # (B, T, V): tied head, counted once


def build(shape) -> nn.Module:
    """The factory: `shape` carries n_layer, d_model, n_head, seq_len, vocab_size and mlp_ratio."""
    return TorchDecoder(shape.n_layer, shape.d_model, shape.n_head, shape.seq_len, shape.vocab_size,
                        shape.mlp_ratio)
