"""A fitted law read at budgets the user names: N_opt, D_opt and the loss at each, with bootstrap intervals.

`scaling fit SOURCE --at C [C ...]` and `scaling suggest` (at its C*) print one line per budget:

    at C = 1e+21 FLOPs (C = 6ND): N_opt = 4.2e+09 [1.9e+09, 9.6e+09], D_opt = 4e+10 [...], loss = 2.06 [...]
    (95% bootstrap intervals, 1000 resamples); EXTRAPOLATED: 250x the largest run's compute (4e+18), past 10x

N_opt and D_opt minimise L(N, D) = E + A/N^alpha + B/D^beta subject to C = 6ND (Hoffmann et al. 2022, eq. 4);
the loss is L(N_opt, D_opt), the lowest loss the law expects at C. Each interval is the percentile interval
over the bootstrap refits (each refit's own N_opt, D_opt and loss at C), as `scaling fit`'s compute-optimal
table draws its bands (the sizes' quantiles taken in ln N, ln D, as `scaling suggest` takes N_opt(C*)'s: with
few resamples the interpolated ends differ in the third digit from the table's, with 1000 not visibly). A budget past EXTRAPOLATION_FACTOR (scaling.analysis.extrapolation, the constant every
table and figure uses) times the compute C = 6ND of the largest run the law was fitted on, or below the
smallest by the same factor, is marked extrapolated with how far it is. Pure and torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from scaling.analysis.approach3 import PARAM_NAMES, ChinchillaLaw, compute_optimal_sizes
from scaling.analysis.extrapolation import EXTRAPOLATION_FACTOR, beyond, data_flops
from scaling.errors import FitError

__all__ = ["AtCompute", "at_compute"]


@dataclass(frozen=True)
class AtCompute:
    """The law at one budget: point values, their `level` bootstrap intervals (NaN without a bootstrap) and
    where the budget sits relative to the compute of the runs the law was fitted on."""

    flops: float
    n_opt: float
    d_opt: float
    loss: float
    n_lo: float = math.nan
    n_hi: float = math.nan
    d_lo: float = math.nan
    d_hi: float = math.nan
    loss_lo: float = math.nan
    loss_hi: float = math.nan
    level: float = 0.95
    n_boot: int = 0
    data_flops: tuple[float, float] | None = None
    """(smallest, largest) C = 6ND of the fitted runs; None when unknown (a stated or published law)."""
    factor: float = EXTRAPOLATION_FACTOR

    @property
    def extrapolated(self) -> bool | None:
        """True past `factor` times the data's range (either side); None when the range is unknown."""
        marks = beyond(self.data_flops, self.flops, self.factor)
        return None if marks is None else bool(marks[0])

    def describe(self) -> str:
        """One line: the budget, N_opt, D_opt and the loss with their intervals, and the extrapolation mark."""
        def value(x: float, lo: float, hi: float, fmt: str) -> str:
            band = f" [{lo:{fmt}}, {hi:{fmt}}]" if self.n_boot else ""
            return f"{x:{fmt}}{band}"

        pct = f"{100 * self.level:g}%"
        how = (f"{pct} bootstrap intervals, {self.n_boot} resamples" if self.n_boot else
               "no intervals: the law has no bootstrap (--n-boot 0)")
        line = (f"at C = {self.flops:.3g} FLOPs (C = 6ND): N_opt = {value(self.n_opt, self.n_lo, self.n_hi, '.3g')}, "
                f"D_opt = {value(self.d_opt, self.d_lo, self.d_hi, '.3g')}, "
                f"loss = {value(self.loss, self.loss_lo, self.loss_hi, '.4g')} ({how})")
        if self.data_flops is None:
            return line + "; data range unknown: not checked for extrapolation"
        lo, hi = self.data_flops
        if self.flops > hi * self.factor:
            return (line + f"; EXTRAPOLATED: {self.flops / hi:.3g}x the largest run's compute ({hi:.3g} FLOPs), "
                    f"past the {self.factor:g}x within which a fit is read")
        if self.flops < lo / self.factor:
            return (line + f"; EXTRAPOLATED: 1/{lo / self.flops:.3g} of the smallest run's compute ({lo:.3g} FLOPs), "
                    f"past the {self.factor:g}x within which a fit is read")
        return line + f"; within {self.factor:g}x of the runs' compute ({lo:.3g} to {hi:.3g} FLOPs)"


def _optimum(E: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: np.ndarray, beta: np.ndarray, C: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N_opt, D_opt (approach3.compute_optimal_sizes) and the law's loss there; an unidentified member gives 0
    or inf, kept out of the quantiles."""
    N, D = compute_optimal_sizes(A, B, alpha, beta, C)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return N, D, E + A / N ** alpha + B / D ** beta


def at_compute(law: ChinchillaLaw, budgets: Iterable[float], level: float = 0.95,
               factor: float = EXTRAPOLATION_FACTOR) -> list[AtCompute]:
    """N_opt, D_opt and the compute-optimal loss of a fitted law at each budget (FLOPs, C = 6ND), with `level`
    percentile intervals over its bootstrap refits when it has them."""
    if not hasattr(law, "params_"):
        raise FitError("the law is not fitted")
    out = []
    p = law.params_
    members = getattr(law, "bootstrap_params_", None)
    q = [(1 - level) / 2, (1 + level) / 2]
    for C in budgets:
        C = float(C)
        if not (math.isfinite(C) and C > 0):
            raise FitError(f"budget {C!r}: must be a finite number of FLOPs > 0")
        N, D, L = (float(x) for x in _optimum(*(np.float64(v) for v in (p.E, p.A, p.B, p.alpha, p.beta)), C))
        bands: dict[str, float] = {}
        n_boot = 0
        if members is not None and len(members):
            cols = [members[c].to_numpy(float) for c in PARAM_NAMES]
            Nb, Db, Lb = _optimum(*cols, C)
            ok = np.isfinite(Nb) & np.isfinite(Db) & np.isfinite(Lb) & (Nb > 0) & (Db > 0)
            if ok.any():
                n_boot = len(members)
                # sizes in ln, as `scaling suggest` takes N_opt(C*)'s interval (the ends of a few resamples'
                # interval then agree to the digit); the loss as it is
                (bands["n_lo"], bands["n_hi"]), (bands["d_lo"], bands["d_hi"]) = (
                    tuple(float(v) for v in np.exp(np.quantile(np.log(x[ok]), q))) for x in (Nb, Db))
                bands["loss_lo"], bands["loss_hi"] = (float(v) for v in np.quantile(Lb[ok], q))
        out.append(AtCompute(flops=C, n_opt=N, d_opt=D, loss=L, level=level, n_boot=n_boot,
                             data_flops=data_flops(law), factor=factor, **bands))
    return out
