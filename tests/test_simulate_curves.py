"""Simulated campaigns of the curves design (scaling.simulate_curves, benchmarks/bench_curves_sim.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scaling.analysis.curves_joint import bootstrap_curves_joint_runs
from scaling.simulate_curves import (CURVE_SIZES, _curve_points, _repredicted, curves_design, dataset, default_truth,
                                     flops_needed, ladder, level_interval, simulate, unit_interval)


def test_truth_and_curves_design_are_consistent():
    truth = default_truth()
    n_opt = truth.n_opt(truth.target_flops)
    chinchilla = float(np.asarray(truth.law.compute_optimal(truth.target_flops)[0]))
    assert 0.5 < n_opt / chinchilla < 2.0  # the cosine bonus moves N_opt, not by much
    sizes, d_max = curves_design(truth, 1e20)
    assert 6 * sizes.sum() * d_max * 1.15 == pytest.approx(1e20, rel=1e-3)
    assert sizes[-1] / sizes[0] == pytest.approx(16.0)


def test_noise_free_curves_predict_the_cosine_end_points():
    truth = dataclasses.replace(default_truth(), noise=0.0, point_noise=0.0)
    sizes, d_max = curves_design(truth, 1e20)
    points, curves = _curve_points(truth, sizes, d_max, np.random.default_rng(0))
    assert sorted(curves.units.values()) == sorted(map(float, sizes)) and curves.d_max == d_max
    true = np.array([truth.cosine_end(n, d) for n, d in zip(points.n_params, points.n_tokens)])
    assert np.max(np.abs(points.loss / true - 1)) < 0.005
    assert points.unit.nunique() == len(sizes)


def test_ladder_at_a_tiny_setting():
    truth = default_truth()
    table = ladder(truth, designs=("isoflop", "curves"), fractions=(0.25,), n_datasets=1, n_boot=6, n_starts=2)
    assert list(table.design) == ["isoflop", "curves"]
    assert (table.median_width > 1).all() and table.coverage.isin([0.0, 1.0]).all()
    assert table.loc[table.design == "curves", "flops"].item() == pytest.approx(0.25 * truth.target_flops)
    need = flops_needed(table, width=1e9)  # every interval is narrower than this: the one level is the answer
    assert (need.flops_needed > 0).all()


def test_curves_plus_suggest_adds_trained_units():
    truth = default_truth()
    points = dataset(truth, "curves+suggest", 0.25 * truth.target_flops, seed=0, n_starts=2)
    assert points.unit.nunique() > CURVE_SIZES  # the sizes' curve points plus suggest's runs
    n_opt, lo, hi = unit_interval(points, truth.target_flops, n_boot=6, seed=0, n_starts=2)
    assert lo <= hi and n_opt > 0


def test_curves_intervals_redraw_size_levels_and_are_wider_than_size_resampling():
    """The curves design's five trunks are five units: resampling them gave intervals that covered the truth
    9 of 20 times; redrawing each size's level around the law (size_levels) gives a t-like, wider interval,
    and the ladder uses it for the curves designs by default."""
    truth = default_truth()
    points = dataset(truth, "curves", 0.25 * truth.target_flops, seed=3, n_starts=2, curve_sizes=5)
    n_units, lo_u, hi_u = unit_interval(points, truth.target_flops, n_boot=12, seed=3, n_starts=2)
    n_levels, lo_l, hi_l = level_interval(points, truth.target_flops, n_boot=12, seed=3, n_starts=2)
    assert n_units == n_levels and lo_l <= n_levels <= hi_l
    assert hi_l / lo_l > 1.5 * (hi_u / lo_u)
    table = ladder(truth, designs=("curves",), fractions=(0.25,), n_datasets=1, n_boot=4, n_starts=2)
    assert table.interval.tolist() == ["levels+refits"]


def test_curves_interval_as_scaling_fit_curves_carries_the_curve_law_refits():
    """levels+refits (the curves designs' default): each replicate refits the joint curve law and predicts the
    sizes' points again before their levels are redrawn, as `scaling fit --curves` does; with the same level
    draws its interval differs from the levels-only one, where the curve law is fixed."""
    truth = default_truth()
    points, curves = simulate(truth, "curves", 0.25 * truth.target_flops, seed=3, n_starts=2)
    est, lo, hi = level_interval(points, truth.target_flops, n_boot=8, seed=3, n_starts=2, curves=curves)
    est_fixed, lo_fixed, hi_fixed = level_interval(points, truth.target_flops, n_boot=8, seed=3, n_starts=2)
    assert est == est_fixed and lo <= est <= hi and (lo, hi) != (lo_fixed, hi_fixed)
    refit = bootstrap_curves_joint_runs(curves.groups, curves.fits, n_boot=1, seed=0)[0]
    again = _repredicted(points, curves, refit)
    assert again.shape == points.loss.shape and 0 < np.max(np.abs(again / points.loss - 1)) < 0.05
