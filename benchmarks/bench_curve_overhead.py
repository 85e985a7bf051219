"""Cost of the loss-curve points ([train].curve_evals) on a sweep's runs, measured per shape on this machine.

For each shape of the sweep: the median time of one training step (forward, backward, AdamW; batch and
seq_len of the sweep) and of one curve point (train._log_curve's forward over the curve sample), both in this
process on 1 thread; then, for every planned run, overhead = points x point time / (steps x step time).
Usage: python benchmarks/bench_curve_overhead.py [sweeps/tiny.toml]
"""

from __future__ import annotations

import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn import functional as F

from scaling import train
from scaling.config import load_sweep
from scaling.data import get_batch, load_corpus
from scaling.plan import plan_sweep
from scaling.schedule import run_curve_steps


def main(path: str = "sweeps/tiny.toml") -> None:
    torch.set_num_threads(1)
    plan = plan_sweep(load_sweep(path))
    cost: dict[tuple[int, int], tuple[float, float]] = {}
    for spec in plan.runs:
        key = (spec.shape.n_layer, spec.shape.d_model)
        if key in cost:
            continue
        corpus = load_corpus(spec.data, seq_len=spec.shape.seq_len)
        model, opt = train._build(spec, "cpu")
        B, T, V = spec.batch_size, spec.shape.seq_len, spec.shape.vocab_size

        def step(i: int) -> None:
            x, y = get_batch(corpus.train, i, B, T, spec.seed)
            F.cross_entropy(model(x).view(-1, V).float(), y.view(-1)).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        x_all, y_all, idx = train._held_out(corpus, T, spec.data.val_tokens, spec.curve_tokens)
        step_s, point_s = [], []
        for i in range(60):
            t = time.perf_counter()
            step(i)
            step_s.append(time.perf_counter() - t)
            if i % 6 == 5:
                t = time.perf_counter()
                train.window_losses(model, x_all[idx], y_all[idx], B, "cpu", nullcontext())
                point_s.append(time.perf_counter() - t)
        cost[key] = (statistics.median(step_s[10:]), statistics.median(point_s[1:]))
        print(f"L{key[0]} d{key[1]}: step {cost[key][0] * 1e3:.1f} ms, curve point ({len(idx) * T} tokens) "
              f"{cost[key][1] * 1e3:.1f} ms", flush=True)
    overheads = []
    for spec in plan.runs:
        step_t, point_t = cost[(spec.shape.n_layer, spec.shape.d_model)]
        n_points = len(run_curve_steps(spec))
        overheads.append((n_points * point_t / (spec.n_steps * step_t), spec.run_id, n_points, spec.n_steps))
    overheads.sort()
    total = sum(len(run_curve_steps(s)) * cost[(s.shape.n_layer, s.shape.d_model)][1] for s in plan.runs)
    train_t = sum(s.n_steps * cost[(s.shape.n_layer, s.shape.d_model)][0] for s in plan.runs)
    print(f"{Path(path).name}: {len(plan.runs)} runs; curve points cost {100 * total / train_t:.2f}% of the sweep's "
          f"training time; per run median {100 * overheads[len(overheads) // 2][0]:.2f}%, max "
          f"{100 * overheads[-1][0]:.2f}% ({overheads[-1][1]}: {overheads[-1][2]} points in {overheads[-1][3]} steps)")


if __name__ == "__main__":
    main(*sys.argv[1:])
