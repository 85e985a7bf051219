"""The output a new user reads: warnings about repeated or short data before training, no doubled
diagnostics, no "None" cells in tables."""

from __future__ import annotations

import logging
import sysconfig
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scaling
from scaling.analysis.approach3 import ChinchillaLaw
from conftest import tiny_sweep, write_sweep
from scaling.analysis.report import FitReport
from scaling.cli import print_table
from scaling.config import load_sweep
from scaling.data import data_warnings
from scaling.plan import plan_sweep
from scaling.results import write_spec
from scaling.train import train_run


def test_data_warnings_say_how_many_epochs_and_how_short_the_held_out_split_is() -> None:
    assert data_warnings(2_000_000, 32768, 196_000, 4_000, "c.txt") == [
        "c.txt: a budget of 2,000,000 tokens repeats the 196,000-token training split 10.2 times (epochs > 1: "
        "the loss is no longer on unseen data)",
        "c.txt: the held-out split has 4,000 tokens, fewer than [data].val_tokens = 32,768: the validation loss "
        "averages over 4,000 only"]
    assert data_warnings(100_000, 2048, 196_000, 4_000, "c.txt") == []


def test_a_run_warns_before_training_when_it_repeats_its_data(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    corpus = tmp_path / "small.txt"  # 6,000 bytes of real text: the 2% held out is 120 tokens
    corpus.write_bytes((Path(sysconfig.get_paths()["stdlib"]) / "abc.py").read_bytes()[:6000])
    toml = write_sweep(tmp_path / "s.toml", tiny_sweep("warn", corpus, grid={"n_tokens": [12_000]},
                                                        data={"val_tokens": 2048}))
    spec = plan_sweep(load_sweep(toml)).runs[0]
    run_dir = tmp_path / spec.run_id
    run_dir.mkdir()
    write_spec(run_dir, spec)
    with caplog.at_level(logging.WARNING, logger="scaling"):
        train_run(run_dir, num_threads=1)
    lines = [r.getMessage() for r in caplog.records if "training split" in r.getMessage()
             or "held-out split" in r.getMessage()]
    assert len(lines) == 2 and "12,032 tokens repeats the 5,880-token training split 2.0 times" in lines[0], lines
    assert "held-out split has 120 tokens, fewer than [data].val_tokens = 2,048" in lines[1]

    curves = scaling.load_curves(tmp_path)  # the public way to the loss curves
    assert set(curves["run"]) == {spec.run_id} and curves["step"].max() == spec.n_steps
    assert (curves["tokens"] == curves["step"] * spec.batch_size * spec.shape.seq_len).all()
    assert curves["train_loss"].notna().any() and (curves["n_params"] == spec.n_params).all()


def test_compute_optimal_is_a_frame() -> None:
    law = ChinchillaLaw.from_params(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    table = scaling.compute_optimal(law, [1e18, 1e20])
    assert list(table.columns[:4]) == ["flops", "n_opt", "d_opt", "tokens_per_param"] and len(table) == 2
    n_opt, d_opt = law.compute_optimal(np.array([1e18, 1e20]))
    np.testing.assert_allclose(table["n_opt"], n_opt)
    assert 6 * table["n_opt"].iloc[1] * table["d_opt"].iloc[1] == pytest.approx(1e20)


def test_a_diagnostic_is_printed_once() -> None:
    note = "Approach 2: skipped 11 budget(s) with < 3 runs or distinct N (a curve needs >= 3): ..."
    report = FitReport(n_runs=3, n_done=3, law=None, envelope=None, isoflop=None, holdout=None,
                       diagnostics=[note, "other", note])
    assert report.to_text().count(note) == 1


def test_tables_print_missing_values_blank(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(pd.DataFrame({"run_id": ["a", "b"], "state": ["done", "running"], "job_id": [None, "123"],
                              "heartbeat_s": [float("nan"), 2.0]}))
    out = capsys.readouterr().out
    assert "None" not in out and "NaN" not in out and "123" in out


TINY_POINTS = Path(__file__).parent / "data" / "tiny_sweep_points.csv"
"""The default sweep's 24 runs (grid + IsoFLOP), trained on this project's 2-core machine (tests/test_identify_mc.py)."""


def test_no_line_of_a_fit_is_said_twice(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
                                        tmp_path: Path) -> None:
    # A grid+isoflop sweep's grid points are singleton budgets: "Approach 2: skipped 11 budget(s)" was logged by
    # the fit and printed again among the report's diagnostics. A diagnostic is said once, by the report.
    from scaling.cli import main

    csv = tmp_path / "points.csv"
    csv.write_text(TINY_POINTS.read_text())
    with caplog.at_level(logging.DEBUG, logger="scaling"):  # DEBUG: the CLI's -v would show them too
        assert main(["fit", str(csv), "--n-boot", "30"]) == 0
    printed = capsys.readouterr().out
    said = printed.splitlines() + [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    skipped = [line for line in said if "skipped 11 budget(s)" in line]
    assert len(skipped) == 1, skipped
    lines = [line.strip() for line in said if line.strip()]
    repeated = {line for line in lines if lines.count(line) > 1 and not line.startswith(("---", "==="))}
    assert not repeated, repeated
    # ...and the resample count below the minimum is warned about, once (tests/test_identify_mc.py has the rest)
    assert printed.count("--n-boot 30 is below 200") == 1


def test_status_prints_no_none_or_nan_cells(capsys: pytest.CaptureFixture[str]) -> None:
    # A done run has no log and no error: `scaling status` printed "None None" (and "nan" for a missing job id).
    print_table(pd.DataFrame({"run_id": ["a", "b"], "state": ["done", "failed"], "job_id": [None, "123"],
                              "val_loss": [1.5, float("nan")], "log": [None, "/x/log.err"], "error": [None, None]}))
    out = capsys.readouterr().out
    assert not {"None", "nan", "NaN", "<NA>"} & set(out.split()), out
    assert "/x/log.err" in out and "123" in out and "1.5" in out


def test_a_resumed_run_says_from_which_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scaling.launch.progress import checkpoint_step, resume_lines

    corpus = tmp_path / "argparse.py"  # ~100 KB of real text
    corpus.write_bytes((Path(sysconfig.get_paths()["stdlib"]) / "argparse.py").read_bytes())
    toml = write_sweep(tmp_path / "s.toml", tiny_sweep("resume", corpus, grid={"n_tokens": [40_000]}))
    spec = plan_sweep(load_sweep(toml)).runs[0]
    run_dir = tmp_path / spec.run_id
    run_dir.mkdir()
    write_spec(run_dir, spec)
    assert checkpoint_step(run_dir) is None and resume_lines([run_dir], {}, checkpoint_step) == []
    stop = spec.n_steps // 2
    train_run(run_dir, num_threads=1, stop_at_step=stop)  # paused there with ckpt.pt, as after a requeue
    assert checkpoint_step(run_dir) == stop
    # What `scaling run` prints before its jobs start...
    assert resume_lines([run_dir], {spec.run_id: spec.n_steps}, checkpoint_step) == [
        f"resuming {spec.run_id} from step {stop:,} of {spec.n_steps:,} (ckpt.pt)"]
    assert resume_lines([run_dir], {}, checkpoint_step) == [f"resuming {spec.run_id} from step {stop:,} (ckpt.pt)"]
    capsys.readouterr()
    train_run(run_dir, num_threads=1)
    # ...and what the job's own log says when it picks the checkpoint up.
    assert f"{spec.run_id}: resumed from step {stop} of {spec.n_steps} (ckpt.pt)" in capsys.readouterr().out
    (run_dir / "ckpt.pt").write_bytes(b"not a checkpoint")
    assert checkpoint_step(run_dir) is None
