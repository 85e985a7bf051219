"""How far a fitted law is read beyond the compute of the runs it was fitted on.

A law fitted on runs of 1e11-4e12 FLOPs says something at 1e13 and little at 1e25. Every table and figure
that reads a fitted law at other budgets marks the budgets past EXTRAPOLATION_FACTOR times the data's
range as extrapolated (compute-optimal tables, fit.json, `scaling compare`, the plan's windows centred on a
pilot's law), and figures draw the law solid over the data's range, dashed with its bootstrap band beyond.

The data's range is in C = 6ND, the units compute_optimal reads budgets in (Hoffmann et al. 2022, eq. 4);
a fitted ChinchillaLaw records it as `data_flops_` (min, max). Published laws carry none: their tables are
not marked.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["EXTRAPOLATION_FACTOR", "beyond", "data_flops", "extrapolated", "in_data_range", "describe_range"]

EXTRAPOLATION_FACTOR = 10.0
"""A budget more than this factor above the largest (or below the smallest) compute C = 6ND of the runs a law
was fitted on is an extrapolation, and is marked so. One decade is a convention, not a derived bound: within
it the bootstrap band is still a fair summary of the fit's uncertainty; past it the form of the law itself
is what is being trusted, which no interval from these runs can check."""


def data_flops(law: object) -> tuple[float, float] | None:
    """The (smallest, largest) compute C = 6ND of the points `law` was fitted on; None when unknown (a
    published or stated law, or a law without one, such as Approach 1 and 2 power laws)."""
    span = getattr(law, "data_flops_", None)
    if span is None:
        span = getattr(getattr(law, "law", None), "data_flops_", None)  # a FitReport
    return None if span is None else (float(span[0]), float(span[1]))


def extrapolated(law: object, budgets: Iterable[float] | float,
                 factor: float = EXTRAPOLATION_FACTOR) -> np.ndarray | None:
    """Per budget: True past `factor` times the data's range (either side); None when the range is unknown."""
    return beyond(data_flops(law), budgets, factor)


def beyond(span: tuple[float, float] | None, budgets: Iterable[float] | float,
           factor: float = EXTRAPOLATION_FACTOR) -> np.ndarray | None:
    """Per budget: True past `factor` times the compute range `span` = (smallest, largest), either side; None
    when the range is unknown."""
    if span is None:
        return None
    c = np.asarray(budgets if np.ndim(budgets) else [budgets], dtype=float)
    return (c > span[1] * factor) | (c < span[0] / factor)


def in_data_range(law: object, budgets: Iterable[float]) -> np.ndarray | None:
    """Per budget: True inside the data's compute range (where figures draw the law solid)."""
    span = data_flops(law)
    if span is None:
        return None
    c = np.asarray(list(budgets), dtype=float)
    # the ends themselves are data: allow a rounding hair either side
    return (c >= span[0] * (1 - 1e-9)) & (c <= span[1] * (1 + 1e-9))


def describe_range(law: object, factor: float = EXTRAPOLATION_FACTOR) -> str:
    """One line for tables: the data's compute range and from where on rows are marked extrapolated."""
    span = data_flops(law)
    if span is None:
        return "data range unknown (a stated or published law): rows are not checked for extrapolation"
    return (f"data: C = 6ND from {span[0]:.3g} to {span[1]:.3g} FLOPs; budgets past {factor:g}x that range "
            f"(above {span[1] * factor:.3g} or below {span[0] / factor:.3g}) are marked extrapolated")
