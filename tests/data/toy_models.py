"""Plug-in model factories for tests/test_plugin.py (copied into a test's working directory and imported
from there, as a user's module would be)."""

import torch
import torch.nn as nn


class Tiny(nn.Module):
    """Token + position embeddings, n_layer residual MLP blocks (with biases), a head tied to the embedding."""

    def __init__(self, shape, tied: bool = True):
        super().__init__()
        d = shape.d_model
        self.wte = nn.Embedding(shape.vocab_size, d)
        self.wpe = nn.Embedding(shape.seq_len, d)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(d), nn.Linear(d, shape.mlp_ratio * d), nn.GELU(),
                                                  nn.Linear(shape.mlp_ratio * d, d)) for _ in range(shape.n_layer))
        self.head = None if tied else nn.Linear(d, shape.vocab_size, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))  # (B, T, C)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x) if self.head is not None else x @ self.wte.weight.T  # (B, T, V)


class WithHook(Tiny):
    def flops_per_token(self) -> int:
        return 12345


def build(shape):
    return Tiny(shape)


def build_untied(shape):
    return Tiny(shape, tied=False)


def build_with_hook(shape):
    return WithHook(shape)


def build_broken(shape):
    raise RuntimeError(f"no such width {shape.d_model}")


def build_not_a_module(shape):
    return "a string"
