"""Sweep configs: every shipped sweep loads and plans; bad input gives one line naming file, key, value."""

from pathlib import Path

import pytest

from scaling.config import config_reference, load_sweep
from scaling.errors import ConfigError
from scaling.plan import plan_sweep

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "sweeps").glob("*.toml"))

BASE = """
name = "t"
[model]
seq_len = 32
head_dim = 16
[grid]
n_params = [3e4, 1e5]
n_tokens = [1e5, 2e5]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_every_shipped_sweep_loads_and_plans(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # sweeps/own_*.toml name plug-ins imported from the working directory, as documented
    plan = plan_sweep(load_sweep(path))
    assert len(plan.runs) >= 1
    assert all(r.n_tokens > 0 and r.flops > 0 for r in plan.runs)


def test_tiny_sweep_is_the_default_with_16_runs() -> None:
    plan = plan_sweep(load_sweep(REPO / "sweeps" / "tiny.toml"))
    assert plan.sweep.name == "tiny" and plan.sweep.data.source == "stdlib"
    assert len(plan.runs) >= 16
    assert len({r.n_params for r in plan.runs}) >= 4 and len({r.n_tokens for r in plan.runs}) >= 4


@pytest.mark.parametrize("section, line, match", [
    ("", 'nmae = "x"', r"sweep.toml: nmae: unknown key \(valid: .*name"),
    ("[train]", "lr = -1", r"sweep.toml: \[train\].lr = -1.0: must be in \(0, 1\)"),
    ("[train]", 'batch_size = "16"', r"\[train\].batch_size = '16': must be an integer"),
    ("[train]", "batch_size = 1.5", r"\[train\].batch_size = 1.5: must be an integer"),
    ("[train]", "seeds = [0, 0]", r"\[train\].seeds = \[0, 0\]: must not repeat"),
    ("[launch]", "timeout_min = 0", r"\[launch\].timeout_min = 0: must be > 0"),
    ("[launch]", 'backend = "k8s"', r"\[launch\].backend = 'k8s': must be one of local, slurm"),
    ("[model]", 'arch = "rnn"', r"\[model\].arch = 'rnn': must be one of gpt, llama, lstm, gru"),
    ("[train]", 'warmup_rule = "long"', r"\[train\].warmup_rule = 'long': must be one of fraction, params, kaplan"),
    ("[model]", "mlp_ratio = 0", r"\[model\].mlp_ratio = 0: must be > 0"),
    ("[data]", 'source = "no/such/corpus"', r"\[data\].source = '.*no/such/corpus': no such file"),
    ("[data]", "val_fraction = 0.9", r"\[data\].val_fraction = 0.9"),
    ("[wandb]", 'mode = "loud"', r"\[wandb\].mode = 'loud'"),
    ("[wandb]", "enabled = 1", r"\[wandb\].enabled = 1: must be true or false"),
    ("[launch]", "extra = 1", r"\[launch\].extra: unknown key"),
])
def test_bad_values_name_file_key_and_value(tmp_path: Path, section: str, line: str, match: str) -> None:
    text = BASE.replace("[model]", f"{line}\n[model]") if not section else (
        BASE + f"\n{section}\n{line}\n" if section not in BASE else BASE.replace(section, f"{section}\n{line}"))
    with pytest.raises(ConfigError, match=match) as info:
        plan_sweep(load_sweep(write(tmp_path, text)))
    assert "\n" not in str(info.value)


def test_non_positive_budget_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[grid\].n_tokens\[1\] = -1000000.0: must be in \(0, 1e\+16\]"):
        load_sweep(write(tmp_path, BASE.replace("n_tokens = [1e5, 2e5]", "n_tokens = [1e5, -1e6]")))


def test_budget_below_one_optimizer_step(tmp_path: Path) -> None:
    # batch_size 16 x seq_len 32 = 512 tokens per step
    path = write(tmp_path, BASE.replace("n_tokens = [1e5, 2e5]", "n_tokens = [1e5, 100]"))
    with pytest.raises(ConfigError, match=r"\[grid\].n_tokens\[1\] = 100: .*less than one optimizer step \(512"):
        plan_sweep(load_sweep(path))


def test_sizes_that_resolve_to_one_shape_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("n_params = [3e4, 1e5]", "n_params = [3e4, 3.1e4]"))
    with pytest.raises(ConfigError, match=r"\[grid\].n_params\[1\]: resolves to the same model"):
        plan_sweep(load_sweep(path))


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_sweep(write(tmp_path, "name = [unclosed"))
    with pytest.raises(ConfigError, match="no such sweep file"):
        load_sweep(tmp_path / "missing.toml")


def test_relative_corpus_path_resolves_against_the_sweep_file(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("hello " * 100)
    cfg = load_sweep(write(tmp_path, BASE + '\n[data]\nsource = "corpus"\n'))
    assert cfg.data.source == str((tmp_path / "corpus").resolve())


def test_overrides_are_validated_like_the_file(tmp_path: Path) -> None:
    cfg = load_sweep(write(tmp_path, BASE), {"launch.max_parallel": 3})
    assert cfg.launch.max_parallel == 3
    with pytest.raises(ConfigError, match=r"\[launch\].max_parallel = 0: must be > 0"):
        load_sweep(write(tmp_path, BASE), {"launch.max_parallel": 0})


def test_config_reference_documents_every_key() -> None:
    ref = config_reference()
    for key in ("seq_len", "n_tokens", "max_parallel", "val_fraction", "lr", "mode"):
        assert f"| `{key}` |" in ref
    assert "|  |" not in ref  # every key has a docstring
