"""scaling: plan, launch, train, fit and compare scaling-law sweeps.

The public API, imported lazily so `import scaling` stays cheap (no torch, no scipy until used):
    load_sweep, plan_sweep, launch, sweep_status, load_results, load_curves, ChinchillaLaw, fit_sweep,
    read_points_csv, compute_optimal (a DataFrame per budget; ChinchillaLaw.save/load keep a fitted law)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_sweep": "scaling.config",
    "SweepConfig": "scaling.config",
    "plan_sweep": "scaling.plan",
    "RunSpec": "scaling.plan",
    "launch": "scaling.launch",
    "sweep_status": "scaling.launch",
    "load_results": "scaling.results",
    "load_curves": "scaling.results",
    "compute_optimal": "scaling.analysis.report",
    "ChinchillaLaw": "scaling.analysis",
    "fit_sweep": "scaling.analysis",
    "read_points_csv": "scaling.analysis",
    "train_run": "scaling.train",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'scaling' has no attribute {name!r}")
