"""The models a sweep trains: the torch modules of the built-in families (GPT, Llama, LSTM, GRU).

A nanoGPT-style pre-norm GPT, a Llama-style decoder (RMSNorm, SwiGLU, rotary
positions, no biases), and LSTM and GRU baselines. Every family ties its output head to the token embedding
unless shape.tie_embeddings is false; muP (scaling.mup) changes init and two multipliers of gpt and llama.

Parameter counts match scaling.accounting.n_params exactly (tests/test_model.py and tests/test_families.py
check it), so the N of every fit is the N of the module that was trained; training checks it again on the
module it builds, and the first forward's output shape (check_built, check_logits).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

from scaling import mup, plugin
from scaling.accounting import RECURRENT, ModelShape, swiglu_hidden


class CausalSelfAttention(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        d = shape.d_model
        if d % shape.n_head != 0:
            raise ValueError(f"d_model {d} is not divisible by n_head {shape.n_head}")
        self.n_head = shape.n_head
        self.c_attn = nn.Linear(d, 3 * d, bias=False)  # q, k, v in one matmul
        self.c_proj = nn.Linear(d, d, bias=False)
        self.scale = mup.attention_scale(shape)  # None: SDPA's 1 / sqrt(hs)
        self.rotary = Rotary(shape) if shape.arch == "llama" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)  # (B, nh, T, hs)
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


class Rotary(nn.Module):
    """Rotary position embeddings (Su et al. 2021, RoFormer): each pair of channels (i, i + hs/2) of q and k
    is rotated by the angle pos * 10000^(-2i/hs), so q.k depends on positions only through their offset."""

    def __init__(self, shape: ModelShape):
        super().__init__()
        hs = shape.d_model // shape.n_head
        if hs % 2:
            raise ValueError(f"rotary embeddings rotate channel pairs: head width {hs} must be even")
        inv_freq = 10000.0 ** (-torch.arange(0, hs, 2, dtype=torch.float32) / hs)  # (hs/2,)
        angles = torch.outer(torch.arange(shape.seq_len, dtype=torch.float32), inv_freq)  # (T, hs/2)
        # buffers, not parameters: counted nowhere, and left out of checkpoints (recomputed on load)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.size(-2)
        x1, x2 = x.chunk(2, dim=-1)  # 2 x (B, nh, T, hs/2)
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)  # (T, hs/2)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, nh, T, hs)


class SwiGLU(nn.Module):
    """Llama's MLP (Shazeer 2020): down(silu(gate(x)) * up(x)), hidden width accounting.swiglu_hidden."""

    def __init__(self, shape: ModelShape):
        super().__init__()
        d, self.hidden = shape.d_model, swiglu_hidden(shape.d_model, shape.mlp_ratio)
        self.c_fc = nn.Linear(d, 2 * self.hidden, bias=False)  # gate and up in one matmul
        self.c_proj = nn.Linear(self.hidden, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.c_fc(x).split(self.hidden, dim=-1)  # 2 x (B, T, h)
        return self.c_proj(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        llama = shape.arch == "llama"
        self.ln_1 = nn.RMSNorm(shape.d_model, eps=1e-5) if llama else nn.LayerNorm(shape.d_model, bias=False)
        self.attn = CausalSelfAttention(shape)
        self.ln_2 = nn.RMSNorm(shape.d_model, eps=1e-5) if llama else nn.LayerNorm(shape.d_model, bias=False)
        self.mlp = SwiGLU(shape) if llama else MLP(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """The decoder families: "gpt" (learned positions, LayerNorm, GELU MLP) and "llama" (rotary positions,
    RMSNorm, SwiGLU MLP); both pre-norm with no biases."""

    def __init__(self, shape: ModelShape):
        super().__init__()
        self.shape = shape
        d = shape.d_model
        self.wte = nn.Embedding(shape.vocab_size, d)
        self.wpe = nn.Embedding(shape.seq_len, d) if shape.arch == "gpt" else None
        self.blocks = nn.ModuleList([Block(shape) for _ in range(shape.n_layer)])
        self.ln_f = nn.RMSNorm(d, eps=1e-5) if shape.arch == "llama" else nn.LayerNorm(d, bias=False)
        self.lm_head = None if shape.tie_embeddings else nn.Linear(d, shape.vocab_size, bias=False)
        self.output_mult = mup.output_mult(shape)
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
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, dtype=torch.long, device=idx.device))  # + (T, C)
        for block in self.blocks:
            x = block(x)
        return _logits(self, self.ln_f(x))


class Recurrent(nn.Module):
    """The recurrent baselines, "lstm" (torch.nn.LSTM) and "gru" (torch.nn.GRU): same embedding, final
    LayerNorm and head, n_layer stacked layers of width d_model."""

    def __init__(self, shape: ModelShape):
        super().__init__()
        self.shape = shape
        d = shape.d_model
        self.wte = nn.Embedding(shape.vocab_size, d)
        # one attribute per cell type: an LSTM's checkpoints keep the parameter names they always had
        if shape.arch == "lstm":
            self.lstm = nn.LSTM(d, d, num_layers=shape.n_layer, batch_first=True)
        else:
            self.gru = nn.GRU(d, d, num_layers=shape.n_layer, batch_first=True)
        self.ln_f = nn.LayerNorm(d, bias=False)
        self.lm_head = None if shape.tie_embeddings else nn.Linear(d, shape.vocab_size, bias=False)
        self.output_mult = 1.0
        nn.init.normal_(self.wte.weight, mean=0.0, std=0.02)
        if self.lm_head is not None:
            nn.init.normal_(self.lm_head.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx)  # (B, T, C)
        x, _ = (self.lstm if self.shape.arch == "lstm" else self.gru)(x)  # (B, T, C); a fresh zero state per sequence
        return _logits(self, self.ln_f(x))


def _logits(model: GPT | Recurrent, x: torch.Tensor) -> torch.Tensor:
    """(B, T, C) -> (B, T, V). A tied head reuses the token embedding (counted once in n_params)."""
    weight = model.wte.weight if model.lm_head is None else model.lm_head.weight  # (V, C)
    logits = x @ weight.T
    # muP's readout multiplier 1 / m; SP skips the multiply (its factor is 1)
    return logits if model.output_mult == 1.0 else logits * model.output_mult


def _init_weights(module: nn.Module) -> None:
    # nanoGPT init: N(0, 0.02) for every matrix; LayerNorm keeps its ones.
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)


def build_model(shape: ModelShape) -> nn.Module:
    """The module for `shape`; its parameter count is scaling.accounting.n_params(shape)."""
    if plugin.is_plugin(shape.arch):  # a plug-in "package.module:factory"
        return plugin.build(shape)
    mup.width_mult(shape)  # refuses an unknown parametrization, or muP for a family it is not defined for
    if shape.arch in ("gpt", "llama"):
        model: nn.Module = GPT(shape)
    elif shape.arch in RECURRENT:
        model = Recurrent(shape)
    else:
        raise ValueError(f"unknown arch {shape.arch!r} (valid: gpt, llama, lstm, gru)")
    mup.init_(model, shape)
    return model


def check_built(model: nn.Module, shape: ModelShape, n_params: int, n_params_non_embedding: int | None) -> None:
    """Refuse (one line) a model about to train whose parameter count differs from the one its run recorded at
    plan time: a plug-in factory that builds another module on the meta device (where it was counted) than on
    the training device, or a built-in family whose formula drifted from its module, would record a false N."""
    if plugin.is_plugin(shape.arch):
        plugin.check_trained(model, shape, n_params, n_params_non_embedding)
        return
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    if total != n_params:
        raise ValueError(f"{shape.arch} L{shape.n_layer} d{shape.d_model}: the built model has {total:,} "
                         f"parameters, the run records {n_params:,}")


def check_logits(shape: ModelShape, logits: Any, batch: int) -> None:
    """Refuse (one line) a forward whose output is not (batch, seq_len, vocab_size): (T, B, V) logits have the
    same number of elements, so the loss would silently score every position against another one's target."""
    expected = (batch, shape.seq_len, shape.vocab_size)
    who = f"[model].arch = {shape.arch!r}" if plugin.is_plugin(shape.arch) else shape.arch
    if not isinstance(logits, torch.Tensor):  # e.g. a (logits, loss) tuple
        raise plugin.PluginError(f"{who}: forward returned a {type(logits).__name__}, not a logits tensor of "
                                 f"shape (batch, seq_len, vocab_size) = {expected}")
    if tuple(logits.shape) != expected:
        raise plugin.PluginError(f"{who}: forward returned logits of shape {tuple(logits.shape)}; expected "
                                 f"(batch, seq_len, vocab_size) = {expected}")
