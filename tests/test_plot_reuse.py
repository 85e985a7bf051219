"""`scaling plot` draws from the saved fit.json when it was fitted on the same points; otherwise it says in
one line why it refits, and a refit keeps the resamples the saved fit was made with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scaling.analysis.approach3 import ChinchillaLaw
from scaling.cli import main


def write_points(path: Path, noise_seed: int = 0) -> Path:
    """12 points of a known law (E=1.7, A=400, B=1100, alpha=0.34, beta=0.28) with 1% noise."""
    rng = np.random.default_rng(noise_seed)
    n, d = np.repeat(np.logspace(6, 7.5, 4), 3), np.tile(np.logspace(8, 9.5, 3), 4)
    loss = (1.7 + 400 / n ** 0.34 + 1100 / d ** 0.28) * (1 + 0.01 * rng.standard_normal(n.size))
    path.write_text("params,tokens,loss\n" + "".join(f"{a:.6g},{b:.6g},{c:.6g}\n" for a, b, c in zip(n, d, loss)))
    return path


def approach3_block(text: str) -> str:
    return text[text.index("Approach 3:"):text.index("Approach 2")]


@pytest.mark.slow  # ~30 s: four fits and their figures
def test_plot_draws_from_the_saved_fit_or_says_why_it_refits(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    csv, out = write_points(tmp_path / "points.csv"), tmp_path / "fit"
    assert main(["fit", str(csv), "--n-boot", "30", "--out", str(out)]) == 0
    fitted = capsys.readouterr().out
    saved = (out / "fit.json").read_bytes()
    assert json.loads(saved)["fit_key"]["n_boot"] == 30

    assert main(["plot", str(csv), "--out", str(out)]) == 0
    drawn = capsys.readouterr().out
    assert f"plot: drawing from {out / 'fit.json'} (fitted on these 12 points with --n-boot 30" in drawn
    assert approach3_block(drawn) == approach3_block(fitted)  # same law, intervals and verdicts, no refit
    assert (out / "fit.json").read_bytes() == saved
    assert (out / "plots" / "compute_optimal.png").is_file()

    write_points(csv, noise_seed=1)  # other losses: the saved fit no longer describes these points
    assert main(["plot", str(csv), "--out", str(out)]) == 0
    refit = capsys.readouterr().out
    assert [line for line in refit.splitlines() if line.startswith("plot: refitting")] == [
        "plot: refitting with --n-boot 30: the points differ from those "
        f"{out / 'fit.json'} was fitted on (12 then, 12 now, or other N, D or losses)"]
    assert json.loads((out / "fit.json").read_text())["fit_key"]["n_boot"] == 30  # the user's choice kept

    assert main(["plot", str(csv), "--out", str(out), "--n-boot", "40"]) == 0
    assert (f"plot: refitting with --n-boot 40: --n-boot 40 asked, {out / 'fit.json'} was fitted with 30; "
            "it is overwritten") in capsys.readouterr().out
    key = json.loads((out / "fit.json").read_text())["fit_key"]
    assert key["n_boot"] == 40 and key["n_points"] == 12


def test_plot_without_a_saved_law_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv, out = write_points(tmp_path / "points.csv"), tmp_path / "fit"
    out.mkdir()
    (out / "fit.json").write_text(json.dumps({"n_runs": 12}))  # as an older version wrote it
    assert main(["plot", str(csv), "--out", str(out), "--n-boot", "10"]) == 0
    assert "plot: refitting with --n-boot 10: " + f"{out / 'fit.json'} holds no saved law" in capsys.readouterr().out


def test_a_law_saves_and_loads_with_its_bootstrap(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, d = np.repeat(np.logspace(6, 7.5, 4), 3), np.tile(np.logspace(8, 9.5, 3), 4)
    loss = (1.7 + 400 / n ** 0.34 + 1100 / d ** 0.28) * (1 + 0.01 * rng.standard_normal(n.size))
    law = ChinchillaLaw().fit(n, d, loss).bootstrap(n, d, loss, n_boot=20)
    back = ChinchillaLaw.load(law.save(tmp_path / "law.json"))
    assert back.params_ == law.params_ and back.predict(1e8, 1e10) == law.predict(1e8, 1e10)
    for name in ("E", "alpha", "a"):
        assert back.interval(name) == law.interval(name)
    np.testing.assert_array_equal(back.compute_optimal_interval(1e18)["n_opt_lo"],
                                  law.compute_optimal_interval(1e18)["n_opt_lo"])
    (tmp_path / "bad.json").write_text('{"law": "chinchilla", "delta": 0.001}')
    with pytest.raises(Exception, match=r"bad.json: not a saved ChinchillaLaw \(key 'n_starts'\)"):
        ChinchillaLaw.load(tmp_path / "bad.json")
