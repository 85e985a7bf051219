"""muP's LR transfer: an LR sweep at several widths under both parametrizations, on CPU.

    python benchmarks/bench_mup.py                       # gpt, widths 16..128, 7 LRs: 56 runs, 1 thread
    python benchmarks/bench_mup.py --arch llama --widths 32,64,128,256 --steps 150

Every run goes through the real pipeline: a sweep TOML ([grid].shapes at each width, one depth, [train].lr_sweep
over the LR grid, [model].parametrization = "sp" or "mup" with base_width = the narrowest width) is planned
with plan_sweep and each run trained with train_run, one thread; the loss is the run's held-out val_loss.
The script prints the loss table (width x LR) per parametrization, the best LR per width (the lowest loss, and
the vertex of a parabola in log LR through it and its neighbours), and how many grid steps the best LR moves
from the narrowest to the widest width. Yang et al. 2022 (Tensor Programs V, fig. 1)
expect the SP optimum to move with width and the muP one to stay.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaling.config import load_sweep  # noqa: E402
from scaling.plan import plan_sweep  # noqa: E402
from scaling.results import write_json_atomic  # noqa: E402
from scaling.train import train_run  # noqa: E402


def sweep_toml(path: Path, args: argparse.Namespace, parametrization: str) -> Path:
    widths = [int(w) for w in args.widths.split(",")]
    shapes = ", ".join(f"{{n_layer = {args.n_layer}, d_model = {w}}}" for w in widths)
    mults = ", ".join(repr(2.0 ** k) for k in range(args.n_lrs))  # the LR grid: base_lr * 2^k
    base = f"base_width = {widths[0]}" if parametrization == "mup" else ""
    tokens = args.steps * args.batch_size * args.seq_len
    path.write_text(f"""
name = "mup-{parametrization}"
results_dir = "{path.parent / 'results'}"
[data]
val_tokens = {args.val_tokens}
[model]
arch = "{args.arch}"
seq_len = {args.seq_len}
head_dim = {args.head_dim}
parametrization = "{parametrization}"
{base}
[grid]
shapes = [{shapes}]
n_tokens = [{tokens}]
[train]
batch_size = {args.batch_size}
lr = {args.base_lr}
lr_sweep = [{mults}]
warmup_fraction = 0.1
min_lr_ratio = {args.min_lr_ratio}
weight_decay = {args.weight_decay}
log_every_steps = 1000
""")
    return path


def sweep_losses(args: argparse.Namespace, parametrization: str, workdir: Path) -> dict[tuple[int, float], float]:
    """(d_model, lr) -> held-out loss; a diverged run counts as inf."""
    plan = plan_sweep(load_sweep(sweep_toml(workdir / f"{parametrization}.toml", args, parametrization)))
    losses = {}
    for run in plan.runs:
        run_dir = plan.sweep.sweep_dir / run.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / "spec.json", run.to_dict())
        result = train_run(run_dir, num_threads=1)
        loss = result.get("val_loss") if result.get("status") == "done" else None
        losses[(run.shape.d_model, run.lr)] = float(loss) if loss is not None and math.isfinite(loss) else math.inf
    return losses


def vertex(row: list[float], best: int) -> float:
    """The best LR's grid index from a parabola in log2(LR) through the argmin and up to two neighbours each side
    (the grid is a factor 2 apart, so index = log2(LR / smallest LR)); near a flat optimum the argmin alone
    jumps between grid points with run-to-run noise, the parabola's vertex much less. Falls back to the argmin
    where the points are not convex; clipped to the grid."""
    idx = [i for i in range(best - 2, best + 3) if 0 <= i < len(row) and math.isfinite(row[i])]
    if len(idx) < 3:
        return float(best)
    a, b, _c = np.polyfit(idx, [row[i] for i in idx], 2)
    return float(np.clip(-b / (2 * a), 0, len(row) - 1)) if a > 0 else float(best)


def report(name: str, losses: dict[tuple[int, float], float]) -> tuple[int, float]:
    """Print the table and the best LR per width; return how many grid steps the best LR moved from the
    narrowest width to the widest, by argmin and by parabola vertex."""
    widths = sorted({w for w, _ in losses})
    lrs = sorted({lr for _, lr in losses})
    print(f"\n{name}: held-out loss by width (rows) and peak LR (columns); bold: the lowest")
    print("| d_model | " + " | ".join(f"{lr:.2g}" for lr in lrs) + " | best LR | parabola's best LR |")
    print("|---|" + "---|" * (len(lrs) + 2))
    best, smooth = {}, {}
    for w in widths:
        row = [losses[(w, lr)] for lr in lrs]
        best[w] = min(range(len(lrs)), key=lambda i: row[i])
        smooth[w] = vertex(row, best[w])
        cells = [("**" if i == best[w] else "") + (f"{v:.3f}" if math.isfinite(v) else "div") +
                 ("**" if i == best[w] else "") for i, v in enumerate(row)]
        print(f"| {w} | " + " | ".join(cells) + f" | {lrs[best[w]]:.3g} | {lrs[0] * 2 ** smooth[w]:.3g} |")
    shift, smooth_shift = best[widths[-1]] - best[widths[0]], smooth[widths[-1]] - smooth[widths[0]]
    print(f"{name}: best LR at d_model {widths[0]}: {lrs[best[widths[0]]]:.3g}; at {widths[-1]}: "
          f"{lrs[best[widths[-1]]]:.3g}; moved {shift:+d} grid steps (x2 each); the parabola's moved "
          f"{smooth_shift:+.2f}")
    return shift, smooth_shift


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="gpt", choices=["gpt", "llama"])
    p.add_argument("--widths", default="16,32,64,128", help="d_model values, narrowest first (the muP base)")
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--base-lr", type=float, default=1e-3, help="the smallest LR of the grid")
    p.add_argument("--n-lrs", type=int, default=7, help="grid points, a factor 2 apart")
    p.add_argument("--val-tokens", type=int, default=8192)
    p.add_argument("--min-lr-ratio", type=float, default=0.0,
                   help="cosine decay to this fraction of the peak; 0 anneals each run fully, so its final loss "
                        "is not the noise of a large last LR")
    p.add_argument("--parametrizations", default="sp,mup")
    p.add_argument("--weight-decay", type=float, default=0.1, help="[train].weight_decay (the default's)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        shifts = {}
        for parametrization in args.parametrizations.split(","):
            t = time.perf_counter()
            shifts[parametrization] = report(parametrization, sweep_losses(args, parametrization, Path(tmp)))
            print(f"{parametrization}: {time.perf_counter() - t:.0f} s wall for the sweep")
    print("\nbest-LR shift, narrowest to widest, in grid steps (argmin; parabola): "
          + ", ".join(f"{k} {a:+d}; {b:+.2f}" for k, (a, b) in shifts.items())
          + f" (transfer holds when |shift| <= 1); {time.perf_counter() - t0:.0f} s wall in all, 1 thread")


if __name__ == "__main__":
    main()
