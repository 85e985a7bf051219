"""[grid].unique_tokens (issue 27): runs on a fixed subset of U_D unique tokens, repeated for D / U_D epochs.

The subset is deterministic, nested, drawn from the training split only; the plan crosses U_D with the token
budgets (U_D > D skipped) and leaves every run without U_D as it was; bad values are one ConfigError line; and
a few-step sweep records its epochs and is fitted with the data-constrained law.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_sweep, write_sweep
from scaling.cli import main
from scaling.config import DataConfig, load_sweep
from scaling.config_rules import check_unique_tokens_fit
from scaling.data import SUBSET_BLOCK_TOKENS, load_corpus, unique_subset
from scaling.errors import ConfigError, DataError
from scaling.plan import plan_sweep


def test_subset_is_deterministic_nested_and_only_training_tokens(text_corpus: Path) -> None:
    corpus = load_corpus(DataConfig(source=str(text_corpus)))
    train = np.asarray(corpus.train)
    a, b = unique_subset(corpus.train, 50_000), unique_subset(corpus.train, 50_000)
    assert a.fingerprint == b.fingerprint and np.array_equal(a.tokens, b.tokens) and len(a.tokens) == 50_000
    # stated rule: whole blocks of the training split, in one seeded order, the last one cut to size
    assert (a.starts % SUBSET_BLOCK_TOKENS == 0).all() and len(set(a.starts.tolist())) == len(a.starts)
    assert (a.starts + a.lengths <= len(train)).all()
    assert np.array_equal(a.tokens, np.concatenate([train[s:s + k] for s, k in zip(a.starts, a.lengths)]))
    assert not np.array_equal(a.starts, np.sort(a.starts))  # shuffled, not the corpus's first files
    bigger = unique_subset(corpus.train, 120_000)
    assert np.array_equal(bigger.tokens[:50_000], a.tokens) and bigger.fingerprint != a.fingerprint
    with pytest.raises(DataError, match="unique_tokens"):
        unique_subset(corpus.train, len(train) + 1)


def test_subset_never_holds_held_out_tokens(tmp_path: Path) -> None:
    # a .bin whose held-out tail uses ids the training split never does: any held-out token would show
    ids = np.concatenate([np.arange(90_000) % 100, 100 + np.arange(10_000) % 50]).astype(np.uint16)
    path = tmp_path / "tokens.bin"
    ids.tofile(path)
    corpus = load_corpus(DataConfig(source=str(path), vocab_size=200, val_fraction=0.1))
    assert int(np.asarray(corpus.val).min()) >= 100
    for unique in (5_000, 60_000, len(corpus.train)):
        subset = unique_subset(corpus.train, unique)
        assert len(subset.tokens) == unique and int(subset.tokens.max()) < 100


def _sweep(tmp_path: Path, corpus: Path, name: str = "dc", **grid: object) -> Path:
    shapes = [{"n_layer": 1, "d_model": 16}, {"n_layer": 1, "d_model": 32}]
    return write_sweep(tmp_path / f"{name}.toml", tiny_sweep(
        name, corpus, results_dir=tmp_path / "results",
        grid={"shapes": shapes, "n_tokens": [1e4, 2e4, 4e4, 8e4], **grid}, train={"lr": 5e-3},
        launch={"max_parallel": 2, "timeout_min": 10}))


def test_plan_crosses_unique_tokens_and_keeps_the_other_ids(tmp_path: Path, text_corpus: Path) -> None:
    plain = plan_sweep(load_sweep(_sweep(tmp_path, text_corpus, "plain")))
    plan = plan_sweep(load_sweep(_sweep(tmp_path, text_corpus, "plain", unique_tokens=[0, 1e4, 4e4])))
    fresh = [r for r in plan.runs if not r.unique_tokens]
    assert [r.run_id for r in fresh] == plain.run_ids  # U_D = 0: the ordinary runs, same folders
    assert "unique_tokens" not in fresh[0].to_dict()
    repeated = [r for r in plan.runs if r.unique_tokens]
    # per size: U_D = 1e4 at all 4 budgets, U_D = 4e4 at the 2 budgets >= it (U_D > D skipped)
    assert len(repeated) == 2 * (4 + 2)
    assert all(r.unique_tokens <= r.n_tokens_target for r in repeated)
    assert sorted({round(r.epochs) for r in repeated if r.unique_tokens == 10_000}) == [1, 2, 4, 8]
    assert all(f"-U{'10K' if r.unique_tokens == 10_000 else '40K'}-" in r.run_id for r in repeated)
    assert len(set(plan.run_ids)) == len(plan.runs)
    frame = plan.to_frame()
    assert {"unique_tokens", "epochs"} <= set(frame.columns) and "unique_tokens" not in plain.to_frame()


@pytest.mark.parametrize("grid, key, words", [
    ({"unique_tokens": [1e5]}, "[grid].unique_tokens[0] = 100000.0", "U_D > D for every token budget"),
    ({"unique_tokens": [100]}, "[grid].unique_tokens[0] = 100.0", "smaller than one batch"),
    ({"unique_tokens": [1e4, 1e4]}, "[grid].unique_tokens = [10000.0, 10000.0]", "must not repeat"),
    ({"unique_tokens": [1e4 + 0.5]}, "[grid].unique_tokens[0] = 10000.5", "whole number"),
])
def test_bad_unique_tokens_is_one_config_error(tmp_path: Path, text_corpus: Path, grid: dict, key: str,
                                               words: str) -> None:
    path = _sweep(tmp_path, text_corpus, **grid)
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}: ") and words in message and "\n" not in message


def test_unique_tokens_beyond_the_training_split_fails_before_any_job(tmp_path: Path, text_corpus: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    path = _sweep(tmp_path, text_corpus, n_tokens=[1e4, 8e6], unique_tokens=[4e6])
    cfg = load_sweep(path)
    with pytest.raises(ConfigError, match=r"\[grid\]\.unique_tokens\[0\] = 4000000.0: larger than the training split"):
        check_unique_tokens_fit(cfg, 500_000)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "ConfigError" in err and "[grid].unique_tokens[0] = 4000000.0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


def test_repeated_runs_record_their_epochs_and_are_fitted(tmp_path: Path, text_corpus: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    path = _sweep(tmp_path, text_corpus, unique_tokens=[0, 1e4])
    assert main(["run", str(path), "--n-boot", "10"]) == 0
    out = capsys.readouterr().out
    sweep_dir = tmp_path / "results" / "dc"
    table = pd.read_csv(sweep_dir / "runs.csv")
    assert len(table) == 16 and (table["status"] == "done").all()
    prints = set()
    for run_dir in sweep_dir.iterdir():
        if not (run_dir / "result.json").exists():
            continue
        spec, result = (json.loads((run_dir / f).read_text()) for f in ("spec.json", "result.json"))
        if spec.get("unique_tokens"):
            assert result["unique_tokens"] == spec["unique_tokens"] == 10_000
            assert result["epochs"] == pytest.approx(spec["n_tokens"] / 10_000)
            prints.add(result["subset_fingerprint"])
        else:
            assert "epochs" not in result and "unique_tokens" not in spec
    assert len(prints) == 1  # every size and budget trained on the same 10K tokens
    assert "6 of 16 runs repeat their data" in out and "R*_D = " in out and "R*_N = " in out
    assert "epochs of 10k unique tokens ~ " in out and "compute-optimal size and epochs" in out
    saved = json.loads((sweep_dir / "data_constrained.json").read_text())
    assert saved["n_repeated"] == 6 and saved["allocation"]
    assert (sweep_dir / "plots" / "allocation.png").stat().st_size > 0

    # scaling compare: the source's allocation under its unique budget beside the laws' table
    assert main(["compare", str(sweep_dir / "runs.csv"), "--n-boot", "5", "--min-flops", "10", "--max-flops", "12"]) == 0
    out = capsys.readouterr().out
    assert "runs: data-constrained law, R*_D = " in out and "unlimited_epochs" in out

    # scaling report: the page carries the data-constrained law and its figure; Approach 3 the 10 fresh runs
    page_path = tmp_path / "page.html"
    assert main(["report", str(sweep_dir / "runs.csv"), "--n-boot", "5", "--out", str(page_path)]) == 0
    page = page_path.read_text()
    assert "<h2>Data-constrained law (Muennighoff et al. 2023)</h2>" in page and "R*_D = " in page
    assert 'alt="allocation.png"' in page and "<p>10 runs, 10 done" in page
