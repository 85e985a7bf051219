"""Unit levels redrawn around a fitted Approach 3 law (scaling.analysis.size_levels)."""

from __future__ import annotations

import numpy as np
import pytest

from scaling.analysis.approach3 import LawParams
from scaling.analysis.size_levels import level_df, level_shifts
from scaling.errors import FitError

LAW = LawParams(E=1.7, A=400.0, B=410.0, alpha=0.34, beta=0.28)


def _grid(sizes: int, budgets: int):
    n = np.repeat(np.geomspace(1e7, 1.6e8, sizes), budgets)
    d = np.tile(np.geomspace(1e9, 8e9, budgets), sizes)
    return n, d, LAW.E + LAW.A / n ** LAW.alpha + LAW.B / d ** LAW.beta


def test_degrees_of_freedom_are_units_less_the_levels_the_law_fits():
    n, d, _ = _grid(5, 4)
    assert level_df(LAW, n, d, n) == (5, 2)  # sizes sharing budgets: E, A, alpha fit their levels
    assert level_df(LAW, n, d, np.arange(len(n))) == (20, 15)  # every point its own run: all 5 parameters


def test_shifts_redraw_each_units_level_with_t_like_tails():
    n, d, loss = _grid(7, 4)
    offsets = np.repeat([0.01, -0.012, 0.004, 0.0, -0.008, 0.015, -0.006], 4)
    observed = loss * np.exp(offsets)
    shifts = level_shifts(LAW, n, d, observed, n, n_boot=4000, seed=0)
    assert shifts.shape == (4000, 28)
    assert np.allclose(shifts.reshape(4000, 7, 4), shifts.reshape(4000, 7, 4)[:, :, :1])  # one shift per unit
    # replicate levels = observed level (offset, as LAW is the fit) + shift: centred on 0, scale from the
    # offsets with df = 7 - 3 = 4 (Student-t tails: its 97.5% point is 2.78 s, a normal's 1.96 s)
    levels = shifts[:, ::4] + offsets[::4]
    s = np.sqrt((offsets[::4] ** 2).sum() / 4)
    assert abs(np.median(levels)) < 0.1 * s
    q = np.quantile(levels, 0.975) / s
    assert 2.5 < q < 3.1, q


def test_too_few_units_are_refused():
    n, d, loss = _grid(3, 4)
    with pytest.raises(FitError, match="3 independent unit"):
        level_shifts(LAW, n, d, loss, n, n_boot=5)
