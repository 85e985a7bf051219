"""Planning: exact accounting, grid and IsoFLOP designs, deterministic run ids."""

import re
from pathlib import Path

import pytest

from scaling.accounting import ModelShape, flops_per_token, n_params, resolve_shape
from scaling.config import load_sweep
from scaling.errors import ConfigError
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
head_dim = 16
[grid]
design = "isoflop"
flops = [1e11, 1e12]
n_params = [2e4, 4e5]
n_sizes = 5
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
    sizes = sorted({r.n_params for r in plan.runs})
    assert len(sizes) == 5 and sizes[0] < 3e4 and sizes[-1] > 3e5


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
