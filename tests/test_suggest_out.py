"""`scaling suggest` never destroys what it reads and never proposes what it was told not to (issue 24, items
5-8): --out is never the source, a folder or inside a results folder; the written TOML reads back, characters
outside the Basic Multilingual Plane included; a source with two architectures is refused; --max-params and
--max-tokens are checked and bind every proposed run."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.analysis import ChinchillaLaw
from scaling.cli import main
from scaling.errors import ConfigError
from scaling.simulate import grid_design, simulate
from scaling.suggest import to_toml

REPO = Path(__file__).resolve().parents[1]
BESIROGLU = ChinchillaLaw.from_params(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
PILOT = grid_design([3e7, 1e8, 3e8], [1e9, 3e9, 1e10])


def _csv(tmp_path: Path, arch: list[str] | None = None) -> Path:
    data = simulate(BESIROGLU, PILOT, 0.01, np.random.default_rng(1))
    table = data.rename(columns={"n_params": "params", "n_tokens": "tokens"})[["params", "tokens", "loss"]]
    if arch is not None:
        table["arch"] = [arch[i % len(arch)] for i in range(len(table))]
    src = tmp_path / "pilot.csv"
    table.to_csv(src, index=False)
    return src


ARGS = ["--target-flops", "1e21", "--budget", "2e20", "--n-boot", "20"]


def test_out_on_the_source_is_refused_and_the_runs_are_kept(tmp_path: Path) -> None:
    src = _csv(tmp_path)
    before = src.read_bytes()
    assert main(["suggest", str(src), *ARGS, "--out", str(src)]) == 2
    assert src.read_bytes() == before


def test_out_as_a_folder_or_inside_a_run_folder_is_refused(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    src = _csv(tmp_path)
    assert main(["suggest", str(src), *ARGS, "--out", str(tmp_path)]) == 2
    run = tmp_path / "run_a"
    run.mkdir()
    (run / "spec.json").write_text("{}")
    assert main(["suggest", str(src), *ARGS, "--out", str(run / "next.csv")]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "inside a run folder" in err
    assert not (run / "next.csv").exists()


def test_a_source_with_two_architectures_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _csv(tmp_path, arch=["gpt", "lstm"])
    assert main(["suggest", str(src), *ARGS]) == 2
    assert "2 architectures (gpt, lstm)" in capsys.readouterr().err
    one = _csv(tmp_path, arch=["gpt"])
    assert main(["suggest", str(one), *ARGS]) == 0


@pytest.mark.parametrize("flag, value", [("--max-params", "0"), ("--max-params", "nan"), ("--max-tokens", "-1e9"),
                                         ("--max-tokens", "inf")])
def test_bad_limits_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str) -> None:
    assert main(["suggest", str(_csv(tmp_path)), *ARGS, f"{flag}={value}"]) == 2
    assert f"{flag} {float(value)}: must be a finite number in (0, " in capsys.readouterr().err


def test_limits_bind_every_proposed_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _csv(tmp_path)
    assert main(["suggest", str(src), *ARGS, "--max-params", "2e8", "--max-tokens", "5e9"]) == 0
    proposed = pd.read_csv(tmp_path / "pilot_next.csv")
    assert len(proposed) and (proposed["params"] <= 2e8).all() and (proposed["tokens"] <= 5e9).all()
    # below every measured model: said, not ignored
    assert main(["suggest", str(src), *ARGS, "--max-params", "100"]) == 2
    assert "--max-params 100: below every measured run (smallest 3e+07)" in capsys.readouterr().err


def test_limits_below_every_shape_of_a_sweep_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (REPO / "sweeps" / "suggest_pilot.toml").read_text()
    sweep = tmp_path / "suggest_pilot.toml"
    sweep.write_text(f'results_dir = "{tmp_path / "results"}"\n' + text)
    assert main(["suggest", str(sweep), "--target-flops", "1e13", "--budget", "3e12", "--n-boot", "20",
                 "--max-params", "100"]) == 2
    assert "no candidate run fits" in capsys.readouterr().err
    assert not (tmp_path / "suggest_pilot_next.toml").exists()


@pytest.mark.parametrize("text", ["\U0001F600 emoji", "tab\tand \x7f del", "quote \" and \\ backslash", "\u00e9\u4e2d"])
def test_to_toml_reads_back_any_string(text: str) -> None:
    raw = {"name": text, "grid": {"labels": [text, "plain"]}}
    assert tomllib.loads(to_toml(raw)) == raw


def test_to_toml_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ConfigError, match="cannot write"):
        to_toml({"x": float("nan")})


def test_measured_points_are_not_proposed_again_unless_repeats_are_asked_for(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scaling.analysis.suggest import Candidate, drop_existing

    points = pd.DataFrame({"n_params": [1e8, 3e8], "n_tokens": [1e9, 3e9]})
    fresh, again = drop_existing([Candidate(1e8, 1e9, 6e17), Candidate(1e8, 3e9, 1.8e18)], points)
    assert [c.n_tokens for c in fresh] == [3e9] and [c.n_tokens for c in again] == [1e9]
    src = _csv(tmp_path)
    measured = pd.read_csv(src)
    assert main(["suggest", str(src), *ARGS, "--max-params", "3e8", "--max-tokens", "1e10"]) == 0
    proposed = pd.read_csv(tmp_path / "pilot_next.csv")
    key = lambda t: set(zip(t["params"].round(-3), t["tokens"].round(-3)))  # noqa: E731
    assert not key(proposed) & key(measured)


def test_a_run_overhead_is_charged_against_the_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _csv(tmp_path)
    assert main(["suggest", str(src), *ARGS]) == 0
    free = pd.read_csv(tmp_path / "pilot_next.csv")
    # an overhead of 1e19 FLOP-equivalents a run: at most 19 runs' worth of the 2e20 budget, so fewer runs
    assert main(["suggest", str(src), *ARGS, "--run-overhead", "1e4", "--throughput", "1e15"]) == 0
    charged = pd.read_csv(tmp_path / "pilot_next.csv")
    assert len(charged) < len(free) and charged["flops"].sum() + 1e19 * len(charged) <= 2e20
    # a CSV records no run times: the FLOP/s must be given
    assert main(["suggest", str(src), *ARGS, "--run-overhead", "10"]) == 2
    assert "give --throughput" in capsys.readouterr().err


@pytest.mark.parametrize("law", ["chinchilla", "besiroglu"])
def test_one_round_delivers_about_the_interval_it_promised(law: str) -> None:
    # benchmarks measure the median over campaigns (1.01 and 1.12 over 10 each); one seeded round here
    # measured 0.86 and 1.19: a promise off by 2x either way (in ln N) is a broken posterior, not bad luck
    from scaling.simulate import promise, suggest_setting

    row = promise(suggest_setting(law), seed=0, n_boot=30, n_starts=5)
    assert row["promised"] < row["before"] / 5  # the round is worth running
    assert 0.5 < row["ratio"] < 2.0, row
    assert 0.005 < row["noise"] < 0.02, row  # the estimate of the true 1% noise
