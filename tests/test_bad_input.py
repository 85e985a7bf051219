"""Bad input fails in one line: exit status 2, one stderr line naming the problem, never a traceback.

Configs are checked field by field (every dataclass field of every section, found programmatically), then
unknown keys and names, corpora, CSVs and too-small fits; a property-based test feeds random configs and
CSVs and accepts only a clean ScalingError or a valid result.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import tiny_sweep, write_sweep
from scaling.cli import main
from scaling.config import ShapeConfig, SweepConfig, load_sweep
from scaling.errors import ConfigError, FitError, ScalingError
from scaling.analysis import ChinchillaLaw, LawParams, fit_sweep, read_points_csv, select_done
from scaling.plan import Plan, plan_sweep

SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(SweepConfig)
            if f.default_factory is not dataclasses.MISSING}
TOP_LEVEL = [f for f in dataclasses.fields(SweepConfig) if f.name not in SECTIONS and f.name != "source"]


# ------------------------------------------------------------------------------------------ helpers


def base_config(tmp_path: Path, corpus: Path) -> dict[str, Any]:
    """A valid tiny grid sweep as a dict of TOML tables."""
    return tiny_sweep("bad", corpus, results_dir=tmp_path / "results", grid={"n_tokens": [2560]})


def with_value(cfg: dict[str, Any], section: str | None, key: str, value: Any) -> dict[str, Any]:
    cfg = json.loads(json.dumps(cfg))
    if section is None:
        cfg[key] = value
    elif section == "grid.shapes":
        cfg["grid"]["shapes"][0][key] = value
    else:
        cfg.setdefault(section, {})[key] = value
    return cfg


def cli_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """Run the CLI; assert exit 2 with exactly one stderr line and no traceback; return that line."""
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, f"exit {rc}, stderr: {err}"
    assert "Traceback" not in err
    assert len(lines) == 1, f"stderr is not one line: {err!r}"
    return lines[0]


def fields_of(cls: type) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def all_fields() -> list[tuple[str | None, str, Any]]:
    """(section, key, type hint) of every config key: top level, each [section], and [[grid.shapes]]."""
    out: list[tuple[str | None, str, Any]] = [(None, f.name, typing.get_type_hints(SweepConfig)[f.name])
                                              for f in TOP_LEVEL]
    for section, cls in SECTIONS.items():
        out += [(section, name, hint) for name, hint in fields_of(cls)]
    out += [("grid.shapes", name, hint) for name, hint in fields_of(ShapeConfig)]
    return out


def wrong_type(hint: Any) -> list[Any]:
    if typing.get_origin(hint) is tuple:
        (item, _) = typing.get_args(hint)
        # a bare string is shorthand for a one-item list of strings (`arch = "gpt"`), so use a number there
        return [7 if item is str else "not a list", [wrong_type(item)[0]]]
    if dataclasses.is_dataclass(hint):
        return ["not a table"]
    return {bool: ["yes", 1], int: ["seven", 2.5, True], float: ["x", True], str: [7, False, [1]]}[hint]


def out_of_range(hint: Any) -> list[Any]:
    if typing.get_origin(hint) is tuple:
        (item, _) = typing.get_args(hint)
        return [[v] for v in out_of_range(item)]
    return {int: [-1], float: [-1.0, math.inf, math.nan]}.get(hint, [])


def names_key(message: str, section: str | None, key: str) -> bool:
    """The message names the key: `name`, `[train].lr`, or `[grid.shapes].n_layer` for list-of-table items."""
    return key in message and (section is None or f"[{section}]" in message or f"[{section}." in message)


# ------------------------------------------------------------------------------------------ config


def test_every_config_field_rejects_a_wrong_type(tmp_path: Path, text_corpus: Path,
                                                 capsys: pytest.CaptureFixture, count_case: Callable) -> None:
    base = base_config(tmp_path, text_corpus)
    fields = all_fields()
    assert len(fields) >= 40  # every section's fields were found
    n = 0
    for section, key, hint in fields:
        for value in wrong_type(hint):
            toml = write_sweep(tmp_path / "wrong.toml", with_value(base, section, key, value))
            with pytest.raises(ConfigError) as info:
                load_sweep(toml)
            assert names_key(str(info.value), section, key) and "\n" not in str(info.value), info.value
            line = cli_error(capsys, ["plan", str(toml)])
            assert line.startswith("ConfigError: ") and names_key(line, section, key)
            n += 1
    count_case("bad input", n)


def test_every_numeric_config_field_rejects_an_out_of_range_value(tmp_path: Path, text_corpus: Path,
                                                                  count_case: Callable) -> None:
    base = base_config(tmp_path, text_corpus)
    # n_sizes only means something (and is only checked) in an IsoFLOP design.
    isoflop = with_value(with_value(with_value(base, "grid", "design", "isoflop"), "grid", "flops", [1e12]),
                         "grid", "n_params", [1e4, 1e5])
    del isoflop["grid"]["shapes"], isoflop["grid"]["n_tokens"]
    n = 0
    for section, key, hint in all_fields():
        for value in out_of_range(hint):
            cfg = isoflop if key in ("n_sizes", "flops") else base
            toml = write_sweep(tmp_path / "range.toml", with_value(cfg, section, key, value))
            with pytest.raises(ConfigError, match=key) as info:
                load_sweep(toml)
            assert "\n" not in str(info.value)
            n += 1
    assert n >= 30
    count_case("bad input", n)


@pytest.mark.parametrize("section, key, value, match", [
    (None, "nmae", "x", "nmae: unknown key"),
    ("train", "learning_rate", 1e-3, r"\[train\].learning_rate: unknown key"),
    ("data", "path", "x", r"\[data\].path: unknown key"),
    ("grid.shapes", "width", 3, "width: unknown key"),
    (None, "trian", {"lr": 1e-3}, "trian: unknown key"),
    ("model", "arch", "transformerxl", r"\[model\].arch = 'transformerxl': must be one of gpt, llama, lstm, gru"),
    ("data", "source", "/no/such/corpus", r"\[data\].source = '/no/such/corpus': no such file"),
    ("launch", "backend", "kubernetes", r"\[launch\].backend"),
    ("grid", "design", "random", r"\[grid\].design"),
    ("wandb", "mode", "sometimes", r"\[wandb\].mode"),
    ("train", "seeds", [0, 0], r"\[train\].seeds.*must not repeat"),
    ("train", "seeds", [-1], r"\[train\].seeds.*>= 0"),
    ("grid", "shapes", [{"n_layer": 1, "d_model": 33}], "divisible"),
])
def test_unknown_keys_and_names(tmp_path: Path, text_corpus: Path, capsys: pytest.CaptureFixture,
                                count_case: Callable, section: str | None, key: str, value: Any,
                                match: str) -> None:
    toml = write_sweep(tmp_path / "s.toml", with_value(base_config(tmp_path, text_corpus), section, key, value))
    with pytest.raises(ConfigError, match=match):
        load_sweep(toml)
    assert cli_error(capsys, ["plan", str(toml)]).startswith("ConfigError: ")
    count_case("bad input")


@pytest.mark.parametrize("content", [b"\xff\xfe\x00 not utf-8", b"name = \n", b"[train\n", b"= 3"])
def test_unreadable_toml(tmp_path: Path, capsys: pytest.CaptureFixture, count_case: Callable,
                         content: bytes) -> None:
    toml = tmp_path / "s.toml"
    toml.write_bytes(content)
    assert "not valid TOML" in cli_error(capsys, ["plan", str(toml)])
    count_case("bad input")


@pytest.mark.parametrize("argv_tail, match", [
    (["--set", "name.x=1"], "name is not a table"),
    (["--set", "name.x.y=1"], "name is not a table"),
    (["--set", "train.lr.x=1"], r"\[train\].lr = \{'x': 1\}: must be a number"),
    (["--set", "train.lr=fast"], r"\[train\].lr = 'fast'"),
    (["--set", "train=3"], r"\[train\] = 3: must be a table"),
    (["--set", "lr"], "expected KEY=VALUE"),
])
def test_bad_overrides(tmp_path: Path, text_corpus: Path, capsys: pytest.CaptureFixture,
                       count_case: Callable, argv_tail: list[str], match: str) -> None:
    toml = write_sweep(tmp_path / "s.toml", base_config(tmp_path, text_corpus))
    line = cli_error(capsys, ["plan", str(toml), *argv_tail])
    assert re.search(match, line), line
    count_case("bad input")


def test_missing_sweep_file_and_source(tmp_path: Path, capsys: pytest.CaptureFixture,
                                       count_case: Callable) -> None:
    assert "no such sweep file" in cli_error(capsys, ["plan", str(tmp_path / "nope.toml")])
    assert "not a sweep .toml" in cli_error(capsys, ["fit", str(tmp_path / "nope.txt")])
    (tmp_path / "empty_results").mkdir()
    assert "no run folders" in cli_error(capsys, ["fit", str(tmp_path / "empty_results")])
    count_case("bad input", 3)


# ------------------------------------------------------------------------------------------ corpora


def _corpus_case(tmp_path: Path, kind: str) -> Path:
    if kind == "empty folder":
        (tmp_path / "c").mkdir()
    elif kind == "only hidden files":
        (tmp_path / "c").mkdir()
        (tmp_path / "c" / ".hidden").write_text("x" * 10_000)
    elif kind == "empty files":
        (tmp_path / "c").mkdir()
        (tmp_path / "c" / "a.txt").write_text("")
        (tmp_path / "c" / "b.txt").write_text("")
    elif kind == "empty file":
        (tmp_path / "c").write_text("")
    elif kind == "too short":
        (tmp_path / "c").write_text("only a few bytes")
    elif kind == "odd .bin":
        (tmp_path / "c.bin").write_bytes(b"\x01\x00\x02")
        return tmp_path / "c.bin"
    elif kind == "missing":
        pass
    return tmp_path / "c"


@pytest.mark.parametrize("kind", ["empty folder", "only hidden files", "empty files", "empty file", "too short",
                                  "odd .bin", "missing"])
def test_bad_corpus_fails_the_run_verb_in_one_line(tmp_path: Path, text_corpus: Path,
                                                   capsys: pytest.CaptureFixture, count_case: Callable,
                                                   kind: str) -> None:
    corpus = _corpus_case(tmp_path, kind)
    cfg = with_value(base_config(tmp_path, text_corpus), "data", "source", str(corpus))
    toml = write_sweep(tmp_path / "s.toml", cfg)
    line = cli_error(capsys, ["run", str(toml), "--no-fit"])
    assert line.split(":")[0] in ("ConfigError", "DataError") and str(corpus) in line
    assert not list((tmp_path / "results").rglob("spec.json")), "runs were submitted despite a bad corpus"
    count_case("bad input")


# ------------------------------------------------------------------------------------------ CSVs and fits


@pytest.mark.parametrize("text, match", [
    ("a,b,c\n1,2,3\n", "missing column"),
    ("params,loss\n1e6,3\n", "missing column.*tokens"),
    ("params,tokens,loss\n1e6,-2e7,3\n", "'tokens', line 2: -2e\\+07"),
    ("params,tokens,loss\n0,2e7,3\n", "'params', line 2: 0"),
    ("params,tokens,loss\n1e6,2e7,abc\n", "'loss', line 2: 'abc'"),
    ("params,tokens,loss\n1e6,2e7,0\n", "'loss', line 2"),
    ("params,tokens,loss\n1e6,inf,3\n", "'tokens', line 2"),
    ("params,tokens,loss\n1e6,,3\n", "'tokens', line 2: missing"),
    ("n_params,n_tokens,flops,loss\n1e6,2e7,-5,3\n", "'flops', line 2"),
    ("Model Size,Training FLOP,loss\n1e6,done,3\n", "'Training FLOP', line 2: 'done'"),
    ("Model Size,Training FLOP,loss\nabc,1e18,3\n", "'Model Size', line 2: 'abc'"),
    ("params,n_params,tokens,loss\n1e6,1e6,2e7,3\n", "ambiguous columns: 'n_params'"),
    ("", "cannot read CSV"),
    ("params,tokens,loss\n1e6,2e7,3,4,5\n\"unterminated\n", "cannot read CSV|'params'"),
])
def test_bad_csv(tmp_path: Path, capsys: pytest.CaptureFixture, count_case: Callable, text: str,
                 match: str) -> None:
    csv = tmp_path / "points.csv"
    csv.write_text(text)
    with pytest.raises(ConfigError, match=match):
        read_points_csv(csv)
    assert cli_error(capsys, ["fit", str(csv), "--n-boot", "0"]).startswith("ConfigError: ")
    count_case("bad input")


@pytest.mark.parametrize("rows", [
    "params,tokens,loss\n",
    "params,tokens,loss\n1e6,2e7,3.1\n",
    "params,tokens,loss,status\n1e6,2e7,3.1,done\n2e6,2e7,,diverged\n",
])
def test_fit_on_too_few_points(tmp_path: Path, capsys: pytest.CaptureFixture, count_case: Callable,
                               rows: str) -> None:
    csv = tmp_path / "few.csv"
    csv.write_text(rows)
    line = cli_error(capsys, ["fit", str(csv), "--n-boot", "0"])
    assert line.startswith("FitError: ") and "a fit needs at least 2" in line
    count_case("bad input")


def test_law_fit_on_too_few_points_is_a_fit_error(count_case: Callable) -> None:
    for n in range(5):
        N, D = np.geomspace(1e6, 1e8, n), np.geomspace(1e7, 1e9, n)
        with pytest.raises(FitError):
            ChinchillaLaw(n_starts=2).fit(N, D, 2 + 1e3 / N**0.3)
    with pytest.raises(FitError, match="finite"):
        ChinchillaLaw(n_starts=2).fit([1e6, -1, 1e7, 2e7, 3e7], [1e7] * 5, [3.0] * 5)
    count_case("bad input", 6)


# ------------------------------------------------------------------------------------------ properties

_KEYS = sorted({k for _, k, _ in all_fields()} | {"bogus", "n", "lr.x"})
_SCALARS = (st.integers(min_value=-2**63, max_value=2**63 - 1) | st.floats() | st.booleans()
            | st.text(max_size=12) | st.sampled_from(["gpt", "lstm", "grid", "isoflop", "local", "slurm", "stdlib",
                                                     "offline", "wsd", "cosine", "1-sqrt", "deepseek"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=3), max_leaves=6)
_SMALL_POSITIVE = st.floats(min_value=1.0, max_value=1e7) | st.integers(min_value=1, max_value=10**7)


@st.composite
def mutated_configs(draw: st.DrawFn) -> list[tuple[str | None, str, Any]]:
    """Edits to a valid config: known keys (numeric ones often plausible) or random keys, random values."""
    fields = all_fields()
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            section, key, hint = draw(st.sampled_from(fields))
            if hint in (int, float) and draw(st.booleans()):
                value = draw(_SMALL_POSITIVE)
            else:
                value = draw(_VALUES)
        else:
            section = draw(st.sampled_from([None, *SECTIONS]))
            key, value = draw(st.sampled_from(_KEYS)), draw(_VALUES)
        edits.append((section, key, value))
    return edits


def test_random_configs_give_a_plan_or_a_clean_error(text_corpus: Path, count_case: Callable) -> None:
    cases: list[str] = []

    @settings(max_examples=150, deadline=None)
    @given(edits=mutated_configs())
    def check(edits: list) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = base_config(Path(tmp), text_corpus)
            for section, key, value in edits:
                try:
                    cfg = with_value(cfg, section, key, value)
                except (AttributeError, IndexError, KeyError, TypeError):
                    continue  # an earlier edit replaced the table this edit goes into
            toml = write_sweep(Path(tmp) / "s.toml", cfg)
            try:
                plan = plan_sweep(load_sweep(toml))
            except ScalingError as exc:
                assert "\n" not in str(exc)
                cases.append("error")
                return
            assert isinstance(plan, Plan) and plan.runs
            frame = plan.to_frame()
            assert (frame["n_params"] > 0).all() and (frame["n_tokens"] > 0).all() and (frame["n_steps"] >= 1).all()
            cases.append("plan")

    check()
    assert len(cases) > 0, "no random config was tried"
    count_case("bad input (random config)", len(cases))


_CSV_COLUMNS = ["params", "tokens", "loss", "n_params", "n_tokens", "flops", "status", "run_id", "Model Size",
                "Training FLOP", "junk"]
_CELLS = (st.floats(min_value=1e3, max_value=1e12) | st.floats() | st.integers(-5, 10**9)
          | st.sampled_from(["", "done", "diverged", "failed", "abc", "nan", "-inf", "1e400"]))


def test_random_csvs_give_a_fit_report_or_a_clean_error(count_case: Callable) -> None:
    cases: list[str] = []

    @settings(max_examples=150, deadline=None)
    @given(columns=st.lists(st.sampled_from(_CSV_COLUMNS), min_size=0, max_size=6, unique=True),
           n_rows=st.integers(0, 8), data=st.data())
    def check(columns: list[str], n_rows: int, data: st.DataObject) -> None:
        rows = [[data.draw(_CELLS) for _ in columns] for _ in range(n_rows)]
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "points.csv"
            pd.DataFrame(rows, columns=columns).to_csv(csv, index=False)
            try:
                frame = read_points_csv(csv)
                done, _ = select_done(frame)
                report = fit_sweep(frame, n_boot=0, law=ChinchillaLaw(n_starts=2))
            except ScalingError as exc:
                assert "\n" not in str(exc)
                cases.append("error")
                return
            assert report.n_done == len(done) and report.to_text() and json.dumps(report.to_dict(), default=str)
            if report.law is not None:
                assert all(math.isfinite(v) for v in report.law.params_.to_dict().values())
            cases.append("report")

    check()
    assert len(cases) > 0, "no random CSV was tried"
    count_case("bad input (random CSV)", len(cases))


# ------------------------------------------------------------------------------------------ degenerate fits


def grid_csv(tmp_path: Path, loss: Callable[[float, float], float], sizes: tuple[float, ...] = (1e5, 1e6, 1e7),
             tokens: tuple[float, ...] = (1e8, 1e9, 1e10), extra: str = "") -> Path:
    csv = tmp_path / "points.csv"
    csv.write_text("params,tokens,loss\n" + "".join(f"{n:g},{d:g},{loss(n, d)!r}\n" for n in sizes for d in tokens)
                   + extra)
    return csv


def fit_text(capsys: pytest.CaptureFixture, csv: Path) -> str:
    capsys.readouterr()
    assert main(["fit", str(csv), "--n-boot", "0"]) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return out.out


def test_degenerate_data_gets_no_law_and_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  count_case: Callable) -> None:
    text = fit_text(capsys, grid_csv(tmp_path, lambda n, d: 3.0))  # constant: ZeroDivisionError in LawParams.a
    assert "Approach 3 not fitted: all 9 losses equal 3" in text
    count_case("fit-edge")

    # One model size: the envelope's N_opt is that size at every C (was printed as N_opt = 1e+07 C^-0.0000).
    text = fit_text(capsys, grid_csv(tmp_path, lambda n, d: 2 + 400 / n**0.3 + 400 / d**0.3, sizes=(1e7,)))
    assert "Approach 1 not fitted: Approach 1 needs >= 3 model sizes" in text and "C^-0.0000" not in text
    count_case("fit-edge")

    for bad in (1e300, 1e-300):  # implausible losses are excluded by name, never fitted
        csv = grid_csv(tmp_path, lambda n, d: 2 + 400 / n**0.3 + 400 / d**0.3, extra=f"3e6,3e9,{bad!r}\n")
        text = fit_text(capsys, csv)
        assert f"excluded run row9: loss = {bad:g} is outside the plausible range" in text, text
        assert "runs: 10 total, 9 done" in text
        with pytest.raises(FitError, match="outside the plausible range"):
            ChinchillaLaw(n_starts=2).fit([1e6, 1e7, 1e6, 1e7, 3e6], [1e8, 1e8, 1e9, 1e9, 3e8], [3, 2.5, 2.6, 2.2, bad])
        count_case("fit-edge")
    assert math.isnan(LawParams(E=1.0, A=1.0, B=1.0, alpha=0.0, beta=0.0).a)  # was ZeroDivisionError
    count_case("fit-edge")


def test_flops_that_do_not_match_params_and_tokens_are_not_fitted(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                  count_case: Callable) -> None:
    csv = tmp_path / "points.csv"
    rows = [(n, d, 6 * n * d, 2 + 400 / n**0.3 + 400 / d**0.3) for n in (1e5, 1e6, 1e7) for d in (1e8, 1e9)]
    rows[2] = (*rows[2][:2], 1e3 * rows[2][0] * rows[2][1], rows[2][3])  # 1000 N D: C of another run
    rows[3] = (*rows[3][:2], 0.1 * rows[3][0] * rows[3][1], rows[3][3])
    csv.write_text("n_params,n_tokens,flops,loss\n" + "".join(f"{n:g},{d:g},{c:g},{l!r}\n" for n, d, c, l in rows))
    text = fit_text(capsys, csv)
    assert "excluded run row2: flops / (n_params x n_tokens) = 1e+03 is outside [2, 50]" in text
    assert "excluded run row3: flops / (n_params x n_tokens) = 0.1 is outside [2, 50]" in text
    count_case("fit-edge", 2)


def test_repeated_points_are_counted_once_in_the_fit(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     count_case: Callable) -> None:
    law = lambda n, d: 2 + 400 / n**0.3 + 400 / d**0.3  # noqa: E731
    once = grid_csv(tmp_path, law).read_text()
    (tmp_path / "twice.csv").write_text(once + once.split("\n", 1)[1])
    text = fit_text(capsys, tmp_path / "twice.csv")
    assert "runs: 18 total, 18 done, fitted as 9 distinct (N, D) points" in text, text
    count_case("fit-edge")


def test_budgets_that_round_to_the_same_steps_are_refused(tmp_path: Path, text_corpus: Path,
                                                          count_case: Callable) -> None:
    cfg = tiny_sweep("twins", text_corpus, grid={"n_tokens": [60000, 60001]})  # 8 x 32 tokens a step: 234 both
    with pytest.raises(ConfigError, match=r"n_tokens\[1\] = 60001: gives the same 234 steps .* as "
                                          r"\[grid\].n_tokens\[0\]"):
        plan_sweep(load_sweep(write_sweep(tmp_path / "twins.toml", cfg)))
    count_case("fit-edge")


# ------------------------------------------------------------------------------------------ CLI arguments


@pytest.mark.parametrize("argv, match", [
    (["compare", "--min-flops", "25", "--max-flops", "15"], "--min-flops 25: is above --max-flops 15"),
    (["compare", "--min-flops", "-5"], r"--min-flops/--max-flops -5/25: powers of ten must be in \[0, 40\]"),
    (["compare", "--n-boot", "-5"], r"--n-boot -5: must be in \[0, 100,000\]"),
    (["compare", "--n-boot", "100000000"], r"--n-boot 100000000: must be in \[0, 100,000\]"),
    (["fit", "{csv}", "--n-boot", "-1"], r"--n-boot -1: must be in"),
    (["fit", "{csv}", "--holdout", "-2"], "--holdout -2: must be >= 0"),
    (["fit", "{csv}", "--out", "{csv}"], "--out .*points.csv: exists and is not a folder"),
    (["compare", "--out", "{csv}"], "--out .*points.csv: exists and is not a folder"),
    (["train", "{tmp}/no/such/run"], "no/such/run: not a run folder"),
    (["train", "{tmp}", "--threads", "0"], "--threads 0: must be >= 1"),
    (["run", "{toml}", "--max-parallel", "0"], "--max-parallel 0: must be >= 1"),
    (["plan", "{toml}", "--flops-per-s", "0"], "--flops-per-s 0.0: must be a finite number > 0"),
    (["plan", "{toml}", "--flops-per-s", "-5"], "--flops-per-s -5.0: must be"),
    (["plan", "{toml}", "--flops-per-s", "nan"], "--flops-per-s nan: must be"),
    (["run", "{toml}", "--n-boot", "-3"], "--n-boot -3: must be"),
])
def test_bad_cli_arguments(tmp_path: Path, text_corpus: Path, capsys: pytest.CaptureFixture,
                           count_case: Callable, argv: list[str], match: str) -> None:
    csv = tmp_path / "points.csv"
    csv.write_text("params,tokens,loss\n1e6,2e7,3.1\n2e6,2e7,3.0\n")
    toml = write_sweep(tmp_path / "s.toml", base_config(tmp_path, text_corpus))
    argv = [a.format(csv=csv, tmp=tmp_path, toml=toml) for a in argv]
    line = cli_error(capsys, argv)
    assert line.startswith("ConfigError: ") and re.search(match, line), line
    assert not (tmp_path / "results").exists()  # refused before anything is written
    count_case("cli-args")


def test_control_characters_in_an_error_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                    count_case: Callable) -> None:
    evil = tmp_path / "red\x1b[31mALERT\x07\nsecond line.csv"
    line = cli_error(capsys, ["fit", str(evil)])
    assert "\x1b" not in line and "\x07" not in line and "\\x1b[31mALERT\\x07\\nsecond line.csv" in line, line
    count_case("cli-args")


def test_status_into_a_closed_pipe_exits_quietly(tmp_path: Path, text_corpus: Path, count_case: Callable) -> None:
    import os
    import subprocess
    import sys

    toml = write_sweep(tmp_path / "s.toml", base_config(tmp_path, text_corpus))
    read, write = os.pipe()
    os.close(read)  # `scaling status ... | head` after head has exited
    proc = subprocess.run([sys.executable, "-m", "scaling.cli", "status", str(toml)], stdout=write,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr
    count_case("cli-args")


# ------------------------------------------------------------------------------------------ scale


def test_a_million_run_sweep_is_refused_at_once(tmp_path: Path, text_corpus: Path, capsys: pytest.CaptureFixture,
                                                count_case: Callable) -> None:
    import time

    cfg = tiny_sweep("huge", text_corpus, grid={"n_tokens": [2560 * (i + 1) for i in range(1000)]},
                     train={"seeds": list(range(1000))})
    toml = write_sweep(tmp_path / "huge.toml", cfg)
    start = time.perf_counter()
    line = cli_error(capsys, ["plan", str(toml)])
    assert "would plan 1,000,000 runs" in line and "at most 100,000" in line, line
    assert time.perf_counter() - start < 10  # was 9 minutes and 4 GB
    count_case("scale")


def test_a_long_plan_prints_its_ends_and_every_total(tmp_path: Path, text_corpus: Path,
                                                     capsys: pytest.CaptureFixture, count_case: Callable) -> None:
    from scaling.cli import SHOWN_ROWS

    cfg = tiny_sweep("long", text_corpus, grid={"n_tokens": [2560 * (i + 1) for i in range(50)]},
                     train={"seeds": [0, 1, 2]})
    plan = plan_sweep(load_sweep(write_sweep(tmp_path / "long.toml", cfg)))
    assert main(["plan", str(tmp_path / "long.toml")]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) < SHOWN_ROWS + 10
    assert plan.runs[0].run_id in out and plan.runs[-1].run_id in out and plan.runs[75].run_id not in out
    assert f"({150 - SHOWN_ROWS} of 150 rows not shown)" in out and "\n150 runs, " in out
    count_case("scale")


def test_the_start_grid_of_a_large_fit_is_evaluated_in_bounded_memory(count_case: Callable) -> None:
    import tracemalloc

    from scaling.analysis import hoffmann_grid
    from scaling.analysis.approach3 import _objective_grid

    rng = np.random.default_rng(0)
    n = 100_000  # a 100k-row CSV took 4.5 GB here
    log_n, log_d = rng.uniform(11, 18, n), rng.uniform(18, 23, n)
    log_l = np.log(1.7 + np.exp(6 - 0.34 * log_n) + np.exp(6 - 0.28 * log_d))
    tracemalloc.start()
    values = _objective_grid(hoffmann_grid()[:600], log_n, log_d, log_l, 1e-3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200e6, f"{peak / 1e6:.0f} MB"
    assert np.allclose(values[:3], _objective_grid(hoffmann_grid()[:3], log_n, log_d, log_l, 1e-3, chunk=3))
    count_case("scale")


def test_a_large_fit_says_what_it_costs_before_it_starts(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture,
                                                         count_case: Callable) -> None:
    import scaling.analysis.report

    monkeypatch.setattr(scaling.analysis.report, "LARGE_FIT_POINTS", 8)
    N, D = np.meshgrid(np.geomspace(1e5, 1e7, 3), np.geomspace(1e8, 1e10, 3))
    frame = pd.DataFrame({"n_params": N.ravel(), "n_tokens": D.ravel(),
                          "loss": 2 + 400 / N.ravel()**0.3 + 400 / D.ravel()**0.3})
    report = fit_sweep(frame, n_boot=0)
    assert "fitting 9 points" in caplog.text and any("9 points to fit (more than 8)" in d for d in report.diagnostics)
    count_case("scale")
