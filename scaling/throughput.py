"""A quick training-throughput probe for `scaling plan --measure`: FLOP/s of one job on this machine."""

from __future__ import annotations

import time

import torch
from torch.nn import functional as F

from scaling.model import build_model
from scaling.plan import Plan


def measure_flops_per_s(plan: Plan, seconds: float = 2.0, device: str = "cpu", smallest: bool = False) -> float:
    """Train the plan's largest (or `smallest`) model on random tokens for ~`seconds` (after one warm-up step)
    and return the achieved FLOP/s, counted like the plan (flops_per_token x tokens), with the jobs' thread
    count."""
    spec = (min if smallest else max)(plan.runs, key=lambda r: r.flops_per_token)
    prev = torch.get_num_threads()
    torch.set_num_threads(plan.sweep.launch.threads_per_job)
    try:
        torch.manual_seed(0)
        model = build_model(spec.shape).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr)
        B, T, V = spec.batch_size, spec.shape.seq_len, spec.shape.vocab_size
        x = torch.randint(0, V, (B, T), device=device)  # (B, T)
        y = torch.randint(0, V, (B, T), device=device)  # (B, T)

        def step() -> None:
            loss = F.cross_entropy(model(x).view(-1, V), y.view(-1))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step()  # the first step allocates optimizer state and warms kernels up: not timed
        n_steps, t0 = 0, time.perf_counter()
        while n_steps < 1 or time.perf_counter() - t0 < seconds:
            step()
            n_steps += 1
        elapsed = time.perf_counter() - t0
    finally:
        torch.set_num_threads(prev)
    return n_steps * B * T * spec.flops_per_token / elapsed
