"""Your own training script, swept by `sweeps/own_train.toml` through `[train] command = ...`.

A stand-alone PyTorch script (it does not import `scaling`): a byte-level GRU language model trained with
AdamW and a cosine schedule on Python's own standard-library sources. It keeps the contract of
scaling.external (see the README, "Sweep your own training script"):
- it reads its shape and budget from the command line the framework formats per run;
- it appends its loss curve to --out/metrics.jsonl and checkpoints to --out/own_ckpt.pt every 50 steps;
- on SIGTERM (the framework's requeue request) it saves and exits, and started again it resumes there;
- it writes --out/final.json last: {"val_loss", "train_loss", "n_params"}.
`build(shape)` is also a plug-in factory (`[model] arch = "sweeps.own_train:build"`), so the planner counts the
N of exactly this model; importing the file for that does not train anything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import sysconfig
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F


class GRULM(nn.Module):
    def __init__(self, n_layer: int, d_model: int, vocab_size: int = 256):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, d_model)
        self.gru = nn.GRU(d_model, d_model, num_layers=n_layer, batch_first=True)
        self.ln_f = nn.LayerNorm(d_model)
        nn.init.normal_(self.wte.weight, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x, _ = self.gru(self.wte(idx))  # (B, T, C)
        return self.ln_f(x) @ self.wte.weight.T  # (B, T, V), tied head

    def flops_per_token(self) -> int:
        # training FLOPs (3x forward): 3 gates x (input + recurrent matmul) per layer, plus the tied logits
        d, L, V = self.wte.embedding_dim, self.gru.num_layers, self.wte.num_embeddings
        return 3 * (L * 2 * 6 * d * d + 2 * d * V)


def build(shape) -> nn.Module:
    """Plug-in factory: the model this script trains, for the planner's parameter and FLOP counts."""
    return GRULM(shape.n_layer, shape.d_model, shape.vocab_size)


def corpus(n_bytes: int = 4_000_000) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n_bytes of the interpreter's stdlib *.py files; the last 5% held out."""
    data = bytearray()
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        data += path.read_bytes()
        if len(data) >= n_bytes:
            break
    tokens = torch.frombuffer(data[:n_bytes], dtype=torch.uint8).long()  # (n_bytes,)
    cut = int(0.95 * len(tokens))
    return tokens[:cut], tokens[cut:]


def batch(tokens: torch.Tensor, step: int, seed: int, batch_size: int, seq_len: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)  # a pure function of (seed, step): resumable
    starts = torch.randint(0, len(tokens) - seq_len - 1, (batch_size,), generator=g)
    x = torch.stack([tokens[s:s + seq_len] for s in starts])  # (B, T)
    y = torch.stack([tokens[s + 1:s + seq_len + 1] for s in starts])  # (B, T)
    return x, y


def main() -> int:
    p = argparse.ArgumentParser()
    for name in ("n_layer", "d_model", "seq_len", "batch_size", "n_steps", "warmup_steps", "seed"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--flops_per_token", type=int, default=0)  # only for the live progress line
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))  # save at the next step, then exit
    train, val = corpus()
    torch.manual_seed(a.seed)
    model = GRULM(a.n_layer, a.d_model)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    ckpt, metrics = a.out / "own_ckpt.pt", a.out / "metrics.jsonl"
    step = 0
    if ckpt.exists():  # started again after a requeue: resume, and keep the curve up to the checkpoint
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        if metrics.exists():
            lines = [ln for ln in metrics.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
            metrics.write_text("".join(ln + "\n" for ln in lines))
        print(f"resumed at step {step}", flush=True)

    def save() -> None:
        tmp = ckpt.with_name(ckpt.name + ".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, tmp)
        os.replace(tmp, ckpt)

    losses = []
    t0, step0 = time.perf_counter(), step
    while step < a.n_steps:
        progress = max(0.0, (step - a.warmup_steps) / max(1, a.n_steps - a.warmup_steps))
        lr = a.lr * min(1.0, (step + 1) / max(1, a.warmup_steps)) * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = batch(train, step, a.seed, a.batch_size, a.seq_len)
        loss = F.cross_entropy(model(x).view(-1, 256), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        losses.append(loss.item())
        if step % 10 == 0 or step == a.n_steps:
            with open(metrics, "a") as f:
                tokens = step * a.batch_size * a.seq_len
                f.write(json.dumps({"step": step, "tokens": tokens, "train_loss": loss.item(), "lr": lr,
                                    "flops": tokens * a.flops_per_token,  # flops, elapsed_s: the live ETA
                                    "elapsed_s": (time.perf_counter() - t0) * step / (step - step0)}) + "\n")
        if stop or step % 50 == 0:
            save()
            if stop:
                print(f"SIGTERM: saved step {step}", flush=True)
                return 0
    model.eval()
    with torch.no_grad():  # held-out loss on 256 fixed windows (16K tokens)
        n = 256
        starts = torch.linspace(0, len(val) - a.seq_len - 2, n).long()
        x = torch.stack([val[s:s + a.seq_len] for s in starts])
        y = torch.stack([val[s + 1:s + a.seq_len + 1] for s in starts])
        val_loss = F.cross_entropy(model(x).view(-1, 256), y.view(-1)).item()
    tail = losses[-max(1, len(losses) // 20):]
    final = {"val_loss": val_loss, "train_loss": sum(tail) / len(tail),
             "n_params": sum(p.numel() for p in model.parameters())}
    tmp = a.out / ".final.json.tmp"
    tmp.write_text(json.dumps(final))
    os.replace(tmp, a.out / "final.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
