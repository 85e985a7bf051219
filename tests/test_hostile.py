"""Issue 24's hostile probe, class by class: no traceback on ordinary data, a received folder never writes
outside itself or controls the terminal, external trainers stopped as a whole and read as they wrote."""

from __future__ import annotations

import json
import re
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.analysis.approach3 import ChinchillaLaw, LawParams
from scaling.analysis.suggest import Candidate, Proposal
from scaling.cli import main
from scaling.errors import FitError


def narrow_token_sweep(path: Path) -> Path:
    """9 runs, 3 sizes x 3 token budgets only 1.2x apart, 2% noise: ordinary small-sweep data on which 74 of
    200 (18 of the first 60) bootstrap refits land on beta = 0 (the resample's losses do not fall with D)."""
    rng = np.random.default_rng(1)
    N = np.repeat([1e4, 3e4, 1e5], 3)
    D = np.tile([1e5, 1.1e5, 1.2e5], 3)
    L = (1.7 + 400 / N ** 0.34 + 400 / D ** 0.28) * np.exp(rng.normal(0, 0.02, 9))
    pd.DataFrame({"n_params": N, "n_tokens": D, "loss": L}).to_csv(path, index=False)
    return path


@pytest.mark.slow  # 60 bootstrap refits twice (18 land on beta = 0): 20-50 s on 2 shared cores
def test_degenerate_bootstrap_refits_are_counted_and_left_out_never_a_crash(
        tmp_path: Path, capsys: pytest.CaptureFixture, count_case: Callable) -> None:
    csv = narrow_token_sweep(tmp_path / "narrow.csv")
    frame = pd.read_csv(csv)
    N, D, L = (frame[c].to_numpy() for c in ("n_params", "n_tokens", "loss"))
    law = ChinchillaLaw().fit(N, D, L).bootstrap(N, D, L, n_boot=60)
    assert law.n_boot_degenerate_ > 0  # the case the probe hit (beta = 0 divided by zero in eq. 4)
    assert (law.bootstrap_degenerate_["beta"] == 0).all() or (law.bootstrap_degenerate_["alpha"] == 0).any()
    assert len(law.bootstrap_params_) + law.n_boot_degenerate_ + law.n_boot_failed_ == 60
    assert not any(LawParams(*row).degenerate for row in law.bootstrap_params_[list("EAB") + ["alpha", "beta"]].itertuples(index=False))
    band = law.compute_optimal_interval(1e12)
    assert 0 < band["n_opt_lo"] < band["n_opt_hi"] < math.inf
    count_case("fault")
    # fit, compare and suggest through the CLI: one report that counts them, exit 0
    assert main(["fit", str(csv), "--n-boot", "60"]) == 0
    out = capsys.readouterr().out
    assert f"{law.n_boot_degenerate_} of 60 bootstrap refits landed on a degenerate law" in out, out
    fit = json.loads((tmp_path / "narrow" / "fit.json").read_text())
    assert fit["approach3"]["n_boot"] == len(law.bootstrap_params_)
    count_case("fault")


def test_a_degenerate_point_fit_is_one_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     count_case: Callable) -> None:
    for params, word in (({"alpha": 0.0, "beta": 0.3}, "alpha = 0"), ({"alpha": 0.3, "beta": 0.0}, "beta = 0"),
                         ({"alpha": 0.3, "beta": 0.3, "B": 0.0}, "B = 0")):
        law = ChinchillaLaw.from_params(**{"E": 1.7, "A": 400.0, "B": 400.0, **params})
        n_opt, d_opt = law.compute_optimal(1e18)  # numpy's 0, inf or NaN, not a ZeroDivisionError
        assert word in law.params_.degenerate
        count_case("fault")
    # `fit` itself refuses such a law (the point estimate must have a compute-optimal split)
    N = np.repeat([1e4, 3e4, 1e5], 3)
    D = np.tile([1e5, 3e5, 1e6], 3)
    with pytest.raises(FitError, match=r"degenerate \(beta = 0"):
        ChinchillaLaw(grid=np.array([[6.0, 0.0, 0.5, 0.3, 0.0]]), n_starts=None).fit(
            N, D, 2.0 + 300 / N ** 0.3 + 0 * D)
    count_case("fault")


def test_a_csv_with_a_one_token_row_fits_or_fails_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                               count_case: Callable) -> None:
    csv = narrow_token_sweep(tmp_path / "one.csv")
    frame = pd.read_csv(csv)
    frame.loc[0, "n_tokens"] = 1
    frame.to_csv(csv, index=False)
    assert main(["fit", str(csv), "--n-boot", "50"]) in (0, 2)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    count_case("fault")


def test_a_proposal_with_n_opt_0_describes_itself(count_case: Callable) -> None:
    law = ChinchillaLaw.from_params(E=1.7, A=1e-300, B=400.0, alpha=0.3, beta=0.3)  # N_opt underflows to 0
    assert float(law.compute_optimal(1e12)[0]) == 0
    pick = Candidate(n_params=1e6, n_tokens=2e7, flops=1.2e14, label="L2-d64")
    text = "\n".join(Proposal(picks=(pick,), target_flops=1e15, budget=1e15, n_opt=0.0, lo=0.0, hi=math.inf,
                              factor_after=5.0, gains=(5.0,), law=law).describe())
    assert "N/N_opt(6ND)=undefined (N_opt = 0)" in text
    count_case("fault")


# ---- a received folder never writes outside itself (items 1-3) ----

def test_a_fingerprint_from_result_json_never_becomes_a_path_outside_the_run(tmp_path: Path,
                                                                             count_case: Callable) -> None:
    from scaling.provenance import retire_stale
    run = tmp_path / "sweep" / "run1"
    run.mkdir(parents=True)
    (run / "stale-data-x").mkdir()  # the crafted folder the probe used
    for fingerprint in ("x/../../../../outside/escaped", "a/b", "..", "\x1b[2J"):
        (run / "result.json").write_text("{}")
        aside = retire_stale(run, fingerprint)
        assert aside.parent == run and aside.name.startswith("stale-data-h"), aside
        assert (aside / "result.json").is_file() and not (run / "result.json").exists()
        count_case("fault")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]
    assert retire_stale(run, "ab12cd").name == "stale-data-ab12cd"  # an ordinary fingerprint keeps its name


def test_writes_never_follow_a_symlink(tmp_path: Path, count_case: Callable) -> None:
    from matplotlib.figure import Figure

    from scaling.errors import StorageError
    from scaling.plot import _finish
    from scaling.results import RunLock, append_metrics, write_json_atomic
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("keep")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "linked-run").symlink_to(outside)  # a planned run folder that is a link
    with pytest.raises(StorageError, match="symbolic link"):
        write_json_atomic(sweep / "linked-run" / "status.json", {"status": "running"})
    with pytest.raises(StorageError, match="symbolic link"):
        append_metrics(sweep / "linked-run", {"step": 1})
    run = sweep / "run"
    run.mkdir()
    (run / ".lock").symlink_to(outside / "created")
    with pytest.raises(StorageError, match="symbolic link"):
        RunLock(run).acquire()
    (run / "result.json").symlink_to(victim)
    with pytest.raises(StorageError, match="symbolic link"):
        write_json_atomic(run / "result.json", {})
    (run / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(StorageError, match="symbolic link"):
        append_metrics(run, {"step": 1})
    (sweep / "plots").symlink_to(outside)
    with pytest.raises(StorageError, match="symbolic link"):
        _finish(Figure(), sweep / "plots" / "loss_vs_params.png")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "loss_vs_params.png").symlink_to(victim)
    with pytest.raises(StorageError, match="symbolic link"):
        _finish(Figure(), tmp_path / "plots" / "loss_vs_params.png")
    assert victim.read_text() == "keep" and sorted(p.name for p in outside.iterdir()) == ["victim"]
    count_case("fault", 7)


# ---- strings from run files reach the terminal escaped (item 4) ----

def test_control_characters_from_run_files_are_printed_escaped(capsys: pytest.CaptureFixture,
                                                               count_case: Callable) -> None:
    from scaling.cli import print_table
    from scaling.safe import printable
    hostile = "\x1b]0;owned\x07 \x1b[2J \x9b2J line\nbreak"
    assert all(c.isprintable() for c in printable(hostile)) and "owned" in printable(hostile)
    print_table(pd.DataFrame({"run_id": ["L1-\x1b[2J"], "error": [hostile], "n": [1]}))
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out and "\\x1b[2J" in out, out
    count_case("fault", 2)


# ---- only regular files are read; odd names are one line (items 14, 15) ----

def test_a_corpus_folder_reads_only_regular_files_and_trains_on_non_utf8_names(tmp_path: Path,
                                                                               count_case: Callable) -> None:
    import hashlib
    import os

    from scaling.config import DataConfig
    from scaling.data import _list_files, _path_hash, load_corpus
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("hello " * 100)
    os.mkfifo(corpus / "pipe.txt")  # reading it would block forever
    (corpus / "dangling.txt").symlink_to(tmp_path / "nowhere")
    assert _list_files(corpus) == ["a.txt"]
    count_case("fault", 2)
    # A Latin-1 archive: a file and a folder whose names are not UTF-8 (the probe's traceback). Byte-level text
    # does not care what a file is called: the corpus trains on every byte, and the split hashes the bytes on
    # disk, so the UTF-8 names of every other corpus split exactly as before.
    os.makedirs(os.fsencode(corpus) + b"/sub\xe9")
    (corpus / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"cafe " * 100)
    (corpus / os.fsdecode(b"sub\xe9") / "x.txt").write_bytes(b"sub " * 100)
    assert _list_files(corpus) == ["a.txt", os.fsdecode(b"caf\xe9.txt"), os.fsdecode(b"sub\xe9/x.txt")]
    assert _path_hash("a.txt") == int.from_bytes(hashlib.sha1(b"a.txt").digest()[:8], "big") / 2.0**64
    assert _path_hash(os.fsdecode(b"caf\xe9.txt")) == int.from_bytes(
        hashlib.sha1(b"caf\xe9.txt").digest()[:8], "big") / 2.0**64
    loaded = load_corpus(DataConfig(source=str(corpus)))
    assert len(loaded.train) + len(loaded.val) == 600 + 500 + 400  # every byte of the three files
    count_case("bad input", 2)


def test_a_csv_with_non_utf8_bytes_or_a_fifo_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                          count_case: Callable) -> None:
    import os
    csv = narrow_token_sweep(tmp_path / "latin.csv")
    csv.write_bytes(csv.read_bytes().replace(b"loss", b"loss,note", 1).replace(b"\n", b",caf\xe9\n")
                    .replace(b"loss,note,caf\xe9", b"loss,note", 1))
    for verb in (["fit", str(csv), "--n-boot", "0"], ["compare", str(csv), "--n-boot", "0"],
                 ["suggest", str(csv), "--target-flops", "1e12", "--budget", "1e11"]):
        assert main(verb) == 2
        err = capsys.readouterr().err
        assert "not UTF-8" in err and "Traceback" not in err and err.count("\n") == 1, err
        count_case("bad input")
    fifo = tmp_path / "points.csv"
    os.mkfifo(fifo)
    assert main(["fit", str(fifo), "--n-boot", "0"]) == 2  # refused, not read (it would block)
    assert "ConfigError" in capsys.readouterr().err
    from scaling.analysis.points import read_points_csv  # what a [grid.prior].pilot CSV is read with
    from scaling.errors import ConfigError
    with pytest.raises(ConfigError, match="not a regular file"):
        read_points_csv(fifo)
    count_case("fault", 2)


@pytest.mark.parametrize("flag, value", [("--max-tokens", "nan"), ("--max-tokens", "inf"), ("--seed", "-1"),
                                         ("--max-params", "inf"), ("--max-params", "-1"), ("--max-tokens", "0")])
def test_suggest_arguments_out_of_range_are_one_line(tmp_path: Path, flag: str, value: str,
                                                     capsys: pytest.CaptureFixture, count_case: Callable) -> None:
    csv = narrow_token_sweep(tmp_path / "runs.csv")
    assert main(["suggest", str(csv), "--target-flops", "1e12", "--budget", "1e11", flag, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ConfigError: {flag} ") and err.count("\n") == 1, err
    assert not (tmp_path / "runs_next.csv").exists()
    count_case("bad input")


def test_stopping_a_command_stops_its_whole_process_group(tmp_path: Path, count_case: Callable) -> None:
    import os
    import time

    from scaling.external import _spawn, _stop
    pid_file = tmp_path / "child.pid"
    # the probe's shape: a shell whose child trains on; SIGTERM to the shell alone left the child as an orphan
    argv = ["bash", "-c", f"sleep 300 & echo $! > {pid_file}; wait; true"]
    with open(tmp_path / "command.log", "ab") as log:
        proc = _spawn(argv, log, dict(os.environ))
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    _stop(proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        if open(f"/proc/{child}/stat").read().split()[2] == "Z":  # exited, not yet reaped
            break
        time.sleep(0.05)
    else:
        os.kill(child, 9)
        raise AssertionError(f"the command's child {child} outlived its stopped shell")
    count_case("signals")


def test_recurrent_models_have_no_heads_to_divide_d_model_into(tmp_path: Path, text_corpus: Path,
                                                               count_case: Callable) -> None:
    from conftest import tiny_sweep, write_sweep
    from scaling.config import load_sweep
    from scaling.errors import ConfigError
    for arch in ("lstm", "gru"):
        cfg = tiny_sweep("rnn", text_corpus, results_dir=tmp_path / "r", model={"arch": arch},
                         grid={"n_tokens": [1e4], "shapes": [{"n_layer": 1, "d_model": 50}]})
        from scaling.model import build_model
        from scaling.plan import plan_sweep
        run = plan_sweep(load_sweep(write_sweep(tmp_path / f"{arch}.toml", cfg))).runs[0]
        assert run.shape.d_model == 50
        assert sum(p.numel() for p in build_model(run.shape).parameters()) > 0  # it builds
        count_case("bad input")
    cfg = tiny_sweep("gpt", text_corpus, results_dir=tmp_path / "r",
                     grid={"n_tokens": [1e4], "shapes": [{"n_layer": 1, "d_model": 50}]})
    with pytest.raises(ConfigError, match="divisible"):  # attention still needs it
        load_sweep(write_sweep(tmp_path / "gpt.toml", cfg))


# ---- external results are read as written (item 10) ----

WRITER = """import json, os, sys
run = os.environ["SCALING_RUN_DIR"]
what = open(os.path.join(os.path.dirname(run), "what")).read()
target = "result.json" if what.startswith("RESULT ") else "final.json"
open(os.path.join(run, target), "w").write(what.removeprefix("RESULT "))
"""


def planned_command_run(tmp_path: Path, corpus: Path, script: str, code: str) -> Path:
    """The folder of a planned 2,560-token run of sweep "ext" whose [train].command is `{python} SCRIPT`
    (SCRIPT written to tmp_path with `code`), its spec.json written as `scaling run` would."""
    from conftest import tiny_sweep, write_sweep
    from scaling.config import load_sweep
    from scaling.plan import plan_sweep
    from scaling.results import SPEC, write_json_atomic
    (tmp_path / script).write_text(code)
    cfg = tiny_sweep("ext", corpus, results_dir=tmp_path / "results", grid={"n_tokens": [2560]},
                     train={"command": f"{{python}} {script}"})
    spec = plan_sweep(load_sweep(write_sweep(tmp_path / "ext.toml", cfg))).runs[0]
    run_dir = tmp_path / "results" / "ext" / spec.run_id
    run_dir.mkdir(parents=True)
    write_json_atomic(run_dir / SPEC, spec.to_dict())
    return run_dir


@pytest.mark.parametrize("written, why", [
    ('{"status": "failed", "val_loss": 2.0}', "status = 'failed'"),
    ('{"val_loss": 2.0, "train_loss": NaN}', "train_loss = nan"),
    ('{"val_loss": 2.0, "train_loss": "low"}', "train_loss = 'low'"),
    ('{"val_loss": 2.0, "train_loss": -1}', "train_loss = -1"),
    ('RESULT {"status": "done", "val_loss": 2.0, "n_params": 1}', "wrote no final.json"),
])
def test_an_external_result_is_read_as_written_never_reinterpreted(tmp_path: Path, text_corpus: Path,
                                                                   monkeypatch: pytest.MonkeyPatch, written: str,
                                                                   why: str, count_case: Callable) -> None:
    from scaling.errors import LaunchError
    from scaling.external import run_command
    from scaling.results import read_result
    monkeypatch.chdir(tmp_path)
    run_dir = planned_command_run(tmp_path, text_corpus, "writer.py", WRITER)
    (run_dir.parent / "what").write_text(written)
    with pytest.raises(LaunchError, match=re.escape(why)):
        run_command(run_dir)
    assert read_result(run_dir) is None  # not recorded done
    count_case("fault")


def test_a_folder_named_like_a_bin_file_is_a_folder_of_text(tmp_path: Path, count_case: Callable) -> None:
    from scaling.config import is_token_file
    folder = tmp_path / "dirnamed.bin"
    folder.mkdir()
    (folder / "a.txt").write_text("text")
    assert not is_token_file(str(folder))
    (tmp_path / "ids.bin").write_bytes(b"\x00\x01")
    assert is_token_file(str(tmp_path / "ids.bin")) and is_token_file(str(tmp_path / "IDS.BIN"))
    count_case("bad input")


@pytest.mark.parametrize("body, why", [("import sys\nsys.exit(0)\n", "sys.exit(0)"),
                                       ("import os\nos.chdir('/')\n", "changed the working directory")])
def test_a_plugin_that_exits_or_moves_at_import_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   body: str, why: str, count_case: Callable) -> None:
    import sys

    from scaling.plugin import PluginError, resolve
    name = f"hostile_{abs(hash(body)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(body + "def build(shape):\n    return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=re.escape(why)):
        resolve(f"{name}:build")
    sys.modules.pop(name, None)
    assert Path.cwd() == tmp_path
    count_case("bad input")


def test_a_huge_template_width_is_one_line_not_an_allocation(count_case: Callable) -> None:
    from scaling.external import argv_for
    for template in ("train --lr={lr:>99999999999}", "train --lr={lr:.99999999999f}"):
        with pytest.raises(ValueError, match="width or precision above 1000"):
            argv_for(template, {"lr": 0.001})
        count_case("bad input")
    assert argv_for("train --lr={lr:>8.3f}", {"lr": 0.001}) == ["train", "--lr=   0.001"]


# ---- a bad optional field from an external trainer names its file and field (item 17) ----

CURVE_WRITER = """import json, os
run = os.environ["SCALING_RUN_DIR"]
what = json.load(open(os.path.join(os.path.dirname(run), "what.json")))
with open(os.environ["SCALING_METRICS"], "a") as f:
    f.write("".join(line + "\\n" for line in what["metrics"]))
open(os.path.join(run, "final.json"), "w").write(what["final"])
"""


def external_run(tmp_path: Path, corpus: Path, final: str, metrics: list[str]) -> Path:
    """A planned external run whose command appends `metrics` lines to metrics.jsonl and writes `final`."""
    run_dir = planned_command_run(tmp_path, corpus, "curve_writer.py", CURVE_WRITER)
    (run_dir.parent / "what.json").write_text(json.dumps({"final": final, "metrics": metrics}))
    return run_dir


@pytest.mark.parametrize("field, value, why", [
    ("train_loss", "-1", "train_loss = -1 is outside the plausible range"),
    ("train_loss", "NaN", "train_loss = nan is not a finite number"),
    ("train_loss", '"low"', "train_loss = 'low' is not a finite number"),
    ("val_loss", "-2", "val_loss = -2 is outside the plausible range"),
    ("n_params", '"many"', "n_params = 'many', but the plan counted"),
])
def test_a_bad_field_in_final_json_fails_the_run_naming_file_and_field(
        tmp_path: Path, text_corpus: Path, monkeypatch: pytest.MonkeyPatch, field: str, value: str, why: str,
        count_case: Callable) -> None:
    # final.json is the command's verdict, recorded as written: a value that cannot be the quantity is an error
    from scaling.errors import LaunchError
    from scaling.external import FINAL, run_command
    from scaling.results import read_json, read_result
    monkeypatch.chdir(tmp_path)
    final = {"val_loss": "2.0", "train_loss": "2.1", field: value}
    run_dir = external_run(tmp_path, text_corpus, "{" + ", ".join(f'"{k}": {v}' for k, v in final.items()) + "}",
                           ['{"step": 1, "train_loss": 2.5}'])
    with pytest.raises(LaunchError) as err:
        run_command(run_dir)
    assert str(err.value).startswith(f"{run_dir / FINAL}: {why}") and "\n" not in str(err.value), str(err.value)
    assert read_result(run_dir) is None and read_json(run_dir / "status.json")["state"] != "done"
    count_case("bad input")


@pytest.mark.parametrize("line, field", [
    ('{"step": 2, "train_loss": -1, "tokens": 512}', "train_loss = -1"),
    ('{"step": 2, "train_loss": NaN, "tokens": 512}', "train_loss = nan"),
    ('{"step": 2, "train_loss": "low", "tokens": 512}', "train_loss = 'low'"),
    ('{"step": 2, "train_loss": 2.2, "tokens": -512}', "tokens = -512"),
    ('{"step": 2, "val_loss": -3, "flops": "lots"}', "val_loss = -3"),
])
def test_a_bad_field_in_metrics_jsonl_is_dropped_with_a_warning_naming_file_and_field(
        tmp_path: Path, text_corpus: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        line: str, field: str, count_case: Callable) -> None:
    # metrics.jsonl is a side record: one bad number loses that number, never the run (final.json is the result)
    import logging

    from scaling.external import run_command
    from scaling.results import METRICS, load_curves, read_metrics, read_result
    monkeypatch.chdir(tmp_path)
    run_dir = external_run(tmp_path, text_corpus, '{"val_loss": 2.0}',
                           ['{"step": 1, "train_loss": 2.5, "tokens": 256}', line])
    with caplog.at_level(logging.WARNING):
        result = run_command(run_dir)
    assert result["status"] == "done" and read_result(run_dir)["val_loss"] == 2.0
    assert result["train_loss"] == (2.2 if "2.2" in line else 2.5)  # the last good train_loss of the curve
    warned = [r.getMessage() for r in caplog.records if "bad field" in r.getMessage()]
    assert warned and warned[0].startswith(f"{run_dir / METRICS}: dropped ") and f"e.g. {field}" in warned[0], warned
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2] and records[0] == {"step": 1, "train_loss": 2.5, "tokens": 256}
    assert field.split(" =")[0] not in records[1]  # the bad field is gone, the rest of its record kept
    curves = load_curves(run_dir.parent)  # and every reader of the curve sees only numbers
    for column in ("train_loss", "val_loss", "tokens"):
        if column in curves:
            assert pd.to_numeric(curves[column], errors="coerce").dropna().ge(0).all()
    count_case("bad input")
