"""`scaling fit SOURCE --at C [C ...]` and suggest's line at C* (issue 29 item 5): N_opt, D_opt and the loss at
the budgets asked for, with 95% bootstrap intervals, marked extrapolated past EXTRAPOLATION_FACTOR times the
runs' compute; bad budgets are one line naming --at and the value."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.analysis import ChinchillaLaw
from scaling.analysis.approach3 import PARAM_NAMES
from scaling.analysis.at_compute import at_compute
from scaling.analysis.extrapolation import EXTRAPOLATION_FACTOR
from scaling.cli import main
from scaling.simulate import grid_design, simulate

BESIROGLU = ChinchillaLaw.from_params(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
PILOT = grid_design([3e7, 1e8, 3e8], [1e9, 3e9, 1e10])


def _law_with_members(n: int = 200) -> ChinchillaLaw:
    law = ChinchillaLaw.from_params(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
    z = np.random.default_rng(0).standard_normal((n, 5))
    base = np.array([1.8172, 482.01, 2085.43, 0.3478, 0.3658])
    law.bootstrap_params_ = pd.DataFrame(base * np.exp(z * [0.01, 0.2, 0.2, 0, 0]) + z * [0, 0, 0, 0.01, 0.01],
                                         columns=list(PARAM_NAMES))
    law.data_flops_ = (1e17, 1e19)
    return law


def test_values_are_the_laws_optimum_and_the_intervals_hold_them() -> None:
    law = _law_with_members()
    rows = at_compute(law, [1e18, 1e21])
    for row in rows:
        n_opt, d_opt = (float(np.asarray(x)) for x in law.compute_optimal(row.flops))
        assert row.n_opt == pytest.approx(n_opt, rel=1e-12) and row.d_opt == pytest.approx(d_opt, rel=1e-12)
        assert 6 * row.n_opt * row.d_opt == pytest.approx(row.flops, rel=1e-12)
        assert row.loss == pytest.approx(float(law.predict(n_opt, d_opt)), rel=1e-12)
        assert row.n_lo < row.n_opt < row.n_hi and row.d_lo < row.d_opt < row.d_hi
        assert row.loss_lo < row.loss < row.loss_hi
        assert row.n_boot == 200
    # the band is each member's own optimum: the same as the compute-optimal table's band, up to interpolation
    band = law.compute_optimal_interval(1e21)
    assert rows[1].n_lo == pytest.approx(float(band["n_opt_lo"]), rel=0.05)
    assert rows[1].n_hi == pytest.approx(float(band["n_opt_hi"]), rel=0.05)
    assert rows[1].n_hi / rows[1].n_lo > rows[0].n_hi / rows[0].n_lo  # further out, wider


@pytest.mark.parametrize("flops, mark", [(5e19, None), (1e19 * EXTRAPOLATION_FACTOR * 2, "20x the largest"),
                                         (1e15, "1/100 of the smallest")])
def test_extrapolation_is_marked_past_the_stated_factor(flops: float, mark: str | None) -> None:
    row = at_compute(_law_with_members(), [flops])[0]
    text = row.describe()
    assert row.extrapolated is (mark is not None)
    if mark is None:
        assert "EXTRAPOLATED" not in text and f"within {EXTRAPOLATION_FACTOR:g}x" in text
    else:
        assert f"EXTRAPOLATED: {mark} run's compute" in text and f"past the {EXTRAPOLATION_FACTOR:g}x" in text
    assert "95% bootstrap intervals, 200 resamples" in text


def test_a_law_without_resamples_or_range_says_so() -> None:
    row = at_compute(BESIROGLU, [1e21])[0]
    assert math.isnan(row.n_lo) and row.extrapolated is None
    text = row.describe()
    assert "no intervals" in text and "data range unknown" in text and "[" not in text


def _csv(tmp_path: Path) -> Path:
    data = simulate(BESIROGLU, PILOT, 0.01, np.random.default_rng(1))
    src = tmp_path / "pilot.csv"
    data.rename(columns={"n_params": "params", "n_tokens": "tokens"})[["params", "tokens", "loss"]].to_csv(src, index=False)
    return src


def test_cli_fit_at_prints_one_line_per_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _csv(tmp_path)
    assert main(["fit", str(src), "--n-boot", "20", "--at", "1e19", "1e21"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  at C = ")]
    assert len(lines) == 2
    assert lines[0].startswith("  at C = 1e+19 FLOPs") and "EXTRAPOLATED" not in lines[0]
    assert lines[1].startswith("  at C = 1e+21 FLOPs") and "EXTRAPOLATED: 55.6x the largest run's compute" in lines[1]
    for line in lines:
        assert "N_opt = " in line and "D_opt = " in line and "loss = " in line
        assert "95% bootstrap intervals, 20 resamples" in line


@pytest.mark.parametrize("value", ["0", "-1e20", "nan", "inf", "abc"])
def test_bad_budget_is_one_line_naming_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    src = _csv(tmp_path)
    assert main(["fit", str(src), "--n-boot", "20", "--at", "1e21", value]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        f"ConfigError: --at {value}: must be a finite number of FLOPs > 0 (e.g. 1e21)"]
    assert captured.out == "" and not (tmp_path / "pilot").exists()  # refused before anything was read or written


def test_suggest_prints_the_same_line_at_its_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _csv(tmp_path)
    assert main(["suggest", str(src), "--target-flops", "1e21", "--budget", "2.5e18", "--n-boot", "20"]) == 0
    printed = capsys.readouterr().out
    now = [ln for ln in printed.splitlines() if ln.startswith("now, at C = 1e+21 FLOPs (C = 6ND): N_opt = ")]
    assert len(now) == 1 and "EXTRAPOLATED: 55.6x" in now[0]
    # the interval on N_opt is the one suggest states above it
    head = next(ln for ln in printed.splitlines() if ln.startswith("N_opt(C* = 1e+21"))
    band = head.split("95% interval ")[1].split(" (")[0]
    assert f"N_opt = {head.split(') = ')[1].split(',')[0]} {band}" in now[0]
