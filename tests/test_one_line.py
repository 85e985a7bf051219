"""Issue #24 item 15, as a class: bad input at the command line is exit 2 and exactly one line on stderr,
never a traceback. Each case is a real CLI invocation on a real file; the CLI is run in this process (so a
traceback is an exception here) and once as a subprocess (so the console entry point is covered too)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_sweep, write_sweep
from scaling.cli import main

SUGGEST = ["--target-flops", "1e12", "--budget", "1e11"]
MODELS = Path(__file__).parent / "data" / "toy_models.py"


def points_csv(path: Path, note: bytes = b"ok") -> Path:
    """9 noiseless runs of a Chinchilla-like law, 3 sizes x 3 token budgets, the last one's note being `note`."""
    N, D = np.repeat([1e4, 3e4, 1e5], 3), np.tile([1e5, 3e5, 1e6], 3)
    pd.DataFrame({"n_params": N, "n_tokens": D, "loss": 1.7 + 400 / N ** 0.34 + 400 / D ** 0.28,
                  "note": "ok"}).to_csv(path, index=False)
    path.write_bytes(path.read_bytes().rstrip(b"\n").removesuffix(b"ok") + note + b"\n")
    return path


def pilot_sweep(folder: Path, pilot: Path) -> Path:
    (folder / "iso.toml").write_text(f'name = "iso"\n[model]\nseq_len = 128\nhead_dim = 8\n[grid]\ndesign = "isoflop"\n'
                                     f'flops = [1e12, 1e13]\nn_sizes = 3\nwindow = 8\n[grid.prior]\npilot = "{pilot}"\n'
                                     '[train]\nbatch_size = 8\n')
    return folder / "iso.toml"


def plugin_sweep(folder: Path, corpus: Path, factory: str) -> Path:
    return write_sweep(folder / "plug.toml", tiny_sweep("plug", corpus, results_dir=folder / "results",
                                                        model={"arch": f"p2models:{factory}"},
                                                        grid={"n_tokens": [2560]}))


def command_sweep(folder: Path, corpus: Path, command: str) -> Path:
    return write_sweep(folder / "cmd.toml", tiny_sweep("cmd", corpus, results_dir=folder / "results",
                                                       grid={"n_tokens": [2560]}, train={"command": command}))


CASES: dict[str, tuple[Callable[[Path, Path], list[str]], str]] = {
    # non-UTF-8 bytes in a CSV, for every verb that reads one
    "fit-latin1-csv": (lambda d, c: ["fit", str(points_csv(d / "p.csv", b"caf\xe9")), "--n-boot", "0"], "not UTF-8"),
    "compare-latin1-csv": (lambda d, c: ["compare", str(points_csv(d / "p.csv", b"caf\xe9")), "--n-boot", "0"],
                           "not UTF-8"),
    "suggest-latin1-csv": (lambda d, c: ["suggest", str(points_csv(d / "p.csv", b"caf\xe9")), *SUGGEST],
                           "not UTF-8"),
    "plan-latin1-pilot": (lambda d, c: ["plan", str(pilot_sweep(d, points_csv(d / "p.csv", b"caf\xe9")))],
                          "not UTF-8"),
    "plan-latin1-toml": (lambda d, c: ["plan", str(d / "s.toml")] if (d / "s.toml").write_bytes(
        b'name = "caf\xe9"\n') else [], "utf-8"),
    # suggest's numbers out of range
    **{f"suggest{flag}={value}": ((lambda flag, value: lambda d, c: ["suggest", str(points_csv(d / "p.csv")), *SUGGEST,
                                                                     f"{flag}={value}"])(flag, value), why)
       for flag, value, why in [("--max-tokens", "nan", "finite"), ("--max-tokens", "inf", "finite"),
                                ("--seed", "-1", "must be in"), ("--max-params", "inf", "finite"),
                                ("--max-params", "1e300", r"in (0, 1e+13]"), ("--max-tokens", "1e300", r"in (0, 1e+16]"),
                                ("--max-params", "-1", "finite"), ("--max-tokens", "0", "finite")]},
    # a sweep source: 1e300 once tried to list every shape up to it (32.8 GiB); the stated cap refuses it at once
    "suggest-sweep--max-params=1e300": (lambda d, c: ["suggest", str(command_sweep(d, c, "{python} t.py")), *SUGGEST,
                                                      "--max-params=1e300"], "in (0, 1e+13]"),
    # plug-ins whose size or cost cannot be counted
    "plan-plugin-lazy": (lambda d, c: ["plan", str(plugin_sweep(d, c, "build_lazy"))], "nn.LazyLinear"),
    "plan-plugin-inf-flops": (lambda d, c: ["plan", str(plugin_sweep(d, c, "build_inf_flops"))], "flops_per_token() = inf"),
    "plan-plugin-nan-flops": (lambda d, c: ["plan", str(plugin_sweep(d, c, "build_nan_flops"))], "flops_per_token() = nan"),
    # a command template asking for a field 100 billion characters wide
    "plan-template-width": (lambda d, c: ["plan", str(command_sweep(d, c, "{python} t.py --lr={lr:>99999999999}"))],
                            "width or precision"),
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding the toy plug-in models as `p2models` (fresh per test: resolve() caches)."""
    import shutil
    import sys as _sys

    shutil.copy(MODELS, tmp_path / "p2models.py")
    monkeypatch.chdir(tmp_path)
    _sys.modules.pop("p2models", None)
    from scaling.plugin import resolve
    resolve.cache_clear()
    from scaling.plugin import counts
    counts.cache_clear()
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_exit_2_and_one_line_never_a_traceback(case: str, workdir: Path, text_corpus: Path,
                                                            capsys: pytest.CaptureFixture, count_case: Callable) -> None:
    make, why = CASES[case]
    argv = make(workdir, text_corpus)
    capsys.readouterr()
    rc = main(argv)  # an exception here is the traceback a user would see
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, (rc, err)
    assert why.lower() in lines[0].lower(), lines[0]
    assert not (workdir / "results").exists()  # refused before anything was written
    count_case("bad input")


def test_the_console_entry_point_prints_the_same_one_line(tmp_path: Path, count_case: Callable) -> None:
    csv = points_csv(tmp_path / "p.csv", b"caf\xe9")
    proc = subprocess.run([sys.executable, "-m", "scaling.cli", "fit", str(csv), "--n-boot", "0"], capture_output=True,
                          text=True, timeout=120, env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not UTF-8" in proc.stderr, proc.stderr
    count_case("bad input")
