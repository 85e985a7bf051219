"""The LR schedule of a run and the steps its loss curve is measured at: pure functions of the spec, torch-free.

The trainer (scaling.train) takes the LR of every update from lr_at, and the curve-law fits (scaling.analysis)
rebuild the same schedule with lr_at_steps, so a curve recorded in metrics.jsonl never needs its LR logged
at every step: the spec fixes it (batches, warmup, cosine or WSD cooldown are all deterministic).

Conventions: `step` in lr_at counts completed updates (the update that makes step s + 1 uses lr_at(s)); a
metrics record at step s (s updates done) carries the LR of its last update, lr_at(s - 1), and
lr_at_steps(spec)[s - 1] is that same value.

The curve points (curve_eval_steps) are where the trainer measures held-out loss on a small fixed sample
during training ([train].curve_evals, [train].curve_tokens): half of them log-spaced (the fast early drop),
half evenly spaced (the slow tail and any cooldown), so the curve laws see both regimes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

CURVE_LOG_START = 1 / 64
"""The log-spaced curve points start at this fraction of the run (warmup and the first steps carry little
information about the law, and log spacing from step 1 would spend half of the points there)."""


def lr_at(step: int, spec: Any) -> float:
    """The LR of the update after `step` completed updates, for a RunSpec (or anything with its fields).

    Linear warmup over warmup_steps, then cosine decay to min_lr_ratio * lr at n_steps. WSD (Hagele et al.
    2024): after warmup the LR stays at its peak until the last cooldown_steps, which decay it (linear or
    1-sqrt) to min_lr_ratio * lr at the final step. Before the cooldown it depends only on the step, so every
    budget of one size shares the same trunk.
    """
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    min_lr = spec.min_lr_ratio * spec.lr
    if spec.schedule == "wsd":
        fork_step = spec.n_steps - spec.cooldown_steps
        into = step - fork_step + 1  # 1..cooldown_steps inside the cooldown
        if into <= 0:
            return spec.lr
        frac = min(1.0, into / spec.cooldown_steps)
        frac = math.sqrt(frac) if spec.cooldown_shape == "1-sqrt" else frac
        return spec.lr - frac * (spec.lr - min_lr)
    progress = (step - spec.warmup_steps) / max(1, spec.n_steps - spec.warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))) * (spec.lr - min_lr)


def lr_at_steps(spec: Any, n_steps: int | None = None) -> np.ndarray:
    """(n,) the LR of updates 1..n (entry k - 1 made step k), n = n_steps or the spec's own n_steps.

    Exactly the values the trainer used (the same float arithmetic as lr_at). A WSD trunk's spec is
    open-ended (n_steps 10^12): pass n_steps to take its first n.
    """
    n = spec.n_steps if n_steps is None else int(n_steps)
    if n < 0:
        raise ValueError(f"n_steps = {n}: must be >= 0")
    if n > 100_000_000:
        raise ValueError(f"n_steps = {n}: more than 10^8 steps; pass n_steps to take a prefix")
    return np.array([lr_at(s, spec) for s in range(n)], dtype=np.float64)


def curve_eval_steps(n_steps: int, curve_evals: int, start: int = 0) -> tuple[int, ...]:
    """The steps (after that many updates) at which a run of n_steps measures its curve, in (start, n_steps).

    About curve_evals points: curve_evals // 2 log-spaced from CURVE_LOG_START of the run to its end, the
    rest evenly spaced; duplicates merged. The final step is left out (the final evaluation measures it).
    `start` (a WSD branch: its fork step) keeps only the points after it.
    """
    if curve_evals <= 0 or n_steps < 2:
        return ()
    n_log = curve_evals // 2
    n_lin = curve_evals - n_log
    points: set[int] = set()
    if n_log:
        lo = max(1.0, CURVE_LOG_START * n_steps)
        points.update(int(round(s)) for s in np.geomspace(lo, n_steps, n_log + 1)[:-1])
    points.update(int(round(n_steps * (i + 1) / (n_lin + 1))) for i in range(n_lin))
    return tuple(sorted(s for s in points if start < s < n_steps and s >= 1))


def curve_windows(n_windows: int, curve_tokens: int, seq_len: int) -> np.ndarray:
    """Indices of the held-out windows the curve points are measured on: ceil(curve_tokens / seq_len) of the
    n_windows fixed validation windows, evenly strided through them (the windows are sorted by position in
    the held-out split, so a stride samples all of it, not the first file)."""
    k = max(1, min(n_windows, math.ceil(curve_tokens / seq_len)))
    return np.unique(np.floor(np.arange(k) * n_windows / k).astype(np.int64))


def run_curve_steps(spec: Any) -> tuple[int, ...]:
    """The steps at which the run of `spec` measures a curve point ([train].curve_evals), before its final step.

    Spread over spec.curve_horizon (a WSD trunk: its last fork) or n_steps. A WSD branch adds
    max(2, curve_evals // 4) evenly spaced points inside its cooldown (where the annealing term of a
    curve law is learned); its points before the fork are its trunk's.
    """
    k = getattr(spec, "curve_evals", 0)
    if k <= 0:
        return ()
    horizon = getattr(spec, "curve_horizon", 0) or spec.n_steps
    steps = set(curve_eval_steps(horizon, k))
    if spec.schedule == "wsd" and spec.cooldown_steps > 0:
        fork = spec.n_steps - spec.cooldown_steps
        n_cool = max(2, k // 4)
        steps.update(fork + int(round(spec.cooldown_steps * i / n_cool)) for i in range(n_cool))
    return tuple(sorted(s for s in steps if 0 < s < spec.n_steps))
