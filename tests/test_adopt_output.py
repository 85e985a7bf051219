"""The output a new user reads: warnings about repeated or short data before training, no doubled
diagnostics, no "None" cells in tables."""

from __future__ import annotations

import logging
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

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
