"""Shared fixtures: a private corpus cache per test session and a small real text corpus.

Shared helpers (imported with `from conftest import ...`): `tiny_sweep` and `write_sweep`, which every test
that plans from a sweep TOML uses to write it.
"""

from __future__ import annotations

import math
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _scaling_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the tokenized-corpus cache out of ~/.cache; shared by the session so tests reuse builds."""
    path = tmp_path_factory.getbasetemp() / "scaling-cache"
    monkeypatch.setenv("SCALING_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def text_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 40 real Python files (the first 20 KB of stdlib modules): ~0.5M byte tokens."""
    folder = tmp_path_factory.mktemp("corpus")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py"))[:40]:
        (folder / path.name).write_bytes(path.read_bytes()[:20_000])
    return folder


def toml_value(v: Any) -> str:
    """A Python value as TOML (inline tables for dicts); enough for configs and random tests."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, str):
        # TOML basic strings: escape quote, backslash and control characters (DEL included).
        return '"' + "".join(c if c not in '"\\' and 0x1f < ord(c) != 0x7f else f"\\u{ord(c):04x}"
                             for c in v) + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def write_sweep(path: Path, cfg: dict[str, Any]) -> Path:
    """Write `cfg` as a sweep TOML (top-level keys first, then one [table] per dict value); return `path`."""
    top = [f"{toml_value(k)} = {toml_value(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    tables = [f"[{toml_value(k)}]\n" + "\n".join(f"{toml_value(str(kk))} = {toml_value(vv)}" for kk, vv in v.items())
              for k, v in cfg.items() if isinstance(v, dict)]
    path.write_text("\n".join(top + tables) + "\n")
    return path


def tiny_sweep(name: str, corpus: Path, *, results_dir: Path | None = None,
               **sections: dict[str, Any]) -> dict[str, Any]:
    """A tiny real sweep as a dict of TOML tables: a 1-layer GPT (d_model 32, seq_len 32), batch 8, on `corpus`.

    Each keyword is a table whose keys are set over these defaults; every sweep names its `grid={"n_tokens": ...}`.
    """
    defaults: dict[str, dict[str, Any]] = {
        "data": {"source": str(corpus), "val_tokens": 2048},
        "model": {"seq_len": 32, "head_dim": 16},
        "grid": {"shapes": [{"n_layer": 1, "d_model": 32}]},
        "train": {"batch_size": 8},
    }
    cfg: dict[str, Any] = {"name": name}
    if results_dir is not None:
        cfg["results_dir"] = str(results_dir)
    for table in defaults | sections:
        cfg[table] = defaults.get(table, {}) | sections.get(table, {})
    return cfg


def small_grid_sweep(tmp_path: Path, train: str = "", model: str = "") -> Path:
    """`tmp_path/s.toml`: a 2 x 2 grid of small GPTs (seq_len 32) with extra `[train]` and `[model]` lines."""
    toml = tmp_path / "s.toml"
    toml.write_text(f"""
name = "s"
results_dir = "{tmp_path / 'results'}"
[model]
seq_len = 32
head_dim = 16
{model}
[grid]
n_params = [2.0e4, 8.0e4]
n_tokens = [1.0e5, 4.0e5]
[train]
batch_size = 8
{train}
""")
    return toml


def write_specs(plan: Any) -> list[Path]:
    """Each planned run's folder with its spec.json, as `scaling run` leaves them before any job starts."""
    from scaling.results import write_spec
    dirs = []
    for spec in plan.runs:
        run_dir = plan.sweep.sweep_dir / spec.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        write_spec(run_dir, spec)
        dirs.append(run_dir)
    return dirs


_CASES: dict[str, int] = {}
"""Fault and bad-input cases that passed their assertions, by kind (printed in the terminal summary)."""


@pytest.fixture
def count_case() -> Callable[..., None]:
    """count_case("fault") after a case's assertions pass; the totals print at the end of the session."""
    def add(kind: str, n: int = 1) -> None:
        _CASES[kind] = _CASES.get(kind, 0) + n
    return add


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: hand its counts to the controller
        workeroutput["scaling_cases"] = dict(_CASES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist's controller, as each worker finishes: add the worker's counts to the summary's."""
    for kind, n in getattr(node, "workeroutput", {}).get("scaling_cases", {}).items():
        _CASES[kind] = _CASES.get(kind, 0) + n


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _CASES:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(_CASES.items()))
        terminalreporter.write_line(f"reliability: {sum(_CASES.values())} cases tried and passed ({detail})")
