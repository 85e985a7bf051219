"""The multi-power law fitted jointly over sizes (scaling.analysis.curves_joint)."""

from __future__ import annotations

import numpy as np
import pytest

from scaling.analysis.curves import Curve, fit_curves, predict_curve
from scaling.analysis.lr_schedules import cosine_lrs, wsd_lrs
from scaling.analysis.curves_joint import (bootstrap_curves_joint, bootstrap_curves_joint_runs, fit_curves_joint,
                                          trim_warmup)
from scaling.errors import FitError

SHAPE = {"alpha": 0.45, "C": 2.0, "beta": 0.6, "gamma": 0.5}
OWN = {1: (2.0, 0.9, 300.0), 2: (1.8, 0.8, 280.0), 3: (1.65, 0.75, 260.0), 4: (1.55, 0.7, 250.0)}  # L0, A, B per size


def _params(size: int) -> list[float]:
    L0, A, B = OWN[size]
    return [L0, A, SHAPE["alpha"], B, SHAPE["C"], SHAPE["beta"], SHAPE["gamma"]]


def _design(size: int, rng: np.random.Generator, noise: float = 0.002) -> list[Curve]:
    """One WSD trunk to 2000 steps per size, branches (20% 1-sqrt cooldown) at 500 and 2000 steps: the
    curves design, one bootstrap unit per size."""
    out = []
    for n in (500, 2000):
        lrs = wsd_lrs(n, 3e-3, 3e-4, int(0.8 * n), 50, shape="1-sqrt")
        steps = np.unique(np.geomspace(20, n, 24).round().astype(int))
        loss = predict_curve("mpl", _params(size), lrs, steps) * np.exp(noise * rng.standard_normal(len(steps)))
        out.append(Curve(name=f"s{size}-{n}", lrs=lrs, steps=steps, loss=loss, group=f"trunk{size}"))
    return out


def test_joint_fit_recovers_a_cosine_run_and_beats_per_size():
    rng = np.random.default_rng(0)
    groups = {s: _design(s, rng) for s in OWN}
    fits = fit_curves_joint(groups)
    cos = cosine_lrs(1000, 3e-3, 3e-4, 50)
    joint_err, own_err = [], []
    for s in OWN:
        true = predict_curve("mpl", _params(s), cos, [1000])[0]
        joint_err.append(abs(fits[s].predict(cos, [1000])[0] / true - 1))
        own_err.append(abs(fit_curves(groups[s], "mpl").predict(cos, [1000])[0] / true - 1))
        assert fits[s].params_["alpha"] == fits[1].params_["alpha"]  # shared
    assert max(joint_err) < 0.01, joint_err
    assert np.mean(joint_err) <= np.mean(own_err) + 1e-3, (joint_err, own_err)


def test_joint_bootstrap_replicates_vary_and_trim_drops_early_points():
    rng = np.random.default_rng(1)
    groups = {s: _design(s, rng, noise=0.01) for s in OWN}
    fits = fit_curves_joint(groups, n_starts=2)
    reps = bootstrap_curves_joint(groups, fits, n_boot=6, seed=0, min_sizes=2)
    assert len(reps) >= 2
    for rep in reps:  # a replicate holds the drawn sizes, their multiplicities summing to the number of sizes
        assert sum(count for _, count in rep.values()) == len(groups) and len(rep) >= 2
    alphas = {round(next(iter(rep.values()))[0].params_["alpha"], 6) for rep in reps}
    assert len(alphas) >= 2  # resampling sizes moves the shared shape
    c = trim_warmup(groups[1][0], warmup_steps=50, min_step_warmups=1.0)
    assert c.steps.min() >= 50 and len(c.steps) < len(groups[1][0].steps)


def test_one_size_is_refused():
    rng = np.random.default_rng(2)
    with pytest.raises(FitError, match="at least two sizes"):
        fit_curves_joint({1: _design(1, rng)})


def test_run_bootstrap_keeps_every_size_and_resamples_inside_it():
    """bootstrap_curves_joint_runs: every replicate holds every size; a size of one unit (one trunk with its
    branches) has its residuals resampled in blocks, a size of several units has whole units drawn."""
    rng = np.random.default_rng(3)
    groups = {s: _design(s, rng, noise=0.005) for s in (1, 2, 3)}
    seeds = []  # size 3: two independent trunks (units), each a trunk with its branches
    for seed_name in ("a", "b"):
        for c in _design(3, rng, noise=0.005):
            seeds.append(Curve(name=c.name + seed_name, lrs=c.lrs, steps=c.steps, loss=c.loss,
                               group=f"trunk3{seed_name}"))
    groups[3] = seeds
    fits = fit_curves_joint(groups, n_starts=2)
    reps = bootstrap_curves_joint_runs(groups, fits, n_boot=6, seed=0)
    assert len(reps) >= 4
    assert all(set(rep) == {1, 2, 3} for rep in reps)
    cos = cosine_lrs(1000, 3e-3, 3e-4, 50)
    for size in (1, 3):  # both kinds of size move between replicates
        preds = [rep[size].predict(cos, [1000])[0] for rep in reps]
        assert np.ptp(preds) > 0, size
        assert max(abs(p / fits[size].predict(cos, [1000])[0] - 1) for p in preds) < 0.02
