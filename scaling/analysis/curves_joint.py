"""The multi-power law fitted jointly over model sizes, its schedule-shape parameters shared.

Each size's curves keep their own L0, A and B (the loss floor, the power term's amplitude and the annealing
term's amplitude: all move with N), while alpha, C, beta and gamma (the shape of the power decay in the LR
area and of the annealing response) are one set for every size. A curves design with one WSD trunk per size
sees few schedules per size; fitted alone, each size's seven parameters are not pinned by them (on
sweeps/tiny_curves.toml the per-size fits put beta at its bound and let C and gamma wander, and their
predictions of the cosine runs of sweeps/tiny.toml miss by 3.9% on the curve sample, benchmarks/README.md).
Sharing the shape across sizes pools every size's schedules into those four parameters.

Points measured before `min_step_warmups` warmups have passed are left out of the fit: at the start of a
byte-level model's training the loss falls through a fast phase (unigram, then bigram statistics) that is no
power of the LR area, and those points dominate the residuals of a law fitted to the whole curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
from scipy.optimize import least_squares

from scaling.analysis._blas import _blas_single_thread
from scaling.analysis.curves import (HUBER_DELTA, LAW_PARAMS, Curve, CurveFit, _design, _jacobian, _predict,
                                     check_lrs)
from scaling.errors import FitError

__all__ = ["SHARED", "MIN_STEP_WARMUPS", "fit_curves_joint", "trim_warmup", "bootstrap_curves_joint",
           "bootstrap_curves_joint_runs"]

SHARED = ("alpha", "C", "beta", "gamma")
"""The multi-power law's parameters one joint fit shares across sizes; L0, A and B are per size."""

MIN_STEP_WARMUPS = 1.0
"""Curve points before this many warmups are left out of a joint fit (measured on tiny_curves -> tiny's cosine
runs: 1 warmup 1.80% mean error, none 2.63%, 2 warmups 2.05%, 3 warmups 2.22%; benchmarks/README.md)."""

_OWN = ("L0", "A", "B")
_BOUNDS_SHARED = ((0.0, -30.0, 0.0, 0.0), (5.0, 40.0, 10.0, 3.0))  # alpha, log C, beta, gamma
_BOUNDS_OWN = ((0.0, -30.0, -30.0), (np.inf, 30.0, 40.0))         # L0, log A, log B


def trim_warmup(curve: Curve, warmup_steps: int, min_step_warmups: float) -> Curve:
    """The curve without its points before min_step_warmups * warmup_steps (the early fast phase)."""
    keep = np.asarray(curve.steps) >= min_step_warmups * warmup_steps
    return replace(curve, steps=np.asarray(curve.steps)[keep], loss=np.asarray(curve.loss)[keep])


def _params(shared: np.ndarray, own: np.ndarray) -> np.ndarray:
    """LAW_PARAMS["mpl"] order (L0, A, alpha, B, C, beta, gamma) from theta pieces."""
    alpha, log_c, beta, gamma = shared
    L0, log_a, log_b = own
    return np.array([L0, math.exp(log_a), alpha, math.exp(log_b), math.exp(log_c), beta, gamma])


class _Joint:
    def __init__(self, groups: Sequence[Sequence[Curve]]):
        self.designs, self.logs, self.kept = [], [], []
        for curves in groups:
            ds, ys, kept = [], [], []
            for j, c in enumerate(curves):
                lrs = check_lrs(c.lrs, f"run {c.name}")
                steps, loss = np.asarray(c.steps, dtype=np.int64), np.asarray(c.loss, dtype=float)
                ok = np.isfinite(loss) & (loss > 0)
                if ok.sum():
                    ds.append(_design(lrs, steps[ok], "mpl", False))
                    ys.append(np.log(loss[ok]))
                    kept.append(j)
            if not ds:
                raise FitError("a size has no measured curve points to fit")
            self.designs.append(ds)
            self.logs.append(ys)
            self.kept.append(kept)
        self.k = len(groups)
        self.weights = [np.ones(len(d)) for d in self.designs]

    def split(self, theta: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        return theta[:4], [theta[4 + 3 * i: 7 + 3 * i] for i in range(self.k)]

    def residuals(self, theta: np.ndarray) -> np.ndarray:
        shared, owns = self.split(theta)
        out = []
        for i, own in enumerate(owns):
            p = _params(shared, own)
            for w, d, y in zip(self.weights[i], self.designs[i], self.logs[i]):
                if w:
                    out.append(math.sqrt(w) * (y - np.log(np.maximum(_predict("mpl", p, d), 1e-12))))
        return np.concatenate(out)

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        shared, owns = self.split(theta)
        blocks = []
        for i, own in enumerate(owns):
            p = _params(shared, own)
            for w, d in zip(self.weights[i], self.designs[i]):
                if not w:
                    continue
                pred = np.maximum(_predict("mpl", p, d), 1e-12)
                jac = -math.sqrt(w) * _jacobian("mpl", p, d) / pred[:, None]  # columns: L0 logA alpha logB logC beta gamma
                row = np.zeros((len(pred), len(theta)))
                row[:, :4] = jac[:, [2, 4, 5, 6]]
                row[:, 4 + 3 * i: 7 + 3 * i] = jac[:, [0, 1, 3]]
                blocks.append(row)
        return np.concatenate(blocks)

    def linear_own(self, shared: np.ndarray) -> tuple[float, list[np.ndarray]] | None:
        """Given the shared parameters, each size's L0, A, B by least squares (1/loss weighted)."""
        alpha, log_c, beta, gamma = shared
        total, owns = 0.0, []
        for i in range(self.k):
            rows, targets = [], []
            for w, d, y in zip(self.weights[i], self.designs[i], self.logs[i]):
                if not w:
                    continue
                loss = np.exp(y)
                x = d.eta ** (-gamma) * d.area
                third = -(d.drop * (1.0 - (math.exp(log_c) * x + 1.0) ** (-beta))).sum(axis=1)
                scale = math.sqrt(w) / loss
                rows.append(np.stack([np.ones_like(loss), d.s1 ** (-alpha), third], axis=1) * scale[:, None])
                targets.append(loss * scale)
            X, yv = np.concatenate(rows), np.concatenate(targets)
            coef, *_ = np.linalg.lstsq(X, yv, rcond=None)
            L0, A, B = coef
            if not (A > 0 and L0 > 0 and B > 0):
                return None
            total += float(((X @ coef - yv) ** 2).sum())
            owns.append(np.array([L0, math.log(A), math.log(B)]))
        return total, owns


def _fit(problem: _Joint, n_starts: int, delta: float, extra: np.ndarray | None = None) -> np.ndarray | None:
    starts = []
    for a in (0.2, 0.4, 0.6) if n_starts > 0 else ():
        for b in (0.3, 0.6, 1.0, 3.0):
            for g in (0.0, 0.3, 0.6, 0.9):
                for c in (0.03, 0.3, 3.0, 30.0):
                    shared = np.array([a, math.log(c), b, g])
                    found = problem.linear_own(shared)
                    if found is not None:
                        starts.append((found[0], np.concatenate([shared, *found[1]])))
    starts.sort(key=lambda s: s[0])
    thetas = [t for _, t in starts[:n_starts]]
    if extra is not None:
        thetas.insert(0, extra)
    lo = np.array(list(_BOUNDS_SHARED[0]) + list(_BOUNDS_OWN[0]) * problem.k, dtype=float)
    hi = np.array(list(_BOUNDS_SHARED[1]) + list(_BOUNDS_OWN[1]) * problem.k, dtype=float)
    best = None
    with np.errstate(all="ignore"), _blas_single_thread():
        for theta0 in thetas:
            try:
                res = least_squares(problem.residuals, np.clip(theta0, lo + 1e-9, hi - 1e-9), jac=problem.jacobian,
                                    bounds=(lo, hi), loss="huber", f_scale=delta, method="trf", x_scale="jac",
                                    max_nfev=300, ftol=1e-10, xtol=1e-10, gtol=1e-10)
            except (ValueError, FloatingPointError, np.linalg.LinAlgError):
                continue
            if np.all(np.isfinite(res.x)) and np.isfinite(res.cost) and (best is None or res.cost < best[1]):
                best = (res.x, float(res.cost))
    return None if best is None else best[0]


def fit_curves_joint(groups: Mapping[object, Sequence[Curve]], *, n_starts: int = 4,
                     delta: float = HUBER_DELTA) -> dict[object, CurveFit]:
    """The multi-power law fitted to every size's curves at once (alpha, C, beta, gamma shared; L0, A, B per
    key of `groups`), Huber(delta) on log residuals; one CurveFit per key, holding that size's parameters."""
    keys = list(groups)
    if len(keys) < 2:
        raise FitError("a joint curve fit needs the curves of at least two sizes")
    problem = _Joint([groups[k] for k in keys])
    theta = _fit(problem, n_starts, delta)
    if theta is None:
        raise FitError(f"the joint multi-power law could not be fitted to {len(keys)} sizes' curves")
    return _fits(problem, keys, groups, theta, delta)


def _fits(problem: _Joint, keys: list, groups: Mapping, theta: np.ndarray, delta: float) -> dict:
    shared, owns = problem.split(theta)
    out = {}
    for key, own in zip(keys, owns):
        p = _params(shared, own)
        out[key] = CurveFit(law="mpl", params_=dict(zip(LAW_PARAMS["mpl"], map(float, p))), loss_=math.nan,
                            n_points_=sum(len(c.steps) for c in groups[key]),
                            runs_=tuple(c.name for c in groups[key]), delta=delta)
    return out


def bootstrap_curves_joint(groups: Mapping[object, Sequence[Curve]], fits: Mapping[object, CurveFit],
                           n_boot: int = 50, seed: int = 0, n_starts: int = 1, min_sizes: int = 3
                           ) -> list[dict[object, tuple[CurveFit, int]]]:
    """Refits of the joint law on resamples of whole sizes: each replicate draws the sizes with replacement
    (a size brings all its runs: in the curves design a size is one WSD trunk with its branches, the one
    independent unit, so resampling inside a size would change nothing) and refits the shared shape and the
    drawn sizes' own parameters, each size's residuals weighted by how often it was drawn. A draw with fewer
    than `min_sizes` distinct sizes is skipped (Approach 3 on fewer sizes cannot separate N from D).
    Returns one {key: (CurveFit, multiplicity)} per refit that converged."""
    keys = list(groups)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        drawn = rng.integers(0, len(keys), len(keys))
        counts = {keys[i]: int((drawn == i).sum()) for i in sorted(set(drawn.tolist()))}
        if len(counts) < min_sizes:
            continue
        sub = [k for k in keys if k in counts]
        problem = _Joint([groups[k] for k in sub])
        problem.weights = [np.full(len(d), float(counts[k])) for k, d in zip(sub, problem.designs)]
        theta = _fit(problem, n_starts, fits[keys[0]].delta, extra=_theta(sub, fits))
        if theta is not None:
            refit = _fits(problem, sub, groups, theta, fits[keys[0]].delta)
            out.append({k: (refit[k], counts[k]) for k in sub})
    return out


def _theta(keys: Sequence, fits: Mapping[object, CurveFit]) -> np.ndarray:
    p0 = fits[keys[0]].params_
    return np.concatenate([np.array([p0["alpha"], math.log(p0["C"]), p0["beta"], p0["gamma"]])] +
                          [np.array([fits[k].params_["L0"], math.log(fits[k].params_["A"]),
                                     math.log(fits[k].params_["B"])]) for k in keys])


def _fitted(curve: Curve, fit: CurveFit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the curve's measured steps, the fitted law there, the log residuals), over its finite, positive points."""
    steps = np.asarray(curve.steps, dtype=np.int64)
    loss = np.asarray(curve.loss, dtype=float)
    ok = np.isfinite(loss) & (loss > 0)
    if not ok.any():
        return steps[ok], loss[ok], loss[ok]
    predicted = fit.predict(curve.lrs, steps[ok])
    return steps[ok], predicted, np.log(loss[ok]) - np.log(predicted)


def _block_resample(resid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A moving-block bootstrap of one curve's residuals (blocks of ~sqrt(n) neighbouring points, so the
    smooth misfit along a curve travels with its neighbours rather than as independent noise)."""
    n = len(resid)
    block = max(1, int(math.ceil(math.sqrt(n))))
    starts = rng.integers(0, n - block + 1, int(math.ceil(n / block)))
    return np.concatenate([resid[s:s + block] for s in starts])[:n]


def bootstrap_curves_joint_runs(groups: Mapping[object, Sequence[Curve]], fits: Mapping[object, CurveFit],
                                n_boot: int = 50, seed: int = 0, n_starts: int = 0
                                ) -> list[dict[object, CurveFit]]:
    """Refits of the joint law on resamples inside each size, every size kept: a size with two or more units
    (independent runs, or WSD trunks each with its branches: Curve.unit) has its units drawn with
    replacement; a size that is one unit (the curves design: one trunk per size) has each of its curves'
    log residuals from the joint fit resampled in blocks (_block_resample) onto the fitted curve. Each refit
    starts from the fit (plus `n_starts` grid starts). The scatter of whole sizes around the scaling law is
    not in these refits (one trunk per size shows none): scaling.analysis.size_levels adds it.
    Returns one {key: CurveFit} per refit that converged."""
    keys = list(groups)
    delta = fits[keys[0]].delta
    start = _theta(keys, fits)
    units = {key: list(dict.fromkeys(c.unit for c in groups[key])) for key in keys}
    # A one-unit size's measured points, fitted curve and log residuals: the same in every replicate.
    fitted = {key: [_fitted(c, fits[key]) for c in groups[key]] for key in keys if len(units[key]) < 2}
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        drawn_groups, weights = [], []
        for key in keys:
            curves = list(groups[key])
            if len(units[key]) >= 2:
                drawn = rng.integers(0, len(units[key]), len(units[key]))
                count = {u: int((drawn == i).sum()) for i, u in enumerate(units[key])}
                drawn_groups.append(curves)
                weights.append([float(count[c.unit]) for c in curves])
                continue
            perturbed = [replace(c, steps=steps, loss=curve * np.exp(_block_resample(resid, rng)))
                         for c, (steps, curve, resid) in zip(curves, fitted[key]) if len(steps)]
            drawn_groups.append(perturbed)
            weights.append([1.0] * len(perturbed))
        problem = _Joint(drawn_groups)
        problem.weights = [np.array([w[j] for j in kept]) for w, kept in zip(weights, problem.kept)]
        theta = _fit(problem, n_starts, delta, extra=start)
        if theta is not None:
            out.append(_fits(problem, keys, groups, theta, delta))
    return out
