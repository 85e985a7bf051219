"""Luo et al. 2025's released fitting procedure for the multi-power law: `fit_curves(..., method="luo2025")`.

Luo et al., "A Multi-Power Law for Loss Curve Prediction Across Learning Rate Schedules" (arXiv:2503.12811)
publish parameters that are NOT the minimum of their own objective: their released code
(thu-yao-01-luo/MultiPowerLaw@8da9f19, MIT: src/fitting.py, src/config.py, src/utils.py) stops a first-order
optimiser after about 100 steps, with weight decay, from a warm start. The published parameters come out
of exactly that run (their logs/25.log ends "Early stopping at step 100" with the published values), and
they predict the six unseen schedules better than the converged minimum of the same objective, which is
2-14x lower on the training curves. The procedure, restated here from their code's settings:

1. Warm start (`warm_start`): the annealing term linearised as B (eta_peak - eta_t), i.e.
   L(t) ~ L0 + A S1(t)^(-alpha) - B (eta_peak - eta_t), eta_t the LR of the measured step, fitted by L-BFGS-B
   (all four >= 0; ftol 1e-9, gtol 1e-6) to the summed Huber(delta) of log residuals, from every start of
   a 5 x 3 x 3 x 3 grid: L0 in min(loss) +- 0.2, A in e^a +- 0.1, alpha in -b +- 0.1 (a, b the intercept
   and slope of log(loss - min(loss) + 0.01) regressed on log S1), B in 100..1000; the lowest objective wins.
2. `adamw`: with C = 1, beta = gamma = 0.5 appended, AdamW with PyTorch's defaults (beta1 0.9, beta2 0.999,
   eps 1e-8, weight decay 0.01) on the same objective summed over every measured point: learning rate 5e-2
   for L0, A, B, C and 5e-3 for alpha, beta, gamma; at most 200 steps, stopping after 20 steps without a
   lower objective or at a gradient norm below 1e-5. The result is the parameters right after the update
   taken at the lowest objective evaluated (their loop records them after optimizer.step()).

The weight decay and the early stop regularise: B shrinks by lr x 0.01 x B (about 0.2) per step, and B, C
move at most ~0.05 per step, so the fit stays near the warm start. Pure NumPy/SciPy (no torch); the callers
in scaling.analysis.curves supply the law's residuals and Jacobian.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import product

import numpy as np
from scipy.optimize import minimize
from scipy.stats import linregress

from scaling.analysis.approach3 import huber  # Huber(delta), the objective of every fit here

__all__ = ["warm_start", "adamw", "ADAMW_LR", "ADAMW_STEPS", "ADAMW_PATIENCE", "ADAMW_WEIGHT_DECAY"]

ADAMW_LR = (5e-2, 5e-2, 5e-3, 5e-2, 5e-2, 5e-3, 5e-3)
"""Per-parameter learning rate, order L0, A, alpha, B, C, beta, gamma (their FIT_LR1 / FIT_LR2)."""
ADAMW_STEPS = 200
ADAMW_PATIENCE = 20
ADAMW_WEIGHT_DECAY = 0.01   # torch.optim.AdamW's default, which their code leaves in place
ADAMW_GRAD_NORM = 1e-5
ANNEALING_START = (1.0, 0.5, 0.5)
"""C, beta, gamma at the start of the AdamW stage."""


def warm_start(s1: Sequence[np.ndarray], eta: Sequence[np.ndarray], loss: Sequence[np.ndarray],
               weights: Sequence[float], peak: float, delta: float) -> np.ndarray:
    """(L0, A, alpha, B) of the linearised law, best of the grid of L-BFGS-B runs (step 1 above).
    Per curve: S1 and the LR at its measured steps, its losses, and its weight in the summed objective."""
    s1_all, eta_all, y_all = (np.concatenate(v) for v in (s1, eta, loss))
    w_all = np.concatenate([np.full(len(y), w) for y, w in zip(loss, weights)])
    low = float(y_all.min())
    slope, intercept, *_ = linregress(np.log(s1_all), np.log(y_all - low + 0.01))
    log_s1, log_y, gap = np.log(s1_all), np.log(y_all), peak - eta_all

    def objective(p: np.ndarray) -> tuple[float, np.ndarray]:
        L0, A, alpha, B = p
        power = np.exp(-alpha * log_s1)
        pred = L0 + A * power - B * gap
        r = log_y - np.log(pred)
        psi = w_all * np.clip(r, -delta, delta) / pred   # d objective / d pred, up to the sign
        grad = -np.array([psi.sum(), (psi * power).sum(), -(psi * A * power * log_s1).sum(),
                          -(psi * gap).sum()])
        return float((w_all * huber(r, delta)).sum()), grad

    grid = product(np.linspace(low - 0.2, low + 0.2, 5), np.linspace(np.exp(intercept) - 0.1,
                                                                     np.exp(intercept) + 0.1, 3),
                   np.linspace(-slope - 0.1, -slope + 0.1, 3), np.linspace(100.0, 1000.0, 3))
    best_f, best_p = np.inf, None
    with np.errstate(all="ignore"):
        for p0 in grid:
            res = minimize(objective, np.array(p0), jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * 4,
                           options={"maxiter": 100000, "ftol": 1e-9, "gtol": 1e-6})
            if np.isfinite(res.fun) and res.fun < best_f:
                best_f, best_p = float(res.fun), res.x
    if best_p is None:
        raise FloatingPointError("no warm start of the linearised law gave a finite objective")
    return np.asarray(best_p, dtype=float)


def adamw(residuals: Callable[[np.ndarray], np.ndarray], jacobian: Callable[[np.ndarray], np.ndarray],
          p0: np.ndarray, point_weights: np.ndarray, delta: float) -> tuple[np.ndarray, float]:
    """Step 2 above: minimise sum w Huber_delta(residuals(p)) by AdamW from p0; jacobian(p) is
    d residuals / d p. Returns (parameters, objective at the lowest point evaluated)."""
    lr = np.asarray(ADAMW_LR)
    p = np.asarray(p0, dtype=float).copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    best_f, best_p, lowest, stale = np.inf, None, np.inf, 0
    for step in range(ADAMW_STEPS):
        r = residuals(p)
        f = float((point_weights * huber(r, delta)).sum())
        g = (point_weights * np.clip(r, -delta, delta)) @ jacobian(p)
        if not (np.isfinite(f) and np.all(np.isfinite(g))):
            break
        p = p * (1.0 - lr * ADAMW_WEIGHT_DECAY)
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * g * g
        t = step + 1
        p = p - lr * (m / (1.0 - beta1 ** t)) / (np.sqrt(v / (1.0 - beta2 ** t)) + eps)
        if f < lowest:
            lowest, stale = f, 0
        else:
            stale += 1
        if step > ADAMW_PATIENCE and stale >= ADAMW_PATIENCE:
            break
        if np.linalg.norm(g) < ADAMW_GRAD_NORM:
            break
        if f < best_f:
            best_f, best_p = f, p.copy()
    if best_p is None:
        raise FloatingPointError("the AdamW stage found no finite objective")
    return best_p, best_f
