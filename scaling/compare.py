"""Published scaling laws as data, and side-by-side compute-optimal tables.

Every law here has `compute_optimal(C) -> (N_opt, D_opt)` with C in FLOPs and N in parameters,
like `scaling.fit.ChinchillaLaw` and the Approach 1/2 results, so tables and plots treat fitted
and published laws alike. Values are copied from the papers, cited where defined
(the Chinchilla and Besiroglu et al. fits side by side: analysis/README.md).
The data-constrained law of Muennighoff et al. 2023 needs unique tokens too: scaling.laws.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.errors import FitError
from scaling.fit import ChinchillaLaw, PowerLawFit, compute_optimal_table

PF_DAY_FLOPS = 1e15 * 24 * 3600
"""One petaflop/s-day, Kaplan et al. 2020's compute unit: 8.64e19 FLOPs."""


@dataclass(frozen=True)
class KaplanLaw:
    """Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv 2001.08361.

    Loss: eq. 1.5, L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D with N the
    non-embedding parameters and D tokens (Table 2 / sec. 1.2: alpha_N 0.076, alpha_D 0.095,
    N_c 8.8e13, D_c 5.4e13); loss in nats/token of their WebText2 BPE, so its level is not
    comparable to other corpora, only its shape.

    Compute-efficient frontier: sec. 6.1 / fig. 14, N_opt = 1.3e9 (C_min / PF-day)^0.73, and with
    C = 6 N D (their C ~ 6 N B S, non-embedding) D_opt = C / (6 N_opt) ~ C^0.27.
    Approximation: we feed total parameters where Kaplan means non-embedding parameters; the
    difference is the embedding matrix, small at the billions of parameters where the frontier is
    compared (and the source of bias at small scale, Pearce & Song 2024).
    """

    alpha_n: float = 0.076
    alpha_d: float = 0.095
    n_c: float = 8.8e13
    d_c: float = 5.4e13
    n_opt_coefficient: float = 1.3e9
    """N_opt at C_min = 1 PF-day."""
    a: float = 0.73
    """N_opt ~ C^a."""

    @property
    def b(self) -> float:
        """D_opt ~ C^(1 - a) follows from C = 6 N D."""
        return 1.0 - self.a

    def predict(self, N: float | np.ndarray, D: float | np.ndarray) -> np.ndarray:
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return ((self.n_c / N) ** (self.alpha_n / self.alpha_d) + self.d_c / D) ** self.alpha_d

    def compute_optimal(self, C: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        C = np.asarray(C, dtype=float)
        n_opt = self.n_opt_coefficient * (C / PF_DAY_FLOPS) ** self.a
        return n_opt, C / (6.0 * n_opt)


# Hoffmann et al. 2022, App. D.2 (eq. 10), as printed.
CHINCHILLA_PRINTED = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
# The same fit, unrounded, from the paper's TeX source (Besiroglu et al. 2024).
CHINCHILLA_TEX = {"E": 1.6934, "A": 406.4, "B": 410.7, "alpha": 0.3392, "beta": 0.2849}
# Besiroglu, Erdil, Barnett, You 2024, arXiv 2404.10102: refit of the extracted fig. 4 data.
BESIROGLU_2024 = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}

# Hoffmann et al. 2022, Table 3 (Approach 1 projections): 10B parameters, 1.23e22 FLOPs,
# 205.1B tokens, with Table 2's Approach 1 exponents a = b = 0.50. ~20 tokens/parameter.
_T3_N, _T3_D = 10e9, 205.1e9
_T3_C = 6.0 * _T3_N * _T3_D
CHINCHILLA_APPROACH1 = PowerLawFit(k_n=_T3_N / math.sqrt(_T3_C), a=0.5, k_d=_T3_D / math.sqrt(_T3_C), b=0.5)


def published_laws() -> dict[str, object]:
    """The published laws, keyed by a short label, each with compute_optimal(C)."""
    return {
        "Kaplan 2020": KaplanLaw(),
        "Chinchilla 2022 (Approach 1, Table 3)": CHINCHILLA_APPROACH1,
        "Chinchilla 2022 (Approach 3, printed)": ChinchillaLaw.from_params(**CHINCHILLA_PRINTED),
        "Chinchilla 2022 (Approach 3, TeX)": ChinchillaLaw.from_params(**CHINCHILLA_TEX),
        "Besiroglu 2024": ChinchillaLaw.from_params(**BESIROGLU_2024),
    }


def law_of(obj: object) -> object:
    """obj itself when it has compute_optimal(C), else the law inside it (a FitReport's `law`)."""
    if hasattr(obj, "compute_optimal"):
        return obj
    law = getattr(obj, "law", None)
    if law is None or not hasattr(law, "compute_optimal"):
        raise FitError(f"{type(obj).__name__} has no fitted law with compute_optimal(C)")
    return law


def compare_table(laws: Mapping[str, object],
                  budgets: Iterable[float] = tuple(np.logspace(15, 25, 11)),
                  level: float = 0.95) -> pd.DataFrame:
    """N_opt, D_opt and tokens/param of each law at each budget (FLOPs), side by side.

    One row per budget; columns `flops` and `<label>/n_opt`, `<label>/d_opt`,
    `<label>/tokens_per_param`, plus `<label>/n_opt_lo` .. `/d_opt_hi` for laws with bootstrap
    samples. Laws may be ChinchillaLaw, FitReport, Approach 1/2 results or published laws.
    """
    budgets = np.asarray(list(budgets), dtype=float)
    out = pd.DataFrame({"flops": budgets})
    for label, obj in laws.items():
        table = compute_optimal_table(law_of(obj), budgets, level)
        for col in table.columns.drop("flops"):
            out[f"{label}/{col}"] = table[col].to_numpy()
    return out


def source_labels(paths: Iterable[str | Path], taken: Iterable[str] = ()) -> list[str]:
    """One distinct label per source path: its name ("runs" for A/runs.csv), then the parent folder for names
    that collide ("A/runs", "B/runs"), then a counter ("runs #2"); never a label in `taken` (published laws).

    Labels key the law table and plot legends, so two sources labelled alike would silently keep one law.
    """
    paths = [Path(p) for p in paths]
    taken = set(taken)
    names = [p.name or str(p) for p in paths]
    labels = [("/".join(x for x in (p.parent.name, p.name) if x) or str(p))
              if names.count(name) > 1 or name in taken else name for p, name in zip(paths, names)]
    out: list[str] = []
    for label in labels:
        unique, n = label, 1
        while unique in out or unique in taken:
            n += 1
            unique = f"{label} #{n}"
        out.append(unique)
    return out
