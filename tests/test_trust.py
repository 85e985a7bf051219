"""Nothing silently wrong: a sweep's fit uses the runs it plans, on one corpus; every source is shown; a sweep
still training elsewhere is not called finished; names stay inside results_dir; planned runs obey the caps."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scaling
from conftest import tiny_sweep, write_sweep
from scaling.cli import main
from scaling.compare import source_labels
from scaling.config import load_sweep
from scaling.data import load_corpus
from scaling.errors import ConfigError, DataError
from scaling.launch import launch
from scaling.plan import plan_sweep
from scaling.results import CKPT, RunLock, read_json, read_metrics, read_result, write_json_atomic
from scaling.train import train_run

REPO = Path(scaling.__file__).resolve().parent.parent
BUDGETS = [2560, 5120]  # 10 and 20 steps of 8 x 32 tokens


def small_corpus(tmp_path: Path, text_corpus: Path) -> Path:
    """A private, editable copy of 8 files of the shared corpus."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for path in sorted(text_corpus.iterdir())[:8]:
        shutil.copy(path, folder / path.name)
    return folder


def sweep_file(tmp_path: Path, corpus: Path, **sections: dict) -> Path:
    cfg = tiny_sweep("s", corpus, results_dir=tmp_path / "results", **sections)
    return write_sweep(tmp_path / "s.toml", cfg)


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["train_loss"]) for r in read_metrics(run_dir) if "train_loss" in r]


def fingerprint(run_dir: Path) -> str:
    return read_result(run_dir)["corpus"]["fingerprint"]


# ------------------------------------------------------------------------------------------ stale runs


def test_fit_of_an_edited_sweep_uses_only_its_planned_runs(tmp_path: Path, text_corpus: Path,
                                                           capsys: pytest.CaptureFixture,
                                                           count_case: Callable) -> None:
    toml = sweep_file(tmp_path, text_corpus, grid={"n_tokens": BUDGETS}, train={"batch_size": 8, "lr": 3e-3})
    assert main(["run", str(toml), "--no-fit"]) == 0
    capsys.readouterr()

    # lr 3e-3 -> 1e-3: two new runs planned, none trained; the two old folders are not this sweep's runs
    sweep_file(tmp_path, text_corpus, grid={"n_tokens": BUDGETS}, train={"batch_size": 8, "lr": 1e-3})
    assert main(["fit", str(toml), "--n-boot", "0"]) == 2
    captured = capsys.readouterr()
    assert "not in this sweep's plan: 2 run folder(s)" in captured.out and "--all-runs" in captured.out
    assert "planned but not started: 2 run(s)" in captured.out
    assert "FitError" in captured.err and "0 usable run(s) of 0" in captured.err
    assert main(["fit", str(toml), "--n-boot", "0", "--all-runs"]) == 0
    assert "every run folder" in capsys.readouterr().out
    assert main(["status", str(toml)]) == 0
    out = capsys.readouterr().out
    assert "pending: 2" in out and "not in this sweep's plan: 2 run folder(s)" in out
    count_case("stale-runs")

    # back to lr 3e-3 with one budget removed: `run` trains nothing and its fit and table hold one run
    sweep_file(tmp_path, text_corpus, grid={"n_tokens": BUDGETS[:1]}, train={"batch_size": 8, "lr": 3e-3})
    assert main(["run", str(toml), "--n-boot", "0"]) == 0
    out = capsys.readouterr().out
    assert "0 submitted" in out and "not in this sweep's plan: 1 run folder(s)" in out, out
    assert "(1 runs)" in out
    table = pd.read_csv(tmp_path / "results" / "s" / "runs.csv")
    assert len(table) == 1 and table["n_tokens"].tolist() == [BUDGETS[0]]
    assert table["lr"].tolist() == [3e-3]
    count_case("stale-runs")

    # a results folder or a CSV has no plan: every run is used, and the output says so
    assert main(["fit", str(tmp_path / "results" / "s"), "--n-boot", "0"]) == 0
    assert "no sweep plan: every run folder in it is used (2)" in capsys.readouterr().out
    count_case("stale-runs")


def test_run_waits_for_a_run_another_launcher_trains(tmp_path: Path, text_corpus: Path,
                                                     capsys: pytest.CaptureFixture, count_case: Callable) -> None:
    toml = sweep_file(tmp_path, text_corpus, grid={"n_tokens": [500 * 256]})
    long = plan_sweep(load_sweep(toml)).runs[0]
    busy = tmp_path / "results" / "s" / long.run_id
    busy.mkdir(parents=True)
    write_json_atomic(busy / "spec.json", long.to_dict())
    # another launcher's job, training the sweep's one run (500 steps) in its own process
    other = subprocess.Popen([sys.executable, "-m", "scaling.cli", "train", str(busy), "--threads", "1"],
                             env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not RunLock(busy).is_held_elsewhere():
        assert other.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    assert main(["run", str(toml), "--n-boot", "0"]) == 0
    out = capsys.readouterr().out
    assert "0 submitted" in out and "1 running elsewhere" in out
    assert "waiting for 1 run(s) being trained elsewhere" in out and "sweep finished" in out
    assert other.wait(timeout=60) == 0
    table = pd.read_csv(tmp_path / "results" / "s" / "runs.csv")
    assert table["status"].tolist() == ["done"]  # the table and fit waited for it
    count_case("stale-runs")


def test_run_trained_elsewhere_without_a_result_makes_the_sweep_partial(tmp_path: Path, text_corpus: Path,
                                                                        capsys: pytest.CaptureFixture,
                                                                        count_case: Callable) -> None:
    toml = sweep_file(tmp_path, text_corpus, grid={"n_tokens": BUDGETS})
    busy = tmp_path / "results" / "s" / plan_sweep(load_sweep(toml)).runs[1].run_id
    busy.mkdir(parents=True)
    other_launcher = RunLock(busy)
    assert other_launcher.acquire()
    stopped = threading.Timer(1.0, other_launcher.release)  # it stops (killed, cancelled) before finishing
    stopped.start()
    try:
        assert main(["run", str(toml), "--n-boot", "0"]) == 1
    finally:
        stopped.cancel()
        other_launcher.release()
    out = capsys.readouterr().out
    assert "sweep NOT finished" in out and busy.name in out
    assert "partial" in out and "sweep finished" not in out
    count_case("stale-runs")


# ------------------------------------------------------------------------------------------ data change


def test_corpus_edited_in_place_is_refused_by_fit_and_retrained_by_run(tmp_path: Path, text_corpus: Path,
                                                                       capsys: pytest.CaptureFixture,
                                                                       count_case: Callable) -> None:
    corpus = small_corpus(tmp_path, text_corpus)
    one = sweep_file(tmp_path, corpus, grid={"n_tokens": BUDGETS[:1]})
    launch(plan_sweep(load_sweep(one)), verbose=False)
    first = tmp_path / "results" / "s" / plan_sweep(load_sweep(one)).runs[0].run_id
    old = fingerprint(first)

    edited = sorted(corpus.iterdir())[0]
    edited.write_bytes(edited.read_bytes() + b"\n# edited in place\n" * 200)
    # a second budget trained on the new data by `scaling train RUN` (no launcher, which would retire the first
    # run: launch() does since issue 25): the first run is "done" on the old data
    both = sweep_file(tmp_path, corpus, grid={"n_tokens": BUDGETS})
    [spec] = [r for r in plan_sweep(load_sweep(both)).runs if r.run_id != first.name]
    second = tmp_path / "results" / "s" / spec.run_id
    second.mkdir()
    write_json_atomic(second / "spec.json", spec.to_dict())
    train_run(second, num_threads=1)
    new = fingerprint(second)
    assert new != old

    capsys.readouterr()
    assert main(["fit", str(both), "--n-boot", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("FitError:") and "trained on different data" in err and "\n" not in err
    assert old in err and new in err and first.name in err and second.name in err
    assert main(["fit", str(both), "--n-boot", "0", "--allow-mixed-data"]) == 0
    assert "fitted together" in capsys.readouterr().out
    count_case("data-change", 2)

    # `scaling run` compares what each finished run recorded with the corpus now: the stale one is retrained
    assert main(["run", str(both), "--no-fit"]) == 0
    out = capsys.readouterr().out
    assert "data changed: 1 finished run(s)" in out and old in out and "1 submitted" in out
    assert fingerprint(first) == fingerprint(second) == new
    assert read_json(first / f"stale-data-{old}" / "result.json")["corpus"]["fingerprint"] == old  # kept
    assert main(["fit", str(both), "--n-boot", "0"]) == 0
    count_case("data-change")


def test_checkpoint_made_on_an_earlier_corpus_is_not_resumed(tmp_path: Path, text_corpus: Path,
                                                             caplog: pytest.LogCaptureFixture,
                                                             count_case: Callable) -> None:
    corpus = small_corpus(tmp_path, text_corpus)
    toml = sweep_file(tmp_path, corpus, grid={"n_tokens": BUDGETS[1:]}, train={"log_every_steps": 1})
    spec = plan_sweep(load_sweep(toml)).runs[0]
    run_dir = tmp_path / spec.run_id
    run_dir.mkdir()
    write_json_atomic(run_dir / "spec.json", spec.to_dict())
    train_run(run_dir, num_threads=1, stop_at_step=12)  # interrupted: ckpt.pt at step 12, no result
    assert (run_dir / CKPT).exists() and read_result(run_dir) is None

    edited = sorted(corpus.iterdir())[0]
    edited.write_bytes(b"# rewritten\n" * 500 + edited.read_bytes())
    result = train_run(run_dir, num_threads=1)
    assert "trained on corpus" in caplog.text and list(run_dir.glob(f"{CKPT}.bad-*"))
    assert result["corpus"]["fingerprint"] == load_corpus(spec.data).fingerprint
    # trained from scratch on the new corpus: the same curve as a run that never saw the old one
    fresh = tmp_path / "fresh" / spec.run_id
    fresh.mkdir(parents=True)
    write_json_atomic(fresh / "spec.json", spec.to_dict())
    assert train_run(fresh, num_threads=1)["val_loss"] == result["val_loss"]
    assert losses(fresh) == losses(run_dir) and len(losses(run_dir)) == spec.n_steps
    count_case("data-change")


def test_wsd_trunk_of_an_earlier_corpus_is_not_reused(tmp_path: Path, text_corpus: Path,
                                                       capsys: pytest.CaptureFixture, count_case: Callable) -> None:
    corpus = small_corpus(tmp_path, text_corpus)
    wsd = {"grid": {"n_tokens": BUDGETS}, "train": {"batch_size": 8, "schedule": "wsd"}}
    toml = sweep_file(tmp_path, corpus, **wsd)
    assert main(["run", str(toml), "--no-fit"]) == 0
    edited = sorted(corpus.iterdir())[0]
    edited.write_bytes(edited.read_bytes() + b"\n# edited in place\n" * 200)
    assert main(["run", str(toml), "--no-fit"]) == 0
    assert "data changed: 2 finished run(s)" in capsys.readouterr().out
    # the same sweep trained once, on the new corpus only: the relaunch must match it run for run
    fresh = write_sweep(tmp_path / "fresh.toml", tiny_sweep("s", corpus, results_dir=tmp_path / "fresh", **wsd))
    assert main(["run", str(fresh), "--no-fit"]) == 0
    for spec in plan_sweep(load_sweep(toml)).runs:
        again, once = (read_result(tmp_path / d / "s" / spec.run_id) for d in ("results", "fresh"))
        assert again["corpus"]["fingerprint"] == once["corpus"]["fingerprint"]
        assert again["val_loss"] == once["val_loss"]  # the old trunk checkpoint was not resumed
    count_case("data-change")


# ------------------------------------------------------------------------------------------ compare labels


def test_compare_shows_every_source_under_its_own_label(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        count_case: Callable) -> None:
    for folder, alpha in (("A", 0.30), ("B", 0.40)):
        rows = [(n, d, 1.7 + 400 / n**alpha + 410 / d**0.28) for n in (1e7, 3e7, 1e8, 3e8, 1e9)
                for d in (1e9, 3e9, 1e10, 3e10)]
        (tmp_path / folder).mkdir()
        pd.DataFrame(rows, columns=["params", "tokens", "loss"]).to_csv(tmp_path / folder / "runs.csv", index=False)
    assert main(["compare", str(tmp_path / "A" / "runs.csv"), str(tmp_path / "B" / "runs.csv"),
                 "--n-boot", "0", "--min-flops", "20", "--max-flops", "20"]) == 0
    laws = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.strip().startswith("1e+20")]
    assert "A/runs" in laws and "B/runs" in laws and "runs" not in laws
    count_case("labels")


def test_source_labels_are_unique() -> None:
    assert source_labels(["A/runs", "B/runs", "results/tiny"]) == ["A/runs", "B/runs", "tiny"]
    assert source_labels(["x/A/runs", "y/A/runs"]) == ["A/runs", "A/runs #2"]
    assert source_labels(["out/Kaplan 2020"], taken=["Kaplan 2020"]) == ["out/Kaplan 2020"]


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("how", ["key", "file", "set"])
@pytest.mark.parametrize("name", ["..", ".", ".hidden"])
def test_sweep_name_must_be_one_safe_folder(tmp_path: Path, text_corpus: Path, capsys: pytest.CaptureFixture,
                                            count_case: Callable, how: str, name: str) -> None:
    cfg = tiny_sweep("ok", text_corpus, results_dir=tmp_path / "results", grid={"n_tokens": [2560]})
    argv: list[str] = []
    if how == "key":
        cfg["name"] = name
    elif how == "set":
        argv = ["--set", f"name={name}"]
    else:
        del cfg["name"]
    toml = write_sweep(tmp_path / (f"{name}.toml" if how == "file" else "s.toml"), cfg)
    expected = Path(toml).stem if how == "file" else name
    assert main(["run", str(toml), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ConfigError: {toml}: name = {expected!r}: must be one folder name") and "\n" not in err
    assert not (tmp_path / "results").exists() and not list(tmp_path.glob("*.csv"))
    count_case("bad-input")


def test_arch_column_must_be_a_safe_folder(tmp_path: Path, capsys: pytest.CaptureFixture,
                                           count_case: Callable) -> None:
    rows = [{"n_params": n, "n_tokens": d, "loss": 2 + 100 / n**0.3 + 100 / d**0.3, "arch": arch}
            for arch in ("gpt", "../../escaped") for n in (1e6, 1e7, 1e8) for d in (1e8, 1e9)]
    csv = tmp_path / "out" / "runs.csv"
    csv.parent.mkdir()
    pd.DataFrame(rows).to_csv(csv, index=False)
    assert main(["fit", str(csv), "--n-boot", "0"]) == 2
    assert "column 'arch' = '../../escaped'" in capsys.readouterr().err
    assert not (tmp_path / "escaped").exists()
    count_case("bad-input")


@pytest.mark.parametrize("sections, match", [
    ({"model": {"aspect_ratio": 1e-10}}, r"\[model\].aspect_ratio = 1e-10: must be in \[1, 1000\]"),
    ({"model": {"aspect_ratio": 1e-300}}, r"\[model\].aspect_ratio = 1e-300"),
    ({"model": {"aspect_ratio": 1e5}}, r"\[model\].aspect_ratio = 100000.0"),
    ({"grid": {"shapes": [{"n_layer": 1000, "d_model": 32768}], "n_tokens": [1e9]}},
     r"\[grid\].shapes\[0\]: plans gpt L1000 d32768 with 1.29e\+13 parameters, more than the cap of 1e\+13"),
    ({"grid": {"shapes": [{"n_layer": 100, "d_model": 32768}], "n_tokens": [1e16]}},
     r"\[grid\].n_tokens\[0\]: plans gpt L100 d32768 .* FLOPs, more than the cap of 1e\+28"),
    ({"model": {"head_dim": 400000}, "grid": {"shapes": [], "n_params": [3e4], "n_tokens": [1e5]}},
     r"\[grid\].n_params\[0\]: plans gpt L12500 d400000 with 2.4e\+16 parameters"),
    ({"grid": {"design": "isoflop", "shapes": [], "flops": [1e28], "n_sizes": 3,
               "prior": {"law": "Besiroglu 2024"}}},
     r"\[grid\].flops\[0\] = 1e\+28: the prior .* gives N_opt = 1.08e\+13, not a model size in \(0, 1e\+13\]"),
    ({"grid": {"design": "isoflop", "shapes": [], "n_params": [1e4, 1e5], "flops": [1e12], "n_sizes": 10**4}},
     r"\[grid\].n_sizes = 10000: must be in \[3, 1000\]"),
    ({"data": {"vocab_size": 100}}, r"\[data\].vocab_size = 100: must be 256 for byte-level text"),
    ({"data": {"vocab_size": 1000}}, r"\[data\].vocab_size = 1000: must be 256 for byte-level text"),
    ({"data": {"source": "stdlib", "vocab_size": 128}}, r"\[data\].vocab_size = 128: must be 256"),
])
def test_planned_runs_and_data_obey_the_config_caps(tmp_path: Path, text_corpus: Path,
                                                    capsys: pytest.CaptureFixture, count_case: Callable,
                                                    sections: dict, match: str) -> None:
    cfg = tiny_sweep("caps", text_corpus, results_dir=tmp_path / "results", grid={"n_tokens": [2560]})
    for table, values in sections.items():
        cfg[table] = cfg[table] | values
    if "n_tokens" not in cfg["grid"] or cfg["grid"].get("design") == "isoflop":
        cfg["grid"].pop("n_tokens", None)
    toml = write_sweep(tmp_path / "caps.toml", cfg)
    with pytest.raises(ConfigError, match=match) as info:
        plan_sweep(load_sweep(toml))
    assert "\n" not in str(info.value) and str(toml) in str(info.value)
    assert main(["run", str(toml)]) == 2 and "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
    count_case("bad-input")


def test_token_file_suffix_is_case_insensitive(tmp_path: Path, count_case: Callable) -> None:
    ids = (np.arange(4000) % 1000).astype(np.uint16)
    upper = tmp_path / "TOKENS.BIN"
    ids.tofile(upper)
    cfg = tiny_sweep("bin", upper, results_dir=tmp_path / "results", data={"vocab_size": 1000, "val_tokens": 64},
                     grid={"n_tokens": [2560]})
    sweep = load_sweep(write_sweep(tmp_path / "bin.toml", cfg))  # vocab_size 1000 is fine for a token file
    corpus = load_corpus(sweep.data)
    assert np.array_equal(np.concatenate([corpus.train, corpus.val]), ids)  # uint16 ids, not 2 bytes each
    count_case("bad-input")


def test_text_folder_holding_a_token_file_is_refused(tmp_path: Path, text_corpus: Path,
                                                     count_case: Callable) -> None:
    corpus = small_corpus(tmp_path, text_corpus)
    np.arange(100, dtype=np.uint16).tofile(corpus / "extra.Bin")
    cfg = load_sweep(write_sweep(tmp_path / "s.toml", tiny_sweep("s", corpus, grid={"n_tokens": [2560]})))
    with pytest.raises(DataError, match=r"holds 1 token file\(s\) such as extra.Bin"):
        load_corpus(cfg.data)
    count_case("bad-input")
