"""Published laws beside fitted ones: the law objects of scaling.laws' data, and side-by-side compute-optimal tables.

Every law here has `compute_optimal(C) -> (N_opt, D_opt)` with C in FLOPs and N in parameters,
like `scaling.analysis.ChinchillaLaw` and the Approach 1/2 results, so tables and plots treat fitted
and published laws alike. The published values (cited where defined) live in scaling.laws, with the
data-constrained law of Muennighoff et al. 2023, which needs unique tokens too
(the Chinchilla and Besiroglu et al. fits side by side: analysis/README.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.analysis import ChinchillaLaw, PowerLawFit, compute_optimal_table
from scaling.errors import FitError
from scaling.laws import (BESIROGLU_2024, CHINCHILLA_APPROACH1_PARAMS, CHINCHILLA_PRINTED, CHINCHILLA_TEX,  # noqa: F401
                          PF_DAY_FLOPS, PUBLISHED_LAWS, KaplanLaw)

CHINCHILLA_APPROACH1 = PowerLawFit(**CHINCHILLA_APPROACH1_PARAMS)
"""Hoffmann et al. 2022's Approach 1 projection (Table 3) as a power law (scaling.laws)."""

_KINDS = {"kaplan": KaplanLaw, "power_law": PowerLawFit, "chinchilla": ChinchillaLaw.from_params}


def published_laws() -> dict[str, object]:
    """The published laws, keyed by a short label, each with compute_optimal(C) (data: scaling.laws.PUBLISHED_LAWS)."""
    return {label: _KINDS[kind](**params) for label, (kind, params) in PUBLISHED_LAWS.items()}


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
