"""The models a sweep trains: a nanoGPT-style pre-norm GPT and a tied-embedding LSTM baseline.

Parameter counts match scaling.accounting.n_params exactly (tests/test_model.py checks it), so the
N of every fit is the N of the module that was trained.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from scaling.accounting import ModelShape


class CausalSelfAttention(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        d = shape.d_model
        if d % shape.n_head != 0:
            raise ValueError(f"d_model {d} is not divisible by n_head {shape.n_head}")
        self.n_head = shape.n_head
        self.c_attn = nn.Linear(d, 3 * d, bias=False)  # q, k, v in one matmul
        self.c_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        d = shape.d_model
        self.c_fc = nn.Linear(d, shape.mlp_ratio * d, bias=False)
        self.c_proj = nn.Linear(shape.mlp_ratio * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.ln_1 = nn.LayerNorm(shape.d_model, bias=False)
        self.attn = CausalSelfAttention(shape)
        self.ln_2 = nn.LayerNorm(shape.d_model, bias=False)
        self.mlp = MLP(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.shape = shape
        d = shape.d_model
        self.wte = nn.Embedding(shape.vocab_size, d)
        self.wpe = nn.Embedding(shape.seq_len, d)
        self.blocks = nn.ModuleList([Block(shape) for _ in range(shape.n_layer)])
        self.ln_f = nn.LayerNorm(d, bias=False)
        self.apply(_init_weights)
        # GPT-2 paper: scale residual projections by 1/sqrt(2L) so the residual stream's variance does
        # not grow with depth (two residual additions per block).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * shape.n_layer))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.size()
        if T > self.shape.seq_len:
            raise ValueError(f"sequence of length {T} exceeds seq_len {self.shape.seq_len}")
        pos = torch.arange(T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        # Tied head: reuse the token embedding as the output projection (counted once in n_params).
        return x @ self.wte.weight.T  # (B, T, V)


class LSTM(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.shape = shape
        d = shape.d_model
        self.wte = nn.Embedding(shape.vocab_size, d)
        self.lstm = nn.LSTM(d, d, num_layers=shape.n_layer, batch_first=True)
        self.ln_f = nn.LayerNorm(d, bias=False)
        nn.init.normal_(self.wte.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx)  # (B, T, C)
        x, _ = self.lstm(x)  # (B, T, C); a fresh zero state per sequence
        x = self.ln_f(x)
        return x @ self.wte.weight.T  # (B, T, V)


def _init_weights(module: nn.Module) -> None:
    # nanoGPT init: N(0, 0.02) for every matrix; LayerNorm keeps its ones.
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)


def build_model(shape: ModelShape) -> nn.Module:
    """The module for `shape`; its parameter count is scaling.accounting.n_params(shape)."""
    if ":" in shape.arch:  # a plug-in "package.module:factory" (scaling.plugin)
        from scaling import plugin

        return plugin.build(shape)
    if shape.arch == "gpt":
        return GPT(shape)
    if shape.arch == "lstm":
        return LSTM(shape)
    raise ValueError(f"unknown arch {shape.arch!r} (valid: gpt, lstm)")
