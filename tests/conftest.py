"""Shared fixtures: a private corpus cache per test session and a small real text corpus."""

from __future__ import annotations

import sysconfig
from collections.abc import Callable
from pathlib import Path

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


_CASES: dict[str, int] = {}
"""Fault and bad-input cases that passed their assertions, by kind (printed in the terminal summary)."""


@pytest.fixture
def count_case() -> Callable[..., None]:
    """count_case("fault") after a case's assertions pass; the totals print at the end of the session."""
    def add(kind: str, n: int = 1) -> None:
        _CASES[kind] = _CASES.get(kind, 0) + n
    return add


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _CASES:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(_CASES.items()))
        terminalreporter.write_line(f"reliability: {sum(_CASES.values())} cases tried and passed ({detail})")
