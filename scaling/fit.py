"""Compatibility module: the fitting code now lives in the package `scaling.analysis` (see its docstring).

`from scaling.fit import X` keeps working for every name this module had (public and the private helpers
tests use), and for the points API (`Points`, `select_points`). Setting a constant here, as tests do with
`monkeypatch.setattr(scaling.fit, "LARGE_FIT_POINTS", 8)`, sets it in the module that reads it, so a patch
of this module still changes what the fits do. New code imports from `scaling.analysis`.
"""

from __future__ import annotations

import sys
import types

from scaling.analysis._blas import (  # noqa: F401
    _blas_single_thread,
)
from scaling.analysis.points import (  # noqa: F401
    _check_positive,
    fit_points,
    FLOPS_PER_PARAM_TOKEN,
    keep_best_lr,
    mean_over_seeds,
    Points,
    points_of,
    read_points_csv,
    rows_for_fit,
    seed_spread,
    select_done,
    select_points,
    split_by_arch,
)
from scaling.analysis.approach3 import (  # noqa: F401
    _bootstrap_chunk,
    _BOX_EPS,
    _check_inputs,
    _compute_optimal,
    _distinct_optima,
    _distinct_rows,
    _huber,
    _LBFGS_OPTIONS,
    _log_predict,
    _minimize_from,
    _objective_and_grad,
    _objective_grid,
    _params_from_theta,
    _THETA_BOUNDS,
    _theta_from_params,
    _THETA_NAMES,
    BOOT_E_FRACTIONS,
    BOOT_OTHER_OPTIMA,
    ChinchillaLaw,
    hoffmann_grid,
    LawParams,
    MIN_POINTS_APPROACH3,
    PARAM_NAMES,
)
from scaling.analysis.approaches import (  # noqa: F401
    _fit_slices,
    _planned_centre,
    _ViaPowerLaw,
    budgets_of,
    EDGE_MESSAGE,
    ENVELOPE_MIN_BUDGETS,
    EnvelopeResult,
    fit_envelope,
    fit_isoflop,
    fit_loss_vs_params,
    fit_loss_vs_tokens,
    fit_power_law,
    group_by_relative,
    is_isoflop_design,
    IsoFlopResult,
    OFF_CENTRE_MESSAGE,
    PowerLawFit,
    SaturatingPowerLaw,
    SliceFits,
)
from scaling.analysis.identify import (  # noqa: F401
    _theta_samples,
    A_EDGE,
    A_MAX_WIDTH,
    AT_BOX_SHARE,
    identification,
    N_OPT_MAX_FACTOR,
    NOT_IDENTIFIED_FACTOR,
    optimum_at,
    OUTLIER_MIN_REL,
    OUTLIER_Z,
    outlying_runs,
)
from scaling.analysis.report import (  # noqa: F401
    _records,
    compute_optimal_table,
    DEFAULT_BUDGETS,
    fit_sweep,
    FitReport,
    holdout_check,
    HoldoutResult,
    LARGE_FIT_POINTS,
)
from scaling.analysis import _blas, approach3, approaches, identify, points, report

_HOMES = (_blas, points, approach3, approaches, identify, report)


class _ForwardingModule(types.ModuleType):
    """This module, with attribute assignment forwarded to the analysis module that defines the name."""

    def __setattr__(self, name: str, value: object) -> None:
        for home in _HOMES:
            if name in vars(home):
                setattr(home, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _ForwardingModule
