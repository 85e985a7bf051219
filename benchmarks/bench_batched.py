"""Same-shape runs trained as one stacked model (torch.func.vmap over K copies of the weights) against the same
K runs trained one by one, in one process, interleaved: does batching raise the small shapes' throughput here?
Two stacked versions: torch.func.vmap over functional_call of our model, and the same forward written by hand
with bmm (stacked_forward; attention folds the K members into its batch).

    python benchmarks/bench_batched.py --threads 1 --k 4 --shapes 1x32,1x48,2x64

Each of the K runs keeps its own weights (seeded alike, as same-seed runs of one shape are), its own batches
(get_batch with its own seed) and AdamW state; the stacked versions compute the same K losses with batched
matmuls (bmm) instead of K separate ones. It prints tokens/s of both, their ratio, and the largest difference
of the K runs' losses after the timed steps (batched kernels reorder floating-point sums: not bitwise).
"""

from __future__ import annotations

import argparse
import statistics
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
from shapes_arg import add_shapes_option  # noqa: E402  (beside this file)


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
    params = {n: p.detach().unsqueeze(0).repeat(k, *[1] * p.dim()).requires_grad_()
              for n, p in base.named_parameters()}  # (K, ...) per weight
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


def stacked_forward(w: dict[str, torch.Tensor], idx: torch.Tensor, shape: ModelShape) -> torch.Tensor:
    """scaling.model.GPT's forward for K stacked weight sets, written with bmm: idx (K, B, T) -> logits (K, B, T, V).
    Attention has no weights, so the K members fold into its batch dimension."""
    K, B, T = idx.shape
    d, V, nh = shape.d_model, shape.vocab_size, shape.n_head
    rows = idx + V * torch.arange(K).view(K, 1, 1)  # member k's token v is row k * V + v of the stacked table
    x = (w["wte.weight"].reshape(K * V, d)[rows] + w["wpe.weight"][:, None, :T]).view(K, B * T, d)

    def norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (d,)) * weight[:, None, :]

    def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, weight.transpose(1, 2))  # (K, BT, in) @ (K, in, out)

    for i in range(shape.n_layer):
        b = f"blocks.{i}."
        q, k, v = linear(norm(x, w[b + "ln_1.weight"]), w[b + "attn.c_attn.weight"]).split(d, dim=2)
        q, k, v = (t.reshape(K * B, T, nh, d // nh).transpose(1, 2) for t in (q, k, v))  # (KB, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(K, B * T, d)
        x = x + linear(y, w[b + "attn.c_proj.weight"])
        h = F.gelu(linear(norm(x, w[b + "ln_2.weight"]), w[b + "mlp.c_fc.weight"]))
        x = x + linear(h, w[b + "mlp.c_proj.weight"])
    return torch.bmm(norm(x, w["ln_f.weight"]), w["wte.weight"].transpose(1, 2)).view(K, B, T, V)


def stacked_bmm(shape: ModelShape, tokens, k: int, n_steps: int, B: int) -> tuple[float, list[float]]:
    torch.manual_seed(0)
    base = build_model(shape)
    params = {n: p.detach().unsqueeze(0).repeat(k, *[1] * p.dim()).requires_grad_()
              for n, p in base.named_parameters()}  # (K, ...) per weight
    opt = torch.optim.AdamW(list(params.values()), lr=3e-3, fused=True)
    V, T = shape.vocab_size, shape.seq_len
    t0 = time.perf_counter()
    for step in range(n_steps):
        xs, ys = zip(*(get_batch(tokens, step, B, T, i) for i in range(k)))
        logits = stacked_forward(params, torch.stack(xs), shape)  # (K, B, T, V)
        per_token = F.cross_entropy(logits.reshape(-1, V), torch.stack(ys).view(-1), reduction="none")
        losses = per_token.view(k, -1).mean(1)  # (K,): each member's mean loss
        losses.sum().backward()  # members share no weights: each gets the gradient of its own loss
        opt.step()
        opt.zero_grad(set_to_none=True)
    return k * n_steps * B * T / (time.perf_counter() - t0), losses.tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--k", type=int, default=4, help="runs of one shape trained together")
    add_shapes_option(parser, "1x32,1x48,2x64")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokens = load_corpus(DataConfig(source="stdlib")).train
    print(f"threads={args.threads}  K={args.k}  seq_len={args.seq_len}  batch={args.batch_size}  "
          f"(torch {torch.__version__})")
    print(f"{'shape':>8} {'one-by-one tok/s':>17} {'vmap tok/s':>11} {'bmm tok/s':>10} {'vmap/one':>9} {'bmm/one':>8} "
          f"{'max |dloss| vmap, bmm':>22}")
    for L, d in args.shapes:
        shape = ModelShape(arch="gpt", n_layer=L, d_model=d, n_head=max(1, d // 16), seq_len=args.seq_len,
                           vocab_size=256)
        for fn in (one_by_one, stacked, stacked_bmm):  # warm-up of each path, not timed
            fn(shape, tokens, args.k, 3, args.batch_size)
        rows = []
        for _ in range(args.repeats):  # interleaved, so load changes hit every path alike
            rows.append([fn(shape, tokens, args.k, args.steps, args.batch_size)
                         for fn in (one_by_one, stacked, stacked_bmm)])
        (_, l1), (_, lv), (_, lb) = rows[-1]
        med = [statistics.median(r[j][0] / r[0][0] for r in rows) for j in (1, 2)]
        best = [max(r[j][0] for r in rows) for j in range(3)]
        diff = [max(abs(x - y) for x, y in zip(l1, other)) for other in (lv, lb)]
        print(f"  L{L} d{d:<3} {best[0]:>17.0f} {best[1]:>11.0f} {best[2]:>10.0f} {med[0]:>9.2f} {med[1]:>8.2f} "
              f"{diff[0]:>11.1e} {diff[1]:>10.1e}   (bmm/one: {', '.join(f'{r[2][0] / r[0][0]:.2f}' for r in rows)}; "
              f"{flops_per_token(shape):,} FLOPs/token)", flush=True)

if __name__ == "__main__":
    main()
