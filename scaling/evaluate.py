"""Held-out loss of a model during training: the fixed validation windows and the loss-curve sample among them.

Every evaluation of a run, and every run of one corpus and sequence length, uses the same windows
(scaling.data.val_windows), so losses are comparable along a curve and across sizes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from scaling.data import Corpus, val_windows
from scaling.results import RunSpec
from scaling.schedule import curve_windows


@torch.no_grad()
def window_losses(model: torch.nn.Module, x_all: torch.Tensor, y_all: torch.Tensor, batch_size: int, device: str,
                  autocast: Any) -> torch.Tensor:
    """(N,) summed cross-entropy (nats) of each held-out window x_all[i] -> y_all[i], on the CPU in float64."""
    model.eval()
    out = []
    chunk = max(batch_size, 64)
    for i in range(0, len(x_all), chunk):
        x, y = x_all[i:i + chunk].to(device), y_all[i:i + chunk].to(device)
        with autocast:
            logits = model(x)  # (b, T, V)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1), reduction="none")
        out.append(loss.view(y.shape).double().sum(dim=1).cpu())  # (b,)
    model.train()
    return torch.cat(out)


_HELD_OUT: dict[tuple[str, str, int, int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def held_out(corpus: Corpus, seq_len: int, val_tokens: int, curve_tokens: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed held-out windows (N, T) x and y, and the indices of the curve sample among them. Cached by
    corpus fingerprint: the windows are the same at every evaluation of a run and for every run of one corpus
    and seq_len (a worker process trains many runs; the last few shapes are kept)."""
    key = (corpus.fingerprint, corpus.source, seq_len, val_tokens, curve_tokens)
    if key not in _HELD_OUT:
        while len(_HELD_OUT) >= 4:
            _HELD_OUT.pop(next(iter(_HELD_OUT)))
        x_all, y_all = val_windows(corpus, seq_len, val_tokens)  # (N, T), (N, T)
        _HELD_OUT[key] = (x_all, y_all, torch.from_numpy(curve_windows(len(x_all), curve_tokens, seq_len)))
    return _HELD_OUT[key]


def held_out_losses(model: torch.nn.Module, corpus: Corpus, spec: RunSpec, device: str, autocast: Any
              ) -> tuple[float, float]:
    """(val_loss, curve_loss): mean cross-entropy over every held-out window, and over the curve sample's."""
    x_all, y_all, idx = held_out(corpus, spec.shape.seq_len, spec.data.val_tokens, spec.curve_tokens)
    per_window = window_losses(model, x_all, y_all, spec.batch_size, device, autocast)  # (N,)
    T = y_all.shape[1]
    return float(per_window.sum()) / y_all.numel(), float(per_window[idx].sum()) / (len(idx) * T)
