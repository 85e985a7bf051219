"""The fits: from a frame of runs to fitted laws and their reports (pure functions and estimators, torch-free).

Torch-free (tests/test_layers.py checks it, with its place in the layers): it reads CSVs and run frames,
never trains, plans or plots, and imports nothing of `scaling` but errors and the run records (results). This
package is the public home of the fitting API (`from scaling.analysis import ChinchillaLaw, fit_sweep`; the
names are also re-exported from `scaling`). One module per responsibility, each depending only on those
above it:

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
- `suggest`: sequential design, the runs expected to narrow N_opt(C*)'s interval most per FLOP (what
  `scaling suggest` proposes; `scaling/suggest.py` turns a sweep into candidates and writes the extended file).
  Imported by name, not re-exported here.
- `_blas`: the OpenBLAS thread limit the optimizer loops run under.

Not the repository's top-level `analysis/` folder: that holds scripts and data that reproduce published fits
with this package (analysis/README.md). `scaling/suggest.py` (the sweep side of `scaling suggest`) is likewise
a layer above `suggest` here (the design maths).

Above this package: figures (`scaling/plot.py`), published laws beside fitted ones (`scaling/compare.py`,
their data in `scaling/laws.py`), and what the CLI verbs fit, plot and compare do (`scaling/pipeline.py`:
read a source, fit per architecture family, write fit.json, runs.csv and figures, print the reports).

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
