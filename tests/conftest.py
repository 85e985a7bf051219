"""Shared fixtures: a private corpus cache per test session and a small real text corpus."""

from __future__ import annotations

import sysconfig
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
