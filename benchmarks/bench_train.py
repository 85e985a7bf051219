"""Trainer throughput and MFU on this machine: CPU against the fp32 matmul peak measured in the same run,
CUDA (bf16 autocast) against --peak-tflops (default 989, H100 SXM dense bf16).

    python benchmarks/bench_train.py --threads 2
    python benchmarks/bench_train.py --threads 1 --shapes 1x32,2x64 --seq-len 128 --batch-size 16
    python benchmarks/bench_train.py --preset gpt-small            # on a GPU: 12 layers, d 768, seq 1024

For each shape it runs the real train_run (stdlib corpus, checkpoints off) and a bare loop (model,
AdamW, backward, nothing else) on the same batches, so any gap is the trainer's own overhead. Achieved
FLOP/s uses scaling.accounting.flops_per_token (Chinchilla counting, full attention), so the ratio to
the matmul peak is a model-FLOPs utilization.
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

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaling.accounting import ModelShape, flops_per_token, n_params  # noqa: E402
from scaling.config import DataConfig, WandbConfig  # noqa: E402
from scaling.data import get_batch, load_corpus  # noqa: E402
from scaling.model import build_model  # noqa: E402
from scaling.plan import RunSpec  # noqa: E402
from scaling.results import write_json_atomic  # noqa: E402
from scaling.train import train_run  # noqa: E402


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


def make_spec(shape: ModelShape, n_steps: int, batch_size: int, source: str) -> RunSpec:
    tokens = n_steps * batch_size * shape.seq_len
    fpt = flops_per_token(shape)
    return RunSpec(
        run_id=f"bench-L{shape.n_layer}-d{shape.d_model}", sweep="bench", shape=shape, seed=0,
        n_params=n_params(shape), n_params_non_embedding=n_params(shape, non_embedding=True),
        flops_per_token=fpt, n_tokens=tokens, n_tokens_target=float(tokens), flops=float(fpt * tokens),
        flops_6nd=6.0 * n_params(shape) * tokens, flops_budget=0.0, n_steps=n_steps,
        warmup_steps=max(1, n_steps // 20), batch_size=batch_size, lr=3e-3, min_lr_ratio=0.1,
        weight_decay=0.1, beta1=0.9, beta2=0.95, grad_clip=1.0, eval_every_steps=0, log_every_steps=10,
        checkpoint_every_s=1e9, data=DataConfig(source=source, val_tokens=8192), wandb=WandbConfig())


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
    parser.add_argument("--shapes", default="1x32,2x64,3x96,4x128", help="LxD,... (n_layer x d_model)")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6.0, help="rough training time per shape")
    parser.add_argument("--source", default="stdlib")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-loop comparison")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="peak for MFU, TFLOP/s (default on CUDA: 989 = H100 SXM dense bf16; on CPU: the "
                             "fp32 matmul peak measured now)")
    parser.add_argument("--preset", choices=["gpt-small"], default=None,
                        help="gpt-small: 12 layers, d_model 768, 12 heads, seq_len 1024, batch 16 (GPT-2 small "
                             "with our byte-level vocab of 256)")
    args = parser.parse_args()
    if args.preset == "gpt-small":
        args.shapes, args.seq_len, args.head_dim, args.batch_size = "12x768", 1024, 64, 16
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
    for item in args.shapes.split(","):
        L, d = (int(v) for v in item.split("x"))
        shapes.append(ModelShape(arch="gpt", n_layer=L, d_model=d, n_head=max(1, d // args.head_dim),
                                 seq_len=args.seq_len, vocab_size=256))
    wall, inner = overhead_s(args.threads, args.source, shapes[-1])
    print(f"per-process overhead: {wall:.2f}s wall for python+import+corpus+model ({inner:.2f}s inside python)")
    print(f"{'shape':>10} {'params':>11} {'tok/s':>9} {'GFLOP/s':>8} {'MFU':>7} {'bare tok/s':>10} "
          f"{'ours/bare':>9} {'setup+eval s':>12}")
    for shape in shapes:
        fpt = flops_per_token(shape)
        # Size the run from a short probe so each shape trains for about args.seconds.
        probe = bare_loop(make_spec(shape, 1, args.batch_size, args.source), corpus.train, 5, device)
        n_steps = max(20, int(args.seconds * probe / (args.batch_size * args.seq_len)))
        spec = make_spec(shape, n_steps, args.batch_size, args.source)
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp)
            write_json_atomic(run_dir / "spec.json", spec.to_dict())
            result = train_run(run_dir, num_threads=args.threads, device=device)
        tok_s = result["tokens_per_s"]
        bare = float("nan") if args.no_bare else bare_loop(spec, corpus.train, min(n_steps, 200), device)
        print(f"  L{shape.n_layer} d{shape.d_model:<4} {n_params(shape):>11,} {tok_s:>9.0f} "
              f"{tok_s * fpt / 1e9:>8.1f} {tok_s * fpt / 1e9 / peak:>7.1%} {bare:>10.0f} "
              f"{tok_s / bare:>9.2f} {result['wall_s'] - result['train_s']:>12.2f}")


if __name__ == "__main__":
    main()
