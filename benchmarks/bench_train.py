"""Trainer throughput and MFU on this machine: CPU against the fp32 matmul peak measured in the same run,
CUDA (bf16 autocast) against --peak-tflops (default 989, H100 SXM dense bf16).

    python benchmarks/bench_train.py --threads 2
    python benchmarks/bench_train.py --threads 1 --shapes 1x32,2x64 --seq-len 128 --batch-size 16
    python benchmarks/bench_train.py --preset gpt-small            # on a GPU: 12 layers, d 768, seq 1024

For each shape it runs the real train_run (stdlib corpus, checkpoints off), a bare loop (our model,
AdamW, backward, nothing else) on the same batches, so any gap is the trainer's own overhead, and a plain
nanoGPT-style loop (its own minimal GPT of the same shape, written below: random windows, AdamW, cosine LR,
grad clipping), the yardstick a user would compare with. Achieved FLOP/s uses
scaling.accounting.flops_per_token (Chinchilla counting, full attention), so the ratio to the matmul peak
is a model-FLOPs utilization. --compile trains both the trainer ([train].compile) and the nanoGPT-style
loop through torch.compile.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import math
import statistics

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaling.accounting import ModelShape, flops_per_token, n_params  # noqa: E402
from scaling.config import DataConfig, WandbConfig  # noqa: E402
from scaling.data import get_batch, load_corpus  # noqa: E402
from scaling.model import build_model  # noqa: E402
from scaling.plan import RunSpec  # noqa: E402
from scaling.results import write_json_atomic  # noqa: E402
from scaling.train import train_run  # noqa: E402
from shapes_arg import add_shapes_option  # noqa: E402  (beside this file)


def matmul_peak(n: int = 1024, seconds: float = 1.5) -> float:
    """fp32 GFLOP/s of a square matmul, best of several timed batches."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b  # warm up the BLAS thread pool
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * n**3 / (time.perf_counter() - t0))
    return best / 1e9


def make_spec(shape: ModelShape, n_steps: int, batch_size: int, source: str, compile: bool = False) -> RunSpec:
    tokens = n_steps * batch_size * shape.seq_len
    fpt = flops_per_token(shape)
    return RunSpec(
        run_id=f"bench-L{shape.n_layer}-d{shape.d_model}", sweep="bench", shape=shape, seed=0,
        n_params=n_params(shape), n_params_non_embedding=n_params(shape, non_embedding=True),
        flops_per_token=fpt, n_tokens=tokens, n_tokens_target=float(tokens), flops=float(fpt * tokens),
        flops_6nd=6.0 * n_params(shape) * tokens, flops_budget=0.0, n_steps=n_steps,
        warmup_steps=max(1, n_steps // 20), batch_size=batch_size, lr=3e-3, min_lr_ratio=0.1,
        weight_decay=0.1, beta1=0.9, beta2=0.95, grad_clip=1.0, eval_every_steps=0, log_every_steps=10,
        checkpoint_every_s=1e9, data=DataConfig(source=source, val_tokens=8192), wandb=WandbConfig(), compile=compile)


def bare_loop(spec: RunSpec, tokens: object, n_steps: int, device: str = "cpu") -> float:
    """Tokens/s of the minimal loop (same autocast and fused AdamW as train.py): the floor our trainer is
    compared with."""
    torch.manual_seed(0)
    model = build_model(spec.shape).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else nullcontext()
    B, T, V = spec.batch_size, spec.shape.seq_len, spec.shape.vocab_size
    for step in range(n_steps + 3):
        if step == 3:  # the first steps allocate optimizer state and warm the allocator
            sync(device)
            t0 = time.perf_counter()
        x, y = (t.to(device) for t in get_batch(tokens, step, B, T, 0))
        with autocast:
            loss = F.cross_entropy(model(x).view(-1, V).float(), y.view(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    return n_steps * B * T / (time.perf_counter() - t0)


class _NanoAttention(nn.Module):
    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in self.qkv(x).split(C, dim=2))  # 3 x (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class _NanoBlock(nn.Module):
    def __init__(self, d: int, n_head: int, mlp_ratio: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
        self.attn = _NanoAttention(d, n_head)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_ratio * d, bias=False), nn.GELU(),
                                 nn.Linear(mlp_ratio * d, d, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class NanoGPT(nn.Module):
    """The plainest pre-norm GPT of a shape (tied head, learned positions): the nanoGPT recipe, written here."""

    def __init__(self, shape: ModelShape):
        super().__init__()
        d = shape.d_model
        self.tok = nn.Embedding(shape.vocab_size, d)
        self.pos = nn.Embedding(shape.seq_len, d)
        self.blocks = nn.Sequential(*[_NanoBlock(d, shape.n_head, shape.mlp_ratio) for _ in range(shape.n_layer)])
        self.norm = nn.LayerNorm(d, bias=False)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        return self.norm(self.blocks(x)) @ self.tok.weight.T  # (B, T, V)


def nanogpt_loop(shape: ModelShape, tokens: np.ndarray, n_steps: int, batch_size: int, device: str = "cpu",
                 compile: bool = False) -> float:
    """Tokens/s of a plain nanoGPT-style training loop on `shape`: uniform random windows of the corpus,
    AdamW (decay on matrices, fused on CUDA), warmup + cosine LR, grad clipping, bf16 autocast on CUDA."""
    torch.manual_seed(0)
    model = NanoGPT(shape).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=3e-3, betas=(0.9, 0.95), fused=device == "cuda")
    fwd = torch.compile(model) if compile else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else nullcontext()
    B, T, V = batch_size, shape.seq_len, shape.vocab_size
    data = torch.from_numpy(np.asarray(tokens[:2_000_000], dtype=np.int64))
    warmup, total = max(1, n_steps // 20), n_steps + 3
    for step in range(total):
        if step == 3:  # the first steps allocate optimizer state (and compile): not timed
            sync(device)
            t0 = time.perf_counter()
        lr = 3e-3 * min(1.0, (step + 1) / warmup) * (0.55 + 0.45 * math.cos(math.pi * step / total))
        for group in opt.param_groups:
            group["lr"] = lr
        ix = torch.randint(len(data) - T - 1, (B,))
        x = torch.stack([data[i:i + T] for i in ix]).to(device)  # (B, T)
        y = torch.stack([data[i + 1:i + 1 + T] for i in ix]).to(device)  # (B, T)
        with autocast:
            loss = F.cross_entropy(fwd(x).view(-1, V).float(), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    return n_steps * B * T / (time.perf_counter() - t0)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def overhead_s(threads: int, source: str, shape: ModelShape) -> tuple[float, float]:
    """Seconds a fresh process spends on import + cached corpus load + model build: (wall, in-python)."""
    code = (f"import time; t=time.perf_counter(); import torch; torch.set_num_threads({threads}); "
            "import scaling.train; from scaling.data import load_corpus; from scaling.model import build_model; "
            "from scaling.config import DataConfig; from scaling.accounting import ModelShape; "
            f"load_corpus(DataConfig(source={source!r})); build_model(ModelShape(**{shape.__dict__!r})); "
            "print(time.perf_counter()-t)")
    t0 = time.perf_counter()
    inner = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 cwd=Path(__file__).resolve().parent.parent).stdout)
    return time.perf_counter() - t0, inner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    add_shapes_option(parser, "1x32,2x64,3x96,4x128")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6.0, help="rough training time per shape")
    parser.add_argument("--source", default="stdlib")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-loop comparison")
    parser.add_argument("--repeats", type=int, default=3,
                        help="trainer / nanoGPT-style pairs per shape (median ratio; more on a busy machine)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile in the trainer ([train].compile) and in the nanoGPT-style loop")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="peak for MFU, TFLOP/s (default on CUDA: 989 = H100 SXM dense bf16; on CPU: the "
                             "fp32 matmul peak measured now)")
    parser.add_argument("--preset", choices=["gpt-small"], default=None,
                        help="gpt-small: 12 layers, d_model 768, 12 heads, seq_len 1024, batch 16 (GPT-2 small "
                             "with our byte-level vocab of 256)")
    args = parser.parse_args()
    if args.preset == "gpt-small":
        args.shapes, args.seq_len, args.head_dim, args.batch_size = [(12, 768)], 1024, 64, 16
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    if device == "cuda":
        peak = 1e3 * (args.peak_tflops or 989.0)  # GFLOP/s
        print(f"{torch.cuda.get_device_name()}  peak for MFU: {peak / 1e3:.0f} TFLOP/s bf16  "
              f"(torch {torch.__version__})")
    else:
        peak = 1e3 * args.peak_tflops if args.peak_tflops else matmul_peak()
        print(f"threads={args.threads}  peak for MFU: {peak:.1f} GFLOP/s "
              f"({'given' if args.peak_tflops else 'fp32 matmul, measured'})  (torch {torch.__version__})")
    corpus = load_corpus(DataConfig(source=args.source))
    shapes = []
    for L, d in args.shapes:
        shapes.append(ModelShape(arch="gpt", n_layer=L, d_model=d, n_head=max(1, d // args.head_dim),
                                 seq_len=args.seq_len, vocab_size=256))
    wall, inner = overhead_s(args.threads, args.source, shapes[-1])
    print(f"per-process overhead: {wall:.2f}s wall for python+import+corpus+model ({inner:.2f}s inside python)")
    print(f"{'shape':>10} {'params':>11} {'tok/s':>9} {'GFLOP/s':>8} {'MFU':>7} {'bare tok/s':>10} "
          f"{'ours/bare':>9} {'nanoGPT tok/s':>13} {'ours/nano':>9} {'setup+eval s':>12}")
    ratios = []
    for shape in shapes:
        fpt = flops_per_token(shape)
        # Size the run from a short probe so each shape trains for about args.seconds.
        probe = bare_loop(make_spec(shape, 1, args.batch_size, args.source), corpus.train, 5, device)
        n_steps = max(20, int(args.seconds * probe / (args.batch_size * args.seq_len)))
        spec = make_spec(shape, n_steps, args.batch_size, args.source, args.compile)
        # Trainer and nanoGPT-style loop alternate, args.repeats times each, so a change of machine load hits
        # both alike; the ratio printed is the median of the per-pair ratios. Both time the same number of
        # steps and neither counts its compile (the trainer compiles before its clock starts, the loop in its
        # untimed first steps).
        pairs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                run_dir = Path(tmp)
                write_json_atomic(run_dir / "spec.json", spec.to_dict())
                result = train_run(run_dir, num_threads=args.threads, device=device)
            nano = nanogpt_loop(shape, corpus.train, n_steps, args.batch_size, device, args.compile)
            pairs.append((result["tokens_per_s"], nano, result["wall_s"] - result["train_s"]))
        tok_s, nano, setup_s = (statistics.median(col) for col in zip(*pairs))
        ratio = statistics.median(ours / theirs for ours, theirs, _ in pairs)
        bare = float("nan") if args.no_bare else bare_loop(spec, corpus.train, min(n_steps, 200), device)
        ratios.append(ratio)
        print(f"  L{shape.n_layer} d{shape.d_model:<4} {n_params(shape):>11,} {tok_s:>9.0f} "
              f"{tok_s * fpt / 1e9:>8.1f} {tok_s * fpt / 1e9 / peak:>7.1%} {bare:>10.0f} "
              f"{tok_s / bare:>9.2f} {nano:>13.0f} {ratio:>9.2f} {setup_s:>12.2f}", flush=True)
    print(f"trainer / nanoGPT-style tokens/s: min {min(ratios):.2f}, geometric mean "
          f"{math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f} over {len(ratios)} shapes")


if __name__ == "__main__":
    main()
