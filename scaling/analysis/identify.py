"""Whether an Approach 3 fit is identified: per-parameter verdicts, N_opt's band at one budget, outlying runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import binom, binomtest

from scaling.analysis.approach3 import _THETA_NAMES, PARAM_NAMES, ChinchillaLaw, _on_box

__all__ = [
    "NOT_IDENTIFIED_FACTOR",
    "AT_BOX_SHARE",
    "A_MAX_WIDTH",
    "A_EDGE",
    "N_OPT_MAX_FACTOR",
    "OUTLIER_Z",
    "OUTLIER_MIN_REL",
    "MIN_N_BOOT",
    "MC_CONFIDENCE",
    "BORDERLINE",
    "verdict_of",
    "n_boot_warning",
    "identification",
    "optimum_at",
    "outlying_runs",
]

NOT_IDENTIFIED_FACTOR: dict[str, float] = {"E": 10.0, "A": 100.0, "B": 100.0, "alpha": 3.0, "beta": 3.0}
"""A parameter is reported as not identified when its 95% bootstrap interval spans more than this factor
(hi / lo): the floor E known only to within 10x, the coefficients A and B to within two decades, or the
exponents to within 3x (Chinchilla's refit pins alpha to 1.18x and A to 2.6x, Besiroglu et al. 2024)."""
AT_BOX_SHARE = 0.025
"""...or when more than this share of its bootstrap refits (one tail of a 95% interval) end on the search box."""
A_MAX_WIDTH = 0.35
"""The exponent a of N_opt ~ C^a counts as identified when its 95% interval is finite, stays off 0 and 1 by
A_EDGE, and is at most this wide: a wider interval around the published values holds both Kaplan et al. 2020's
0.73 and Hoffmann et al. 2022's 0.46 at once, so it cannot tell the published laws apart."""
A_EDGE = 0.05
"""...an interval reaching within this of 0 or 1 means alpha and beta trade off without limit."""
N_OPT_MAX_FACTOR = 3.0
"""N_opt at the sweep's largest compute counts as identified when its 95% band spans at most this factor."""
MIN_N_BOOT = 200
"""Below this many bootstrap resamples a 95% interval rests on its 2-3 most extreme refits, so its verdict
flips with the resample count and seed (issue 23: E = 0.746 [0.140, 0.859] with 100 resamples,
[4.3e-09, 0.87] with 200, on the same 24 runs): `n_boot_warning` says so."""
MC_CONFIDENCE = 0.95
"""Each verdict is taken on the Monte-Carlo error of its statistic as well as on its value: an interval
endpoint (a quantile of the resamples) is known only to within the order statistics of the binomial
interval of its rank (ranks Binomial(n, q) covers with this probability), and a share of refits on the
search box to within its exact binomial interval. A verdict that the other end of that range would flip is
reported as BORDERLINE, not as identified or not."""
BORDERLINE = "borderline (raise --n-boot)"
"""The start of a verdict that flips within its Monte-Carlo error; `verdict_of` tells the three apart."""
OUTLIER_Z = 5.0
"""A run is outlying when its log residual from the Approach 3 law is more than OUTLIER_Z robust standard
deviations (1.4826 x the median absolute deviation) from the median residual..."""
OUTLIER_MIN_REL = 0.01
"""...and more than 1% off the law in loss (so a near-noiseless fit does not flag rounding)."""


def _theta_samples(boot: pd.DataFrame) -> np.ndarray:
    """Bootstrap parameters as the optimizer's theta = (log A, log B, log E, alpha, beta), shape (n, 5)."""
    with np.errstate(divide="ignore"):
        return np.column_stack([np.log(boot["A"]), np.log(boot["B"]), np.log(boot["E"]), boot["alpha"],
                                boot["beta"]])


def verdict_of(why: str) -> str:
    """"identified", "borderline" or "not identified", from one value of `identification`."""
    if not why:
        return "identified"
    return "borderline" if why.startswith(BORDERLINE) else "not identified"


def n_boot_warning(n_boot: int) -> str:
    """A warning when 0 < n_boot < MIN_N_BOOT ("" otherwise)."""
    if 0 < n_boot < MIN_N_BOOT:
        return (f"--n-boot {n_boot} is below {MIN_N_BOOT}: 95% intervals rest on the few most extreme resamples "
                f"and their verdicts may change with the resample count or seed (many read 'borderline'); use "
                f"--n-boot {MIN_N_BOOT} or more (the default is 1000)")
    return ""


def _endpoint_levels(n: int, level: float, confidence: float = MC_CONFIDENCE) -> tuple[float, float]:
    """(wide, narrow) interval levels bracketing a `level` percentile interval's endpoints within their
    Monte-Carlo error on n resamples.

    The lower endpoint is the q = (1 - level) / 2 quantile; the rank of the true quantile among n resamples is
    Binomial(n, q), so with probability `confidence` it lies between the order statistics of ranks l and u
    (the distribution-free interval for a quantile). The interval at level `wide` has the rank-l and
    rank-(n+1-l) resamples as its endpoints (the upper endpoint is the mirror image), at `narrow` the rank-u
    ones: np.quantile's position of rank r is (r - 1) / (n - 1).
    """
    q = (1 - level) / 2
    alpha = 1 - confidence
    lo_rank = max(int(binom.ppf(alpha / 2, n, q)), 1)
    hi_rank = min(int(binom.ppf(1 - alpha / 2, n, q)) + 1, n)
    if n < 2:
        return 1.0, 0.0
    return 1 - 2 * (lo_rank - 1) / (n - 1), max(1 - 2 * (hi_rank - 1) / (n - 1), 0.0)


def _three_way(ok_wide: bool, ok_narrow: bool) -> str:
    """Identified when even the widest plausible interval passes, not when even the narrowest fails."""
    return "identified" if ok_wide else ("not identified" if not ok_narrow else "borderline")


def _share_verdict(k: int, n: int, threshold: float, confidence: float = MC_CONFIDENCE) -> str:
    """A share k / n of refits against `threshold`, on its exact binomial interval: "identified" (surely at
    most threshold), "not identified" (surely above), else "borderline". No refit at all on the box (k = 0)
    is "identified" at any n: nothing points at the box, and the interval's own spread is checked apart."""
    if k == 0 or n == 0:
        return "identified"
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return "identified" if ci.high <= threshold else ("not identified" if ci.low > threshold else "borderline")


def identification(law: ChinchillaLaw, done: pd.DataFrame, level: float = 0.95) -> dict[str, str]:
    """For E, A, B, alpha, beta (and a, with a bootstrap): "" where the data pin it, else why not and what would.

    Not identified: the point estimate sits on the search box, or E is below 5% of the lowest loss (the
    sweep does not approach the floor), or the bootstrap interval spans more than NOT_IDENTIFIED_FACTOR,
    or more than AT_BOX_SHARE of the refits end on the box. Small sweeps far above the loss floor leave
    E at ~0 and A, alpha trading off along a ridge; the point fit is then still the optimum, but its
    extrapolations are not to be trusted, and the report says so parameter by parameter.
    """
    n_lo, n_hi = float(done["n_params"].min()), float(done["n_params"].max())
    d_lo, d_hi = float(done["n_tokens"].min()), float(done["n_tokens"].max())
    min_loss = float(done["loss"].min())
    remedy_n = (f"more model sizes over a wider range of N (now {n_lo:.3g} to {n_hi:.3g}, {n_hi / n_lo:.2g}x), "
                "each trained long enough that its size limits the loss")
    remedy_d = (f"more token budgets over a wider range of D (now {d_lo:.3g} to {d_hi:.3g}, "
                f"{d_hi / d_lo:.2g}x) for several sizes")
    remedy = {"E": f"runs nearer the loss floor: longer token budgets for the largest sizes (lowest loss "
                   f"{min_loss:.3g})", "A": remedy_n, "alpha": remedy_n, "B": remedy_d, "beta": remedy_d}
    column = {name: _THETA_NAMES.index(t) for name, t in
              (("A", "a"), ("B", "b"), ("E", "e"), ("alpha", "alpha"), ("beta", "beta"))}
    estimate_on_box = _on_box(law.theta_) if hasattr(law, "theta_") else None
    boot = getattr(law, "bootstrap_params_", None)
    if boot is not None and len(getattr(law, "bootstrap_degenerate_", ())):
        # Refits on a degenerate law (alpha or beta = 0, on the box) are out of the intervals but still count
        # here: they are resamples whose data did not pin that parameter.
        boot = pd.concat([boot[list(PARAM_NAMES)], law.bootstrap_degenerate_])
    refits_on_box = _on_box(_theta_samples(boot)) if boot is not None and len(boot) > 1 else None
    values = law.params_.to_dict()
    n_boot = len(law.bootstrap_params_) if boot is not None else 0
    wide, narrow = _endpoint_levels(max(n_boot, 1), level)
    out: dict[str, str] = {}
    for name in PARAM_NAMES:
        why = ""
        if estimate_on_box is not None and estimate_on_box[column[name]]:
            why = f"the fit ended on its search box ({name} = {values[name]:.3g})"
        elif name == "E" and values["E"] < 0.05 * min_loss:
            why = f"E = {values['E']:.3g} is near 0: the sweep stays far above the loss floor"
        elif refits_on_box is not None:
            k_box = int(refits_on_box[:, column[name]].sum())
            at_box = k_box / len(refits_on_box)
            lo, hi = law.interval(name, level)
            factor = NOT_IDENTIFIED_FACTOR[name]

            def ok(interval: tuple[float, float]) -> bool:
                return interval[0] > 0 and math.isfinite(interval[1]) and interval[1] / interval[0] <= factor

            span = f"{hi / lo:.2g}x" if lo > 0 and math.isfinite(hi) else "to 0 or infinity"
            box = _share_verdict(k_box, len(refits_on_box), AT_BOX_SHARE)
            spread = _three_way(ok(law.interval(name, wide)), ok(law.interval(name, narrow)))
            if box == "not identified":
                why = f"{at_box:.0%} of the bootstrap refits end on the search box"
            elif spread == "not identified":
                why = f"its {level:.0%} interval [{lo:.3g}, {hi:.3g}] spans {span} (> {factor:g}x)"
            elif box == "borderline":
                why = (f"{BORDERLINE}: {k_box} of {len(refits_on_box)} bootstrap refits ({at_box:.1%}) end on the "
                       f"search box, within Monte-Carlo error of the {AT_BOX_SHARE:.1%} limit")
            elif spread == "borderline":
                why = (f"{BORDERLINE}: its {level:.0%} interval [{lo:.3g}, {hi:.3g}] spans {span}, and within its "
                       f"Monte-Carlo error on {n_boot} resamples the span could be on either side of {factor:g}x")
        out[name] = f"{why}; would pin it: {remedy[name]}" if why else ""
    if refits_on_box is not None:
        lo, hi = law.interval("a", level)

        def a_ok(interval: tuple[float, float]) -> bool:
            lo_, hi_ = interval
            return (math.isfinite(lo_) and math.isfinite(hi_) and hi_ - lo_ <= A_MAX_WIDTH and lo_ >= A_EDGE
                    and hi_ <= 1 - A_EDGE)

        verdict = _three_way(a_ok(law.interval("a", wide)), a_ok(law.interval("a", narrow)))
        remedy_a = ("would pin it: sizes on both sides of the compute-optimal size at budgets >= 10x apart (an "
                    "IsoFLOP design centred on each budget's optimum)")
        if verdict == "not identified":
            out["a"] = (f"its {level:.0%} interval [{lo:.3g}, {hi:.3g}] is wider than {A_MAX_WIDTH:g} or reaches "
                        f"within {A_EDGE:g} of 0 or 1; {remedy_a}")
        elif verdict == "borderline":
            out["a"] = (f"{BORDERLINE}: its {level:.0%} interval [{lo:.3g}, {hi:.3g}] is within Monte-Carlo error "
                        f"on {n_boot} resamples of the limits (width {A_MAX_WIDTH:g}, {A_EDGE:g} from 0 and 1); "
                        f"{remedy_a}")
        else:
            out["a"] = ""
    return out


def optimum_at(law: ChinchillaLaw, flops: float, level: float = 0.95) -> dict[str, float | bool]:
    """N_opt at one budget with its bootstrap band and whether the band is within N_OPT_MAX_FACTOR."""
    n_opt = float(np.asarray(law.compute_optimal(flops)[0]))
    out: dict[str, float | bool] = {"flops": float(flops), "n_opt": n_opt}
    if getattr(law, "bootstrap_params_", None) is not None:
        def factor_of(band_level: float) -> float:
            band = law.compute_optimal_interval(flops, band_level)
            lo_, hi_ = float(band["n_opt_lo"]), float(band["n_opt_hi"])
            return hi_ / lo_ if lo_ > 0 and math.isfinite(hi_) else math.inf

        band = law.compute_optimal_interval(flops, level)
        lo, hi = float(band["n_opt_lo"]), float(band["n_opt_hi"])
        factor = hi / lo if lo > 0 and math.isfinite(hi) else math.inf
        # The band is of the non-degenerate refits; when more than a tail's share of them had no N_opt at all,
        # the band understates what the data leave open.
        n_ok = len(law.bootstrap_params_)
        n_degenerate = getattr(law, "n_boot_degenerate_", 0)
        degenerate_share = n_degenerate / (n_degenerate + n_ok)
        wide, narrow = _endpoint_levels(n_ok, level)
        spread = _three_way(factor_of(wide) <= N_OPT_MAX_FACTOR, factor_of(narrow) <= N_OPT_MAX_FACTOR)
        share = _share_verdict(n_degenerate, n_degenerate + n_ok, AT_BOX_SHARE)
        verdict = ("not identified" if "not identified" in (spread, share) else
                   "borderline" if "borderline" in (spread, share) else "identified")
        # `identified` stays a plain yes/no (firmly identified); `verdict` adds the borderline case.
        out.update(n_opt_lo=lo, n_opt_hi=hi, factor=factor, degenerate_share=degenerate_share,
                   identified=verdict == "identified", verdict=verdict)
    return out


def outlying_runs(law: ChinchillaLaw, done: pd.DataFrame, z: float = OUTLIER_Z,
                  min_rel: float = OUTLIER_MIN_REL) -> pd.DataFrame:
    """Runs whose loss sits far off the fitted law (see OUTLIER_Z, OUTLIER_MIN_REL), worst first.

    Huber's loss already limits their pull on the fit; they are listed so a user can look at them (a
    diverging run that still finished, a data or evaluation bug, a wrong hyperparameter).
    """
    predicted = law.predict(done["n_params"].to_numpy(), done["n_tokens"].to_numpy())
    resid = np.log(done["loss"].to_numpy()) - np.log(predicted)
    centre = float(np.median(resid))
    scale = 1.4826 * float(np.median(np.abs(resid - centre)))
    robust_z = np.abs(resid - centre) / scale if scale > 0 else np.where(resid != centre, np.inf, 0.0)
    flag = (robust_z > z) & (np.abs(np.expm1(resid)) > min_rel)
    ids = done["run_id"].astype(str).to_numpy() if "run_id" in done else np.array(
        [f"row{i}" for i in range(len(done))])
    table = pd.DataFrame({"run_id": ids, "n_params": done["n_params"].to_numpy(),
                          "n_tokens": done["n_tokens"].to_numpy(), "loss": done["loss"].to_numpy(),
                          "predicted": predicted, "rel_error": np.expm1(resid), "robust_z": robust_z})
    return table[flag].sort_values("robust_z", ascending=False, kind="stable").reset_index(drop=True)

