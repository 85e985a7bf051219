"""Same-shape runs trained as one stacked model (torch.func.vmap over K copies of the weights) against the same
K runs trained one by one, in one process, interleaved: does batching raise the small shapes' throughput here?

    python benchmarks/bench_batched.py --threads 1 --k 4 --shapes 1x32,1x48,2x64

Each of the K runs keeps its own weights (seeded alike, as same-seed runs of one shape are), its own batches
(get_batch with its own seed) and AdamW state; the stacked version computes the same K losses with batched
matmuls (bmm) instead of K separate ones. It prints tokens/s of both, their ratio, and the largest difference
of the K runs' losses after the timed steps (batched kernels reorder floating-point sums: not bitwise).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.func import functional_call, grad_and_value, vmap
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaling.accounting import ModelShape, flops_per_token  # noqa: E402
from scaling.config import DataConfig  # noqa: E402
from scaling.data import get_batch, load_corpus  # noqa: E402
from scaling.model import build_model  # noqa: E402


def one_by_one(shape: ModelShape, tokens, k: int, n_steps: int, B: int) -> tuple[float, list[float]]:
    models = []
    for _ in range(k):
        torch.manual_seed(0)
        models.append(build_model(shape))
    opts = [torch.optim.AdamW(m.parameters(), lr=3e-3, fused=True) for m in models]
    V, T = shape.vocab_size, shape.seq_len
    losses = [0.0] * k
    t0 = time.perf_counter()
    for i, (model, opt) in enumerate(zip(models, opts)):  # run after run, as a worker trains them
        for step in range(n_steps):
            x, y = get_batch(tokens, step, B, T, i)
            loss = F.cross_entropy(model(x).view(-1, V), y.view(-1))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses[i] = loss.item()
    return k * n_steps * B * T / (time.perf_counter() - t0), losses


def stacked(shape: ModelShape, tokens, k: int, n_steps: int, B: int) -> tuple[float, list[float]]:
    torch.manual_seed(0)
    base = build_model(shape)
    params = {n: p.detach().unsqueeze(0).repeat(k, *[1] * p.dim()).requires_grad_() for n, p in base.named_parameters()}
    opt = torch.optim.AdamW(list(params.values()), lr=3e-3, fused=True)  # elementwise: K members independent
    V, T = shape.vocab_size, shape.seq_len

    def loss_of(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(base, p, (x,)).view(-1, V), y.view(-1))

    step_fn = vmap(grad_and_value(loss_of))
    t0 = time.perf_counter()
    for step in range(n_steps):
        xs, ys = zip(*(get_batch(tokens, step, B, T, i) for i in range(k)))
        grads, loss = step_fn(params, torch.stack(xs), torch.stack(ys))  # (K, B, T) in, (K,) losses out
        for name, p in params.items():
            p.grad = grads[name]
        opt.step()
        opt.zero_grad(set_to_none=True)
    return k * n_steps * B * T / (time.perf_counter() - t0), loss.tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--k", type=int, default=4, help="runs of one shape trained together")
    parser.add_argument("--shapes", default="1x32,1x48,2x64")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokens = load_corpus(DataConfig(source="stdlib")).train
    print(f"threads={args.threads}  K={args.k}  seq_len={args.seq_len}  batch={args.batch_size}  (torch {torch.__version__})")
    print(f"{'shape':>8} {'one-by-one tok/s':>17} {'stacked tok/s':>14} {'stacked/one':>11} {'max |dloss|':>11}")
    for item in args.shapes.split(","):
        L, d = (int(v) for v in item.split("x"))
        shape = ModelShape(arch="gpt", n_layer=L, d_model=d, n_head=max(1, d // 16), seq_len=args.seq_len,
                           vocab_size=256)
        one_by_one(shape, tokens, args.k, 3, args.batch_size)  # warm-up of both paths, not timed
        stacked(shape, tokens, args.k, 3, args.batch_size)
        ratios, a_all, b_all = [], [], []
        for _ in range(args.repeats):  # interleaved, so load changes hit both alike
            a, la = one_by_one(shape, tokens, args.k, args.steps, args.batch_size)
            b, lb = stacked(shape, tokens, args.k, args.steps, args.batch_size)
            ratios.append(b / a)
            a_all.append(a)
            b_all.append(b)
        diff = max(abs(x - y) for x, y in zip(la, lb))
        print(f"  L{L} d{d:<3} {max(a_all):>17.0f} {max(b_all):>14.0f} {sorted(ratios)[len(ratios) // 2]:>11.2f} "
              f"{diff:>11.2e}   (ratios {', '.join(f'{r:.2f}' for r in ratios)}; {flops_per_token(shape):,} FLOPs/token)")


if __name__ == "__main__":
    main()
