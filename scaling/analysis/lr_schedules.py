"""LR schedules as arrays (entry i is the LR of optimizer step i + 1), as the loss-curve laws read them.

The trainer's own schedules (scaling.schedule.lr_at) and Luo et al.'s released ones (constant, cosine, two-stage,
WSD) are built here, so a curve law sees exactly the LRs a run trained with (tests/test_curves.py checks run_lrs
against the trainer step by step).
"""

from __future__ import annotations

import numpy as np

from scaling.errors import ConfigError


def _warmup(n_steps: int, lr: float, warmup_steps: int, from_zero: bool) -> np.ndarray:
    """LR of the first min(warmup_steps, n_steps) steps: linear up to lr. `from_zero`: numpy's
    linspace(0, lr, W) (Luo et al.); else lr * (i + 1) / W, i = 0..W-1 (scaling.train.lr_at)."""
    w = min(warmup_steps, n_steps)
    if warmup_steps <= 0:
        return np.empty(0)
    if from_zero:
        return np.linspace(0.0, lr, warmup_steps)[:w]
    return lr * np.arange(1, w + 1) / warmup_steps


def constant_lrs(n_steps: int, lr: float, warmup_steps: int = 0, *, warmup_from_zero: bool = False
                 ) -> np.ndarray:
    """Linear warmup, then lr."""
    head = _warmup(n_steps, lr, warmup_steps, warmup_from_zero)
    return np.concatenate([head, np.full(n_steps - len(head), float(lr))])


def cosine_lrs(n_steps: int, lr: float, final_lr: float, warmup_steps: int = 0, *,
               warmup_from_zero: bool = False) -> np.ndarray:
    """Linear warmup, then half a cosine from lr (step index warmup_steps) to final_lr (index n_steps)."""
    head = _warmup(n_steps, lr, warmup_steps, warmup_from_zero)
    i = np.arange(len(head), n_steps)
    progress = np.minimum(1.0, (i - warmup_steps) / max(1, n_steps - warmup_steps))
    return np.concatenate([head, final_lr + 0.5 * (1.0 + np.cos(np.pi * progress)) * (lr - final_lr)])


def two_stage_lrs(n_steps: int, lr: float, lr_b: float, switch_step: int, warmup_steps: int = 0, *,
                  warmup_from_zero: bool = False) -> np.ndarray:
    """Linear warmup, lr until step index switch_step, then lr_b."""
    out = constant_lrs(n_steps, lr, warmup_steps, warmup_from_zero=warmup_from_zero)
    out[switch_step:] = lr_b
    return out


def wsd_lrs(n_steps: int, lr: float, final_lr: float, decay_start: int, warmup_steps: int = 0, *,
            shape: str = "linear", warmup_from_zero: bool = False) -> np.ndarray:
    """Warmup-stable-decay: linear warmup, lr until step index decay_start, then a decay reaching final_lr
    at index n_steps: "linear", "exp" (geometric, Luo et al.'s wsd) or "1-sqrt" (Hagele et al. 2024)."""
    out = constant_lrs(n_steps, lr, warmup_steps, warmup_from_zero=warmup_from_zero)
    i = np.arange(decay_start, n_steps)
    frac = (i - decay_start) / max(1, n_steps - decay_start)
    if shape == "linear":
        out[decay_start:] = lr - frac * (lr - final_lr)
    elif shape == "exp":
        out[decay_start:] = lr ** (1.0 - frac) * final_lr ** frac
    elif shape == "1-sqrt":
        out[decay_start:] = lr - np.sqrt(frac) * (lr - final_lr)
    else:
        raise ConfigError(f"wsd schedule shape {shape!r}: must be linear, exp or 1-sqrt")
    return out


def run_lrs(*, n_steps: int, lr: float, warmup_steps: int, min_lr_ratio: float, schedule: str = "cosine",
            cooldown_steps: int = 0, cooldown_shape: str = "linear") -> np.ndarray:
    """The LR of every step of a built-in run, from its spec's fields: the same numbers as
    scaling.train.lr_at(i, spec) for i = 0..n_steps-1 (tests/test_curves.py checks it), without torch."""
    min_lr = min_lr_ratio * lr
    i = np.arange(n_steps, dtype=float)
    if schedule == "wsd":
        into = i - (n_steps - cooldown_steps) + 1
        frac = np.clip(into / max(1, cooldown_steps), 0.0, 1.0)
        frac = np.sqrt(frac) if cooldown_shape == "1-sqrt" else frac
        out = np.where(into <= 0, lr, lr - frac * (lr - min_lr))
    else:
        progress = np.minimum(1.0, (i - warmup_steps) / max(1, n_steps - warmup_steps))
        out = min_lr + 0.5 * (1.0 + np.cos(np.pi * progress)) * (lr - min_lr)
    warm = i < warmup_steps
    out[warm] = lr * (i[warm] + 1) / warmup_steps
    return out


def check_lrs(lrs: np.ndarray, where: str) -> np.ndarray:
    """The schedule as a float array, or a one-line ConfigError naming `where` and the first bad step."""
    lrs = np.asarray(lrs, dtype=float)
    if lrs.ndim != 1 or len(lrs) == 0:
        raise ConfigError(f"{where}: the LR schedule is empty")
    bad = ~np.isfinite(lrs) | (lrs < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(f"{where}: lr at step {i + 1} is {float(lrs[i])!r}: must be a finite number >= 0 "
                          f"({int(bad.sum())} bad step(s))")
    if not (lrs > 0).any():
        raise ConfigError(f"{where}: every lr is 0: the schedule trains nothing")
    return lrs
