"""Several architecture families on one sweep: `[model] arch = ["gpt", "lstm"]` plans both on the same
grid, and fit / compare give each family its own law, side by side."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scaling
from conftest import write_sweep
from scaling.cli import main
from scaling.config import load_sweep
from scaling.errors import ConfigError
from scaling.analysis import ChinchillaLaw, split_by_arch
from scaling.plan import plan_sweep
from scaling.results import write_json_atomic, write_result

REPO = Path(scaling.__file__).resolve().parent.parent
# Two families with clearly different laws: pooled into one fit, neither exponent would come back.
TRUE_LAWS = {"gpt": dict(E=1.0, A=60.0, B=400.0, alpha=0.40, beta=0.30),
             "lstm": dict(E=1.2, A=25.0, B=900.0, alpha=0.25, beta=0.38)}


def sweep(tmp_path: Path, arch: str | list[str]) -> Path:
    return write_sweep(tmp_path / "s.toml", {
        "name": "s", "results_dir": str(tmp_path / "results"),
        "model": {"arch": arch, "seq_len": 32, "head_dim": 16},
        "grid": {"n_params": [2.0e4, 4.0e4, 8.0e4, 1.6e5, 3.2e5], "n_tokens": [1.0e5, 3.0e5, 1.0e6, 3.0e6, 1.0e7]},
        "train": {"batch_size": 8},
    })


def test_arch_is_a_name_or_a_list(tmp_path: Path) -> None:
    assert load_sweep(sweep(tmp_path, "lstm")).model.arch == ("lstm",)
    assert load_sweep(sweep(tmp_path, ["gpt", "lstm"])).model.arch == ("gpt", "lstm")
    with pytest.raises(ConfigError, match=r"s\.toml: \[model\]\.arch\[1\] = 'rnn': must be one of gpt, llama, lstm, gru"):
        load_sweep(sweep(tmp_path, ["gpt", "rnn"]))
    with pytest.raises(ConfigError, match=r"\[model\]\.arch = \['gpt', 'gpt'\]: must not repeat"):
        load_sweep(sweep(tmp_path, ["gpt", "gpt"]))
    with pytest.raises(ConfigError, match=r"\[model\]\.arch = \[\]: give at least one of gpt, llama, lstm, gru"):
        load_sweep(sweep(tmp_path, []))


def test_families_share_the_grid_and_keep_their_run_ids(tmp_path: Path) -> None:
    both = plan_sweep(load_sweep(sweep(tmp_path, ["gpt", "lstm"])))
    gpt_only = plan_sweep(load_sweep(sweep(tmp_path, "gpt")))
    by_arch = {a: [r for r in both.runs if r.shape.arch == a] for a in ("gpt", "lstm")}
    assert len(by_arch["gpt"]) == len(by_arch["lstm"]) == 25
    # adding a family leaves the other family's runs (and so their finished folders) unchanged
    assert [r.run_id for r in by_arch["gpt"]] == [r.run_id for r in gpt_only.runs]
    assert [r.n_tokens for r in by_arch["gpt"]] == [r.n_tokens for r in by_arch["lstm"]]
    assert by_arch["lstm"][0].run_id.startswith("lstm-")


def test_shipped_comparison_sweep_plans_both_families() -> None:
    plan = plan_sweep(load_sweep(REPO / "sweeps" / "lstm_vs_transformer.toml"))
    archs = [r.shape.arch for r in plan.runs]
    assert archs.count("gpt") == archs.count("lstm") == 20
    assert plan.total_flops < 1e14  # about ten CPU minutes


def fake_results(tmp_path: Path) -> Path:
    """The two-family sweep as finished run folders whose held-out losses follow TRUE_LAWS exactly."""
    plan = plan_sweep(load_sweep(sweep(tmp_path, ["gpt", "lstm"])))
    for run in plan.runs:
        law = ChinchillaLaw.from_params(**TRUE_LAWS[run.shape.arch])
        loss = float(law.predict(run.n_params, run.n_tokens))
        run_dir = plan.sweep.sweep_dir / run.run_id
        run_dir.mkdir(parents=True)
        write_json_atomic(run_dir / "spec.json", run.to_dict())
        write_result(run_dir, {"status": "done", "train_loss": loss, "val_loss": loss,
                               "n_params": run.n_params, "n_tokens": run.n_tokens, "flops": run.flops,
                               "wall_s": 1.0})
    return plan.sweep.sweep_dir


def test_fit_gives_each_family_its_own_law_and_a_side_by_side_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep_dir = fake_results(tmp_path)
    assert main(["fit", str(sweep_dir), "--n-boot", "20"]) == 0
    out = capsys.readouterr().out
    for arch, truth in TRUE_LAWS.items():
        fitted = json.loads((sweep_dir / arch / "fit.json").read_text())["approach3"]["params"]
        assert fitted["alpha"] == pytest.approx(truth["alpha"], abs=0.01), arch
        assert fitted["beta"] == pytest.approx(truth["beta"], abs=0.01), arch
        assert (sweep_dir / arch / "plots" / "loss_vs_params.png").is_file()
        assert f"=== architecture: {arch} (25 runs) ===" in out
    assert "=== architectures side by side ===" in out
    table = pd.read_csv(sweep_dir / "compare_archs.csv")
    assert {"gpt/n_opt", "lstm/n_opt"} <= set(table.columns)
    # the families' compute-optimal sizes differ as their laws do
    for arch in TRUE_LAWS:
        n_opt, _ = ChinchillaLaw.from_params(**TRUE_LAWS[arch]).compute_optimal(table["flops"].to_numpy())
        np.testing.assert_allclose(table[f"{arch}/n_opt"], n_opt, rtol=0.15)
    assert (sweep_dir / "plots" / "compute_optimal_by_arch.png").is_file()


def test_compare_lists_each_family_of_a_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep_dir = fake_results(tmp_path)
    assert main(["compare", str(sweep_dir), "--n-boot", "0", "--min-flops", "15", "--max-flops", "16"]) == 0
    out = capsys.readouterr().out
    assert "s (gpt)" in out and "s (lstm)" in out and "Besiroglu 2024" in out


def test_split_by_arch_keeps_points_without_an_arch_column_together() -> None:
    frame = pd.DataFrame({"n_params": [1e6, 2e6], "n_tokens": [1e9, 1e9], "loss": [3.0, 2.9]})
    assert list(split_by_arch(frame)) == [""]
    frame["arch"] = ["gpt", "lstm"]
    assert {k: len(v) for k, v in split_by_arch(frame).items()} == {"gpt": 1, "lstm": 1}
