"""Compatibility module: the fitting code now lives in the package `scaling.analysis` (see its docstring).

`from scaling.fit import X` keeps working for every name this module had (public and the private helpers
tests use), and for the points API (`Points`, `select_points`). Setting a constant here, as tests do with
`monkeypatch.setattr(scaling.fit, "LARGE_FIT_POINTS", 8)`, sets it in the module that reads it, so a patch
of this module still changes what the fits do. New code imports from `scaling.analysis`.
"""

from __future__ import annotations

import sys
import types

from scaling.analysis import *  # noqa: F403
from scaling.analysis._blas import (  # noqa: F401 (private helpers, still importable from here)
    _blas_single_thread,
)
from scaling.analysis.points import (  # noqa: F401 (private helpers, still importable from here)
    _check_positive,
)
from scaling.analysis.approach3 import (  # noqa: F401 (private helpers, still importable from here)
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
)
from scaling.analysis.approaches import (  # noqa: F401 (private helpers, still importable from here)
    _fit_slices,
    _planned_centre,
    _ViaPowerLaw,
)
from scaling.analysis.identify import (  # noqa: F401 (private helpers, still importable from here)
    _theta_samples,
)
from scaling.analysis.report import (  # noqa: F401 (private helpers, still importable from here)
    _records,
)
from scaling import analysis
from scaling.analysis import _blas, approach3, approaches, identify, points, report

_HOMES = (_blas, points, approach3, approaches, identify, report)


class _ForwardingModule(types.ModuleType):
    """This module, with attribute assignment forwarded to the analysis module that defines the name."""

    def __setattr__(self, name: str, value: object) -> None:
        for home in _HOMES:
            if name in vars(home):
                setattr(home, name, value)
        super().__setattr__(name, value)


__all__ = analysis.__all__

sys.modules[__name__].__class__ = _ForwardingModule
