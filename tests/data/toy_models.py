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


# Hostile factories (issue #24 items 9 and 15): each must be refused in one line naming the plug-in.
def build_smaller_on_meta(shape):
    """Builds a narrower model when counted (meta device) than when trained (CPU): the planned N is a lie."""
    on_meta = torch.empty(0).device.type == "meta"
    return Tiny(shape) if not on_meta else Tiny(type(shape)(**{**vars(shape), "mlp_ratio": 1}))


class TimeMajor(Tiny):
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return super().forward(idx).transpose(0, 1)  # (T, B, V): same numel, targets silently misaligned


def build_time_major(shape):
    return TimeMajor(shape)


class WithLoss(Tiny):
    def forward(self, idx: torch.Tensor):
        logits = super().forward(idx)
        return logits, logits.mean()  # a (logits, loss) pair, as some libraries return


def build_with_loss(shape):
    return WithLoss(shape)


class Lazy(Tiny):
    def __init__(self, shape):
        super().__init__(shape)
        self.extra = nn.LazyLinear(shape.d_model)  # parameters without a shape until the first forward


def build_lazy(shape):
    return Lazy(shape)


class BadFlops(Tiny):
    value = float("inf")

    def flops_per_token(self):
        return self.value


def build_inf_flops(shape):
    return BadFlops(shape)


def build_nan_flops(shape):
    model = BadFlops(shape)
    model.value = float("nan")
    return model


def build_zero_flops(shape):
    model = BadFlops(shape)
    model.value = 0
    return model
