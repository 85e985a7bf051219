"""The README's promise, run for real: `scaling run SWEEP` -> run folders, table, fits, plots, table of sizes."""

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import scaling
from conftest import tiny_sweep, write_sweep
from scaling.cli import main

REPO = Path(scaling.__file__).resolve().parent.parent


def test_small_sweep_through_the_cli(tmp_path: Path, text_corpus: Path, capsys: pytest.CaptureFixture) -> None:
    shapes = [{"n_layer": 1, "d_model": 16}, {"n_layer": 1, "d_model": 32}, {"n_layer": 2, "d_model": 48}]
    sweep = write_sweep(tmp_path / "e2e.toml", tiny_sweep(
        "e2e", text_corpus, results_dir=tmp_path / "results", data={"val_tokens": 4096},
        grid={"shapes": shapes, "n_tokens": [2e4, 4e4, 8e4]}, train={"lr": 5e-3},
        launch={"max_parallel": 2, "timeout_min": 10}))

    assert main(["plan", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "9 runs" in out and "tokens_per_param" in out
    assert not (tmp_path / "results").exists()  # plan runs nothing

    assert main(["run", str(sweep), "--n-boot", "20"]) == 0
    out = capsys.readouterr().out
    sweep_dir = tmp_path / "results" / "e2e"
    runs = [p for p in sweep_dir.iterdir() if (p / "spec.json").exists()]
    assert len(runs) == 9 and all((p / "result.json").exists() for p in runs)
    table = pd.read_csv(sweep_dir / "runs.csv")
    assert (table["status"] == "done").all() and table["loss"].notna().all()
    fit = json.loads((sweep_dir / "fit.json").read_text())
    assert "compute-optimal" in out and "Approach 3" in out
    assert sorted(p.name for p in (sweep_dir / "plots").glob("*.png"))
    assert fit  # the saved report round-trips through JSON

    # a relaunch trains nothing and the status verb reads the same from disk
    assert main(["run", str(sweep), "--no-fit"]) == 0
    assert "0 submitted" in capsys.readouterr().out
    assert main(["status", str(sweep)]) == 0
    assert "done: 9" in capsys.readouterr().out


def test_fit_accepts_a_plain_csv(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # published-style data: params,tokens,loss from a known law
    rows = [(n, d, 1.7 + 400 / n**0.34 + 410 / d**0.28) for n in (1e7, 3e7, 1e8, 3e8, 1e9)
            for d in (1e9, 3e9, 1e10, 3e10)]
    csv = tmp_path / "points.csv"
    pd.DataFrame(rows, columns=["params", "tokens", "loss"]).to_csv(csv, index=False)
    assert main(["fit", str(csv), "--n-boot", "20", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    alpha = float(next(l for l in out.splitlines() if l.strip().startswith("alpha =")).split()[2])
    assert alpha == pytest.approx(0.34, rel=0.02)
    assert (tmp_path / "out" / "fit.json").exists()


@pytest.mark.slow
def test_default_tiny_sweep(tmp_path: Path) -> None:
    """The README's first command, on the real stdlib corpus: every run finishes (none diverges), loss falls
    with size, and the answer is identified where it matters (issue #10): N_opt at the sweep's largest compute
    within a 3x band, a finite band for a, and every unidentified parameter named with its reason."""
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "scaling.cli", "run", str(REPO / "sweeps" / "tiny.toml"),
         "--set", f"results_dir=\"{tmp_path}\"", "--n-boot", "300"],
        capture_output=True, text=True, cwd=tmp_path, timeout=1800)
    wall = time.time() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"tiny sweep wall time: {wall:.0f} s")
    table = pd.read_csv(tmp_path / "tiny" / "runs.csv")
    assert len(table) == 24 and (table["status"] == "done").all(), table[["run_id", "status", "reason"]]
    assert table["flops"].sum() <= 1.5 * 3.0e13  # the old default's FLOPs, x1.5
    grid_4m = table[(table["n_tokens"] - 4e6).abs() < 1e3].sort_values("n_params")
    assert len(grid_4m) == 4 and grid_4m["loss"].is_monotonic_decreasing, grid_4m[["n_params", "loss"]]
    fit = json.loads((tmp_path / "tiny" / "fit.json").read_text())
    a3 = fit["approach3"]
    for name in ("alpha", "beta"):
        assert math.isfinite(a3["params"][name]) and a3["params"][name] > 0
    optimum = a3["optimum_at_max_flops"]
    assert optimum["identified"] and optimum["factor"] <= 3, optimum
    lo, hi = a3["intervals"]["a"]
    assert 0 < lo < a3["params"]["a"] < hi < 1
    assert "E" in a3["not_identified"]  # far above the floor: named, with what would pin it
    assert fit["approach2"] is not None
    assert "compute-optimal allocation" in proc.stdout and "E not identified" in proc.stdout
    assert len(list((tmp_path / "tiny" / "plots").glob("*.png"))) >= 5
