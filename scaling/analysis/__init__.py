"""The analysis side of `scaling`: from a frame of runs to fitted laws, reports, figures and comparisons.

Torch-free (tests/test_points.py checks it): it reads results folders and CSVs, never trains. One module
per responsibility, each depending only on those above it:

- `points`: reading CSVs of runs and choosing the points (`select_points`: done runs, best LR, seed mean).
  Points are chosen ONCE per fit: `fit_sweep` and the pipeline pass a `Points` to every fit, table and
  figure, and the fits given a `Points` use its rows as they are (`rows_for_fit`). Figures given a plain
  frame choose the points `fit_sweep` would (`points_of`), so a figure titled after a fit never shows runs
  the fit left out (best-LR selection, seed means).
- `approach3`: Chinchilla's parametric law (ChinchillaLaw, LawParams), its Huber objective, grid of starts
  and bootstrap; the largest and most delicate estimator, kept whole in one file.
- `approaches`: the other estimators, which end in power laws N_opt ~ C^a: the envelope (Approach 1),
  IsoFLOP parabolas (Approach 2), Kaplan's one-variable slices, and the log-log power-law fit they share.
- `identify`: whether an Approach 3 fit is identified (per parameter, N_opt at the largest compute) and
  which runs lie off it; judgements on a fitted law, apart from fitting it.
- `report`: `fit_sweep` (every fit a sweep supports), FitReport (text, fit.json), the compute-optimal
  table and the holdout check.
- `pipeline`: what the CLI verbs fit, plot and compare do: read a source, fit per architecture family,
  write fit.json, runs.csv and figures, print the reports. The CLI parses arguments and calls it.
- `suggest`: sequential design, the runs expected to narrow N_opt(C*)'s interval most per FLOP (what
  `scaling suggest` proposes; `scaling/suggest.py` turns a sweep into candidates and writes the extended file).
  Imported by name, not re-exported here.
- `_blas`: the OpenBLAS thread limit the optimizer loops run under.

Figures (`scaling/plot.py`) and published laws (`scaling/compare.py`) stay where they were: they take a
report, laws or points and draw or tabulate them, other branches edit them, and their import paths are in
analysis scripts and the README. `scaling.fit` remains as a re-exporting compatibility module.

References:
- Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models" (Chinchilla), arXiv 2203.15556.
- Besiroglu, Erdil, Barnett, You 2024, "Chinchilla Scaling: A replication attempt", arXiv 2404.10102.
- Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv 2001.08361.
"""

from __future__ import annotations

from scaling.analysis import approach3, approaches, identify, points, report
from scaling.analysis.approach3 import *  # noqa: F403
from scaling.analysis.approaches import *  # noqa: F403
from scaling.analysis.identify import *  # noqa: F403
from scaling.analysis.points import *  # noqa: F403
from scaling.analysis.report import *  # noqa: F403

__all__ = [*points.__all__, *approach3.__all__, *approaches.__all__, *identify.__all__, *report.__all__]
