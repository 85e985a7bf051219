"""Budgets past EXTRAPOLATION_FACTOR times a law's data are marked "extrapolated" in every table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaling.analysis.approach3 import ChinchillaLaw
from scaling.analysis.extrapolation import EXTRAPOLATION_FACTOR, data_flops, extrapolated
from scaling.analysis.report import compute_optimal_table, fit_sweep
from scaling.cli import main

TRUE = ChinchillaLaw.from_params(E=1.7, A=400.0, B=2000.0, alpha=0.34, beta=0.36)
N = np.geomspace(1e7, 1e9, 5)
D = np.geomspace(1e9, 1e11, 4)


@pytest.fixture(scope="module")
def grid() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = [{"n_params": n, "n_tokens": d, "flops": 6 * n * d, "status": "done",
             "loss": float(TRUE.predict(n, d)) * np.exp(0.005 * rng.standard_normal())} for n in N for d in D]
    return pd.DataFrame(rows)


def test_a_fitted_law_knows_its_data_range_and_a_stated_one_does_not(grid: pd.DataFrame) -> None:
    law = ChinchillaLaw().fit(grid["n_params"], grid["n_tokens"], grid["loss"])
    assert data_flops(law) == pytest.approx((6e16, 6e20))
    assert data_flops(TRUE) is None and extrapolated(TRUE, [1e25]) is None
    budgets = [6e15 / 1.01, 6e15, 1e18, 6e21, 6e21 * 1.01]
    assert list(extrapolated(law, budgets)) == [True, False, False, False, True]
    assert EXTRAPOLATION_FACTOR == 10.0


def test_tables_and_fit_json_mark_rows_past_the_factor(grid: pd.DataFrame) -> None:
    report = fit_sweep(grid, n_boot=0, budgets=np.logspace(16, 25, 10))
    table = compute_optimal_table(report.law, report.budgets)
    assert list(table.loc[table["extrapolated"], "flops"]) == [1e22, 1e23, 1e24, 1e25]
    assert "extrapolated" not in compute_optimal_table(TRUE, [1e20])  # a stated law: nothing to compare with
    fit_json = report.to_dict()["approach3"]
    assert fit_json["data_flops"] == pytest.approx([6e16, 6e20]) and fit_json["extrapolation_factor"] == 10.0
    assert [r["flops"] for r in fit_json["compute_optimal"] if r["extrapolated"]] == [1e22, 1e23, 1e24, 1e25]
    text = report.to_text()
    assert "data: C = 6ND from 6e+16 to 6e+20 FLOPs" in text
    marked = [line.split()[0] for line in text.splitlines() if line.rstrip().endswith("extrapolated")]
    assert marked == ["1e+22", "1e+23", "1e+24", "1e+25"]


def test_compare_marks_the_sweeps_rows_past_the_factor_and_not_published_laws(
        grid: pd.DataFrame, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "grid.csv"
    grid.rename(columns={"n_params": "params", "n_tokens": "tokens"})[["params", "tokens", "loss"]].to_csv(
        csv, index=False)
    assert main(["compare", str(csv), "--n-boot", "0", "--min-flops", "19", "--max-flops", "25"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip().startswith("1e+")]
    mine = [r for r in rows if " grid " in r]
    assert [r.split()[0] for r in mine if r.rstrip().endswith("extrapolated")] == ["1e+22", "1e+23", "1e+24",
                                                                                   "1e+25"]
    assert not any(r.rstrip().endswith("extrapolated") for r in rows if " grid " not in r)
    assert "grid: data: C = 6ND from 6e+16 to 6e+20 FLOPs" in out
