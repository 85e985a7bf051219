"""muP's update sizes at widths 32..256 (issue 28 item 2): a coordinate check of how far a few AdamW steps move each
part of the model, with the trainer's parameter groups (scaling.mup.param_groups).

Under muP every part's update must stay O(1) as the width grows (no growth, no vanishing), and, the fault this
issue found, the tied token embedding (also the readout) must not be starved: at the base LR that microsoft/mup
gives it, five steps moved the embedding's output less than the first MLP's (ratio 0.48 at width 32 to 0.77 at
256 on this test's stream; 0.08 on the stdlib text) and wider models trained no better (benchmarks/README.md, bench_mup.py). TIED_EMBEDDING_LR_MULT fixes the
balance (ratio 2.0 to 2.5 at widths 32..256); test_old_balance_is_starved checks that this test tells the two
apart.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scaling import mup
from scaling.accounting import ModelShape
from scaling.model import build_model

WIDTHS = (32, 64, 128, 256)
LR, STEPS, V, T, B = 0.01, 5, 64, 16, 8


def update_sizes(d: int, parametrization: str = "mup",
                 tied_mult: float = mup.TIED_EMBEDDING_LR_MULT) -> dict[str, float]:
    """RMS change over STEPS AdamW steps (decay 0.1, betas 0.9/0.95, clip 1, as scaling.train) of the token
    embedding's output, each block's attention and MLP output, and the logits, on a fixed probe batch."""
    s = ModelShape(arch="gpt", n_layer=2, d_model=d, n_head=d // 16, seq_len=T, vocab_size=V,
                   parametrization=parametrization, base_width=32 if parametrization == "mup" else 0,
                   mup_tied_embedding_lr_mult=tied_mult)
    torch.manual_seed(0)
    model = build_model(s)
    opt = torch.optim.AdamW(mup.param_groups(model, s, 0.1), lr=LR, betas=(0.9, 0.95))
    for g in opt.param_groups:
        g["lr"] = LR * g["lr_scale"]
    gen = torch.Generator().manual_seed(1)
    # a learnable stream: token t+1 = (3 * token t + 1) mod V, from random starts
    starts = torch.randint(0, V, (STEPS + 1, B, 1), generator=gen)
    seqs = (starts * 3 ** torch.arange(T + 1) + (3 ** torch.arange(T + 1) - 1) // 2) % V  # (S+1, B, T+1)
    probe = seqs[-1, :, :-1]
    names = ["wte", "blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.1.mlp", ""]
    modules = dict(model.named_modules())

    def outputs() -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        hooks = [modules[n].register_forward_hook(lambda _m, _i, o, n=n: out.__setitem__(n, o.detach()))
                 for n in names]
        with torch.no_grad():
            model(probe)
        for h in hooks:
            h.remove()
        return out

    before = outputs()
    for step in range(STEPS):
        x, y = seqs[step, :, :-1], seqs[step, :, 1:]
        F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    after = outputs()
    return {n or "logits": float((after[n] - before[n]).pow(2).mean().sqrt()) for n in names}


def slope(values: list[float]) -> float:
    return float(np.polyfit(np.log(WIDTHS), np.log(values), 1)[0])


@pytest.fixture(scope="module")
def sizes() -> dict[int, dict[str, float]]:
    return {d: update_sizes(d) for d in WIDTHS}


def test_updates_neither_grow_nor_vanish_with_width(sizes):
    for part in sizes[WIDTHS[0]]:
        s = slope([sizes[d][part] for d in WIDTHS])
        assert abs(s) < 0.4, f"muP: the update of {part} scales like width^{s:.2f} from {WIDTHS[0]} to {WIDTHS[-1]}"


def test_tied_embedding_is_not_starved(sizes):
    for d in WIDTHS:
        ratio = sizes[d]["wte"] / sizes[d]["blocks.0.mlp"]
        assert ratio > 1.2, f"d_model {d}: the tied embedding moved {ratio:.2f}x as far as the first MLP's output"


def test_old_balance_is_starved():
    """The check above fails on microsoft/mup's LR for the tied weight (mup_tied_embedding_lr_mult = 1), the code
    before the fix."""
    for d in (WIDTHS[0], WIDTHS[-1]):
        s = update_sizes(d, tied_mult=1.0)
        assert s["wte"] / s["blocks.0.mlp"] < 1.2


def test_only_the_tied_weight_gets_the_multiplier():
    for tie in (True, False):
        s = ModelShape(arch="llama", n_layer=1, d_model=64, n_head=4, seq_len=T, vocab_size=V, tie_embeddings=tie,
                       parametrization="mup", base_width=32)
        model = build_model(s)
        scale = {id(p): g["lr_scale"] for g in mup.param_groups(model, s, 0.1) for p in g["params"]}
        assert scale[id(model.wte.weight)] == (mup.TIED_EMBEDDING_LR_MULT if tie else 1.0)
        assert sum(v == mup.TIED_EMBEDDING_LR_MULT for v in scale.values()) == (1 if tie else 0)
    sp = ModelShape(arch="gpt", n_layer=1, d_model=64, n_head=4, seq_len=T, vocab_size=V)
    assert {g["lr_scale"] for g in mup.param_groups(build_model(sp), sp, 0.1)} == {1.0}
