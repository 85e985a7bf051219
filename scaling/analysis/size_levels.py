"""Bootstrap replicates of (N, D, loss) points that redraw each independent unit's level.

Points predicted from loss curves come in units: every end point a size's curve law predicts shares that
size's trunk, its seed and its curve fit, so the points of one size move together. A bootstrap that resamples
whole units cannot show how far they move when there are few units: with one trunk per size, five sizes are
five draws, a resample of five holds fewer than three distinct sizes one time in ten, and the resamples that
can be fitted are too alike (simulated: intervals of N_opt(C*) covered the truth 9 of 20 times,
benchmarks/README.md). This module redraws the units' levels instead, a parametric bootstrap of a random
effect:

1. Approach 3 (`law`, already fitted to the points) leaves log residuals r; each unit's level is the mean of
   its points' residuals, u_k, and what is left, r - u_k, stays with its point.
2. Part of the units' scatter is absorbed by the law: the levels of K units can be fitted by as many of the
   law's parameters as the rank of the unit-averaged Jacobian of eq. 2 (3 when every size shares the same
   budgets: E, A and alpha; 5 for a grid of single runs). The level variance is estimated with the rest,
   s^2 = sum(u_k^2) / df, df = K - rank.
3. Each replicate draws a variance sigma^2 = s^2 df / chi^2_df (its posterior under a flat prior on log
   sigma), then new levels u*_k ~ N(0, sigma^2), and shifts every point of unit k by u*_k - u_k. With df
   small the draws are heavy-tailed (Student-t with df degrees of freedom for a linear law), which is the
   honest width when few units were trained; a normal draw with s alone would cover like a t interval read
   with normal quantiles (81% for df = 2).

Refitting Approach 3 on each replicate gives the intervals. A design with df < 1 (no more units than
parameters that fit their levels) has no estimate of the level scatter: `level_shifts` raises FitError.
"""

from __future__ import annotations

import numpy as np

from scaling.analysis.approach3 import LawParams
from scaling.errors import FitError

__all__ = ["level_df", "level_shifts"]


def _jacobian(p: LawParams, n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """d loss / d (E, A, alpha, B, beta) of eq. 2 at each point."""
    pn, pd_ = n ** -p.alpha, d ** -p.beta
    return np.stack([np.ones_like(n), pn, -p.A * pn * np.log(n), pd_, -p.B * pd_ * np.log(d)], axis=1)


def _averaging(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit index of each point, K x rows matrix averaging each unit's points)."""
    labels, index = np.unique(units, return_inverse=True)
    m = np.zeros((len(labels), len(units)))
    m[index, np.arange(len(units))] = 1.0
    return index, m / m.sum(axis=1, keepdims=True)


def level_df(params: LawParams, n_params, n_tokens, units) -> tuple[int, int]:
    """(K units, df = K - rank of the unit-averaged Jacobian): the degrees of freedom left for the levels."""
    n, d = np.asarray(n_params, dtype=float), np.asarray(n_tokens, dtype=float)
    _, m = _averaging(np.asarray(units))
    jac = m @ _jacobian(params, n, d)
    norms = np.linalg.norm(jac, axis=0)
    jac = jac[:, norms > 0] / norms[norms > 0]
    sv = np.linalg.svd(jac, compute_uv=False)
    rank = int((sv > 1e-8 * sv.max()).sum()) if len(sv) and sv.max() > 0 else 0
    return m.shape[0], m.shape[0] - rank


def level_shifts(params: LawParams, n_params, n_tokens, loss, units, n_boot: int, seed: int = 0
                 ) -> np.ndarray:
    """(n_boot, rows) log shifts: replicate b of the points is loss * exp(shifts[b]) (module docstring)."""
    n, d = np.asarray(n_params, dtype=float), np.asarray(n_tokens, dtype=float)
    y = np.asarray(loss, dtype=float)
    fitted = params.E + params.A / n ** params.alpha + params.B / d ** params.beta
    index, m = _averaging(np.asarray(units))
    k, df = level_df(params, n, d, units)
    if df < 1:
        raise FitError(f"{k} independent unit(s) leave no degree of freedom for their scatter around the law "
                       f"(the law fits {k - df} unit levels): train more sizes or seeds")
    u = m @ (np.log(y) - np.log(fitted))
    s2 = float(u @ u) / df
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(s2 * df / rng.chisquare(df, n_boot))
    draws = rng.standard_normal((n_boot, k)) * sigma[:, None]
    return (draws - u[None, :])[:, index]
