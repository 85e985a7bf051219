"""The data-constrained fit (scaling.analysis.data_constrained): recovery, verdicts, cost of repetition, allocation."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from scaling.analysis.data_constrained import (allocate, describe_cost, fit_data_constrained, repetition_cost,
                                               rstar_optima)
from scaling.errors import FitError
from scaling.laws import DataConstrainedLaw

TRUTH = replace(DataConstrainedLaw(), rd_star=4.0)
"""The released C4 law with a short repetition decay (R*_D = 4), so repeats up to 16 epochs inform it."""


def design(law: DataConstrainedLaw, noise: float = 0.0, seed: int = 0):
    """Single-epoch runs at 4 sizes x 4 budgets, and repeated runs (1-16 epochs of 2 budgets) at 3 sizes."""
    rows = [(n, d, d) for n, d in itertools.product([1e8, 3e8, 1e9, 3e9], [2e9, 6e9, 2e10, 6e10])]
    rows += [(n, e * u, u) for n, u, e in itertools.product([3e8, 1e9, 3e9], [1e9, 3e9], [2, 4, 8, 16])]
    N, D, U = (np.array(c, dtype=float) for c in zip(*rows))
    L = law.predict(N, D, U) * np.exp(noise * np.random.default_rng(seed).standard_normal(len(N)))
    return N, D, U, L


def test_two_stage_fit_recovers_a_known_rd_star() -> None:
    N, D, U, L = design(TRUTH, noise=0.002)
    fit = fit_data_constrained(N, D, U, L, n_boot=30, seed=1)
    assert fit.base_fitted and fit.n_single == 16 and fit.n_repeated == 24
    assert fit.law.rd_star == pytest.approx(4.0, rel=0.25)
    lo, hi = fit.interval("rd_star")
    assert lo < 4.0 < hi and hi / lo < 10
    assert fit.verdicts["rd_star"] == ""
    assert fit.summary()[0].startswith(f"R*_D = {fit.law.rd_star:.3g} [")
    # Runs larger than the optimum for their unique tokens inform R*_N; its verdict is stated either way.
    assert fit.n_excess > 0 and "rn_star" in fit.verdicts


def test_noiseless_stage_two_lands_on_the_truth() -> None:
    N, D, U, L = design(TRUTH)
    rd, rn, value = rstar_optima(TRUTH, N, D, U, L)[0]
    assert rd == pytest.approx(4.0, rel=1e-4) and value < 1e-12


def test_without_repeated_runs_rd_star_is_not_identified() -> None:
    N, D, U, L = design(TRUTH)
    single = D == U
    fit = fit_data_constrained(N[single], D[single], U[single], L[single], n_boot=0)
    assert "no run repeats its data" in fit.verdicts["rd_star"]


def test_stage_one_needs_single_epoch_runs() -> None:
    N, D, U, L = design(TRUTH)
    rep = D > U
    with pytest.raises(FitError, match=r"stage 1 .* from the 0 single-epoch runs"):
        fit_data_constrained(N[rep], D[rep], U[rep], L[rep], n_boot=0)
    with pytest.raises(FitError, match=r"unique tokens U = 2e\+09 > tokens D = 1e\+09"):
        fit_data_constrained([1e8], [1e9], [2e9], [3.0], n_boot=0)


def test_repetition_cost_in_words() -> None:
    law = DataConstrainedLaw()
    table = repetition_cost(law, 1e8, 1e6, [1, 4, 16])
    assert table["excess"].iloc[0] == 0 and table["worth"].iloc[0] == 1
    assert np.all(np.diff(table["excess"]) > 0) and np.all(np.diff(table["worth"]) < 0)
    text = describe_cost(table.iloc[1], 1e6)
    assert text.startswith("4 epochs of 1M unique tokens ~ 3.") and "higher loss than 4M unique tokens" in text


def test_allocation_under_a_unique_budget() -> None:
    law = DataConstrainedLaw()
    # With unlimited unique data it is Chinchilla's split.
    free = allocate(law, 1e22, 1e15)
    assert free["n_params"] == pytest.approx(free["chinchilla_n_params"], rel=1e-3)
    # datablations README: 1e22 FLOPs on 25B unique tokens -> ~7.0B parameters, ~9.5 epochs (a grid search);
    # ours searches continuously, so its loss is at most theirs and the split is close.
    ours = allocate(law, 1e22, 25e9)
    theirs_loss, theirs_d, theirs_n = law.optimal_allocation_for_compute(1e22, 25e9)
    assert ours["loss"] <= theirs_loss + 1e-12
    assert ours["n_params"] == pytest.approx(theirs_n, rel=0.03) and ours["epochs"] == pytest.approx(9.49, rel=0.03)
    # Scarcer data bends the frontier: fewer parameters than Chinchilla's split (the excess parameters' decay
    # R*_N), more epochs and a higher loss.
    scarce = allocate(law, 1e22, 5e9)
    assert scarce["n_params"] < ours["n_params"] < free["n_params"]
    assert scarce["epochs"] > ours["epochs"] and scarce["loss"] > ours["loss"] > free["loss"]
