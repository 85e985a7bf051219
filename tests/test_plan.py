"""Planning: exact accounting, grid and IsoFLOP designs, deterministic run ids."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.accounting import ModelShape, flops_per_token, n_params, resolve_shape
from scaling.config import load_sweep
from scaling.errors import ConfigError
from scaling.cli import main
from scaling.analysis import ChinchillaLaw, fit_isoflop
from scaling.plan import RunSpec, plan_sweep

GRID = """
name = "g"
[model]
seq_len = 64
head_dim = 16
[grid]
n_params = [3e4, 1e5, 3e5]
n_tokens = [1e5, 4e5]
[train]
batch_size = 8
seeds = [0, 1]
"""

ISOFLOP = """
name = "iso"
[model]
seq_len = 64
head_dim = 8
[grid]
design = "isoflop"
flops = [3e11, 3e12]
n_sizes = 5
window = 8
[grid.prior]
A = 79.8
B = 46.66
alpha = 0.5022
beta = 0.2331
[train]
batch_size = 8
"""


def plan_of(tmp_path: Path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return plan_sweep(load_sweep(path))


def test_grid_is_sizes_times_budgets_times_seeds(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, GRID)
    assert len(plan.runs) == 3 * 2 * 2
    for r in plan.runs:
        assert r.n_tokens == r.n_steps * r.batch_size * r.shape.seq_len
        assert abs(r.n_tokens - r.n_tokens_target) <= r.tokens_per_step / 2
        assert r.flops == r.flops_per_token * r.n_tokens
        assert r.flops_6nd == 6 * r.n_params * r.n_tokens
        assert r.n_params == n_params(r.shape) > r.n_params_non_embedding


def test_run_ids_are_deterministic_and_unique(tmp_path: Path) -> None:
    a, b = plan_of(tmp_path, GRID), plan_of(tmp_path, GRID)
    assert [r.run_id for r in a.runs] == [r.run_id for r in b.runs]
    assert len({r.run_id for r in a.runs}) == len(a.runs)
    # logging cadence does not change what a run computes, so it keeps its id; the LR does not
    c = plan_of(tmp_path, GRID.replace("seeds = [0, 1]", "seeds = [0, 1]\nlog_every_steps = 3"))
    d = plan_of(tmp_path, GRID.replace("seeds = [0, 1]", "seeds = [0, 1]\nlr = 1e-3"))
    assert [r.run_id for r in c.runs] == [r.run_id for r in a.runs]
    assert not {r.run_id for r in d.runs} & {r.run_id for r in a.runs}


def test_spec_round_trips_through_json(tmp_path: Path) -> None:
    import json

    spec = plan_of(tmp_path, GRID).runs[0]
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_isoflop_design_spends_each_budget(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, ISOFLOP)
    assert len(plan.runs) == 2 * 5
    for r in plan.runs:
        # D = C / flops_per_token(N), up to rounding to whole optimizer steps
        assert r.flops == pytest.approx(r.flops_budget, rel=0.5 * r.tokens_per_step / r.n_tokens + 1e-9)
    for window in plan.windows:
        # each budget's sizes surround its own centre, which the runs' specs record
        runs = [r for r in plan.runs if r.flops_budget == window.budget]
        assert {r.isoflop_centre for r in runs} == {window.centre}
        sizes = sorted(r.n_params for r in runs)
        assert len(set(sizes)) == 5 and sizes[0] < window.centre < sizes[-1]
    assert plan.windows[0].centre < plan.windows[1].centre  # the optimum grows with the budget


def test_resolve_shape_follows_the_depth_width_rule() -> None:
    for target in (3e4, 1e5, 1e6, 1e7):
        s = resolve_shape(target, arch="gpt", seq_len=128, vocab_size=256, head_dim=16, aspect_ratio=32)
        assert s.d_model % 16 == 0 and abs(s.n_layer - s.d_model / 32) < 1
        assert 0.6 < n_params(s) / target < 1.6


def test_chinchilla_flops_counting_by_hand() -> None:
    # Hoffmann et al. 2022, App. F, for d=64, L=2, H=4, T=32, V=256, mlp 4d; training = 3x forward
    s = ModelShape(arch="gpt", n_layer=2, d_model=64, n_head=4, seq_len=32, vocab_size=256)
    d, T, V, H = 64, 32, 256, 4
    forward = 2 * V * d + 2 * (6 * d * d + 2 * T * d + 3 * H * T + 2 * T * d + 2 * d * d + 16 * d * d) + 2 * d * V
    assert flops_per_token(s) == 3 * forward
    # and it is close to 6N for the non-embedding part plus attention and embedding matmuls
    assert flops_per_token(s) > 6 * n_params(s, non_embedding=True)


@pytest.mark.parametrize("key, value, limit", [("n_tokens", 1e300, "1e+16"), ("n_params", 1e30, "1e+13")])
def test_absurd_sizes_are_refused_before_planning(tmp_path: Path, key: str, value: float, limit: str) -> None:
    # 1e30 parameters used to resolve silently to the 4096-layer cap (8e14); 1e300 tokens planned 1e306 FLOPs
    grid = {"n_params": [1e5], "n_tokens": [1e6]} | {key: [value]}
    toml = tmp_path / "s.toml"
    toml.write_text(f"[grid]\nn_params = {grid['n_params']}\nn_tokens = {grid['n_tokens']}\n")
    with pytest.raises(ConfigError, match=re.escape(f"s.toml: [grid].{key}[0] = {value:g}: must be in (0, {limit}]")):
        load_sweep(toml)


# ------------------------------------------------------------------------------- IsoFLOP windows

BESIROGLU = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
TINY_LAW = {"E": 0.8, "A": 40.0, "B": 300.0, "alpha": 0.35, "beta": 0.3}
# Approach 3 on sweeps/tiny.toml's done runs (the prior in sweeps/isoflop_small.toml)
TINY_SWEEP_FIT = {"E": 0.0, "A": 79.8, "B": 46.66, "alpha": 0.5022, "beta": 0.2331}


def isoflop_toml(flops: list[float], prior: str, *, window: float = 16, n_sizes: int = 5, head_dim: int = 32,
                 extra: str = "") -> str:
    return f"""
name = "iso"
[model]
seq_len = 128
head_dim = {head_dim}
[grid]
design = "isoflop"
flops = {flops}
n_sizes = {n_sizes}
window = {window}
{extra}
[grid.prior]
{prior}
[train]
batch_size = 8
"""


def stated(law: dict[str, float]) -> str:
    return "\n".join(f"{k} = {v}" for k, v in law.items())


def noiseless_points(plan, law: ChinchillaLaw) -> pd.DataFrame:
    """The planned runs as a results table would list them, with the law's loss at their actual N and D."""
    return pd.DataFrame([{"run_id": r.run_id, "status": "done", "n_params": r.n_params, "n_tokens": r.n_tokens,
                          "flops": r.flops, "loss": float(law.predict(r.n_params, r.n_tokens))}
                         for r in plan.runs])


@pytest.mark.parametrize("law, flops, window, n_sizes, head_dim", [
    (BESIROGLU, [1e18, 1e19, 1e20, 1e21, 1e22], 4, 5, 32),
    (BESIROGLU, [1e18, 1e19, 1e20, 1e21, 1e22], 16, 9, 32),
    (BESIROGLU, [1e18, 1e19, 1e20, 1e21, 1e22], 100, 7, 32),
    # at 1e11 FLOPs this law's N_opt (2.6e3 parameters) is below the smallest byte-level GPT: see below
    (TINY_LAW, [3.16e12, 1e13, 3.16e13, 1e14, 3.16e14], 8, 5, 8),
    (TINY_LAW, [3.16e12, 1e13, 3.16e13, 1e14, 3.16e14], 16, 5, 8),
    (TINY_SWEEP_FIT, [3e11, 1e12, 3e12], 8, 5, 8),
])
def test_approach2_on_any_planned_isoflop_design_recovers_a(tmp_path: Path, law: dict, flops: list,
                                                            window: float, n_sizes: int, head_dim: int) -> None:
    # The old design (one size range for every budget) gave a = 0.44-0.49 for Besiroglu's 0.5126 here.
    true = ChinchillaLaw.from_params(**law)
    plan = plan_of(tmp_path, isoflop_toml(flops, stated(law), window=window, n_sizes=n_sizes, head_dim=head_dim))
    assert len(plan.runs) == n_sizes * len(flops)
    result = fit_isoflop(noiseless_points(plan, true))
    assert result.curves["used"].all()
    # The prior's optimum along the planned lines, D = C / flops_per_token(N) (Chinchilla's FLOP counting):
    # its exponent is the law's a where flops_per_token ~ 6N, and the design must not move Approach 2 off it.
    a_line = np.polyfit(np.log([w.budget for w in plan.windows]), np.log([w.centre for w in plan.windows]), 1)[0]
    assert abs(result.a - a_line) < 0.005
    if law is not TINY_SWEEP_FIT:
        assert abs(result.a - true.a_) < 0.005, (result.a, true.a_)
    assert not any("off the centre" in d or "edge" in d for d in result.diagnostics), result.diagnostics


def test_isoflop_centres_follow_the_prior(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, isoflop_toml([1e19, 1e21], 'law = "Besiroglu 2024"'))
    law = ChinchillaLaw.from_params(**BESIROGLU)
    for w in plan.windows:
        # the law's compute_optimal assumes C = 6ND; at 1e8-1e9 parameters flops_per_token is within 2% of 6N
        assert w.centre == pytest.approx(float(law.compute_optimal(w.budget)[0]), rel=0.02)
        assert w.lo == pytest.approx(w.centre / 4) and w.hi == pytest.approx(w.centre * 4)
    # deterministic: the same config plans the same runs
    assert [r.run_id for r in plan_of(tmp_path, isoflop_toml([1e19, 1e21], 'law = "Besiroglu 2024"')).runs] == \
        [r.run_id for r in plan.runs]


def test_scaling_plan_prints_each_budgets_centre_window_and_prior(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "s.toml"
    path.write_text(ISOFLOP)
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "prior: stated in [grid.prior]: E=0, A=79.8, B=46.66, alpha=0.5022, beta=0.2331" in out
    plan = plan_sweep(load_sweep(path))
    for w in plan.windows:
        assert f"budget {w.budget:.3g} FLOPs (gpt): centre N_opt {w.centre:.3g}, window {w.lo:.3g} .. {w.hi:.3g}" in out


def test_pilot_prior_is_fitted_at_plan_time(tmp_path: Path) -> None:
    # A pilot grid from a known law, as a points CSV next to the sweep file (relative path).
    law = ChinchillaLaw.from_params(**TINY_LAW)
    N, D = (x.ravel() for x in np.meshgrid(np.geomspace(1e4, 3e5, 5), np.geomspace(1e6, 3e7, 5)))
    pd.DataFrame({"params": N, "tokens": D, "loss": law.predict(N, D)}).to_csv(tmp_path / "pilot.csv", index=False)
    flops = [3.16e12, 3.16e13]
    from_pilot = plan_of(tmp_path, isoflop_toml(flops, 'pilot = "pilot.csv"', window=8, head_dim=8))
    from_law = plan_of(tmp_path, isoflop_toml(flops, stated(TINY_LAW), window=8, head_dim=8))
    assert from_pilot.prior.startswith(f"pilot {tmp_path / 'pilot.csv'}: Approach 3 fit to 25 runs")
    for a, b in zip(from_pilot.windows, from_law.windows):
        assert a.centre == pytest.approx(b.centre, rel=1e-3)


def test_grid_plus_isoflop_trains_a_run_both_plan_once(tmp_path: Path) -> None:
    iso = plan_of(tmp_path, ISOFLOP)
    shared = iso.runs[2]  # make the grid contain this IsoFLOP run: same shape, same tokens
    grid = ISOFLOP.replace('design = "isoflop"', f'design = "grid+isoflop"\nn_tokens = [{shared.n_tokens}, 1e6]\n'
                           f'shapes = [{{n_layer = {shared.shape.n_layer}, d_model = {shared.shape.d_model}}}]')
    both = plan_of(tmp_path, grid)
    assert len(both.runs) == 2 + len(iso.runs) - 1
    assert len({r.run_id for r in both.runs}) == len(both.runs)
    same = [r for r in both.runs if r.shape == shared.shape and r.n_steps == shared.n_steps]
    assert len(same) == 1 and same[0].flops_budget == 0  # kept as the grid run, under the grid's run id
    assert {r.run_id for r in iso.runs} - {r.run_id for r in both.runs} == {shared.run_id}


def test_grid_run_ids_are_unchanged_by_the_isoflop_centre_field(tmp_path: Path) -> None:
    # Ids planned before RunSpec.isoflop_centre existed: a grid run (centre 0) keeps its folder.
    ids = [r.run_id for r in plan_of(tmp_path, GRID).runs]
    assert ids[:3] == ["gpt-L1-d32-T99.8K-s0-68895c37", "gpt-L1-d32-T99.8K-s1-e31dcde2",
                       "gpt-L1-d32-T400K-s0-1309f794"]


@pytest.mark.parametrize("prior, extra, key, message", [
    ('law = "Chinchilla 2023"', "", "[grid.prior].law = 'Chinchilla 2023'", "unknown law .*'Besiroglu 2024'"),
    ('pilot = "no/such.csv"', "", "[grid.prior].pilot = ", "no such results folder or points CSV"),
    (stated(TINY_LAW).replace("A = 40.0", "A = -40.0"), "", "[grid.prior].A = -40.0", "must be > 0"),
    (stated(TINY_LAW).replace("beta = 0.3", "beta = 0.0"), "", "[grid.prior].beta = 0.0", "must be > 0"),
    ("", "", "[grid.prior]: missing", "needs? a prior law|centres each budget's window"),
    ('law = "Besiroglu 2024"\npilot = "p.csv"', "", "[grid.prior]: gives law and pilot", "exactly one"),
    (stated(TINY_LAW), "n_params = [1e4, 2e4]", "[grid].flops[0] = 3.16e+12", r"does not fit inside \[grid\].n_params"),
    (stated(TINY_LAW), "", "[grid].flops[0] = 1e+11", "starts below the smallest gpt model"),
    (stated(TINY_LAW), "", "[grid].n_sizes = 2", r"must be in \[3, 1000\]"),
    (stated(TINY_LAW), "", "[grid].window = 1.0", "must be > 1"),
])
def test_bad_isoflop_inputs_fail_in_one_line(tmp_path: Path, prior: str, extra: str, key: str, message: str,
                                             count_case) -> None:
    (tmp_path / "p.csv").write_text("params,tokens,loss\n")
    flops = [1e11, 1e13] if "1e+11" in key else [3.16e12, 3.16e13]
    text = isoflop_toml(flops, prior, window=8, head_dim=8, extra=extra)
    text = text.replace("n_sizes = 5", "n_sizes = 2") if "n_sizes" in key else text
    text = text.replace("window = 8", "window = 1.0") if "window" in key else text
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        plan_sweep(load_sweep(path))
    line = str(info.value)
    assert "\n" not in line and line.startswith(f"{path}: ") and key in line, line
    assert re.search(message, line), line
    count_case("bad input")


def test_a_pilot_too_small_to_fit_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "pilot.csv").write_text("params,tokens,loss\n1e4,1e6,3.1\n2e4,1e6,3.0\n4e4,2e6,2.9\n")
    path = tmp_path / "s.toml"
    path.write_text(isoflop_toml([3.16e12], 'pilot = "pilot.csv"', window=8, head_dim=8))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: [grid.prior].pilot = '{tmp_path / 'pilot.csv'}': "
                                                    "cannot fit a prior law: Approach 3 needs >= 5 done runs")):
        plan_sweep(load_sweep(path))


def test_checkpoints_of_grid_runs_stay_valid_with_the_isoflop_centre_field(tmp_path: Path) -> None:
    from scaling.results import checkpoint_id

    # The hash main wrote into checkpoints before the field existed: an interrupted run still resumes.
    assert checkpoint_id(plan_of(tmp_path, GRID).runs[0]) == "1d0114ebc78e8942"


def test_each_family_gets_its_own_centred_windows(tmp_path: Path) -> None:
    text = isoflop_toml([1e18, 1e20], 'law = "Besiroglu 2024"')
    text = text.replace("head_dim = 32", 'head_dim = 32\narch = ["gpt", "lstm"]')
    plan = plan_of(tmp_path, text)
    assert [(w.arch, w.budget) for w in plan.windows] == [("gpt", 1e18), ("lstm", 1e18), ("gpt", 1e20), ("lstm", 1e20)]
    law = ChinchillaLaw.from_params(**BESIROGLU)
    for arch in ("gpt", "lstm"):
        runs = [r for r in plan.runs if r.shape.arch == arch]
        result = fit_isoflop(noiseless_points(plan, law).iloc[[plan.runs.index(r) for r in runs]])
        assert abs(result.a - law.a_) < 0.005
