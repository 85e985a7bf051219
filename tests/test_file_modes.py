"""Files a sweep writes get the mode any other file would (0o666 less the umask), so teammates on a shared
cluster can read them: the atomic writes (temp file + replace) used to leave every one of them 0600."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scaling
from conftest import tiny_sweep, write_sweep
from scaling.results import export_csv, write_json_atomic

REPO = Path(scaling.__file__).resolve().parent.parent

# Run in a fresh process: the umask is process-wide, and the corpus cache must be built under it.
SCRIPT = """
import json, os, sys
from pathlib import Path
os.umask(int(sys.argv[1], 8))
from scaling.cli import main
from scaling.config import load_sweep
from scaling.plan import plan_sweep
from scaling.results import export_csv, load_results, write_spec, write_status
from scaling.train import train_run

toml, out = Path(sys.argv[2]), Path(sys.argv[3])
spec = plan_sweep(load_sweep(toml)).runs[0]
run_dir = out / "results" / spec.run_id
run_dir.mkdir(parents=True)
write_spec(run_dir, spec)
write_status(run_dir, "queued")
train_run(run_dir, num_threads=1)
export_csv(load_results(run_dir.parent), out / "runs.csv")
assert main(["fit", sys.argv[4], "--n-boot", "10", "--out", str(out / "fit")]) == 0
"""


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_sweep_files_get_the_umask_mode(tmp_path: Path, text_corpus: Path, umask: int) -> None:
    cache = tmp_path / "cache"  # built by the process under test, so under its umask
    toml = write_sweep(tmp_path / "sweep.toml", tiny_sweep(
        "modes", text_corpus, grid={"n_tokens": [4_000]}, train={"checkpoint_every_s": 1e-9}))
    rng = np.random.default_rng(0)
    n, d = np.repeat(np.logspace(6, 7.5, 4), 3), np.tile(np.logspace(8, 9.5, 3), 4)
    loss = (1.7 + 400 / n ** 0.34 + 1100 / d ** 0.28) * (1 + 0.01 * rng.standard_normal(n.size))
    points = tmp_path / "points.csv"
    points.write_text("params,tokens,loss\n" + "".join(f"{a:.6g},{b:.6g},{c:.6g}\n" for a, b, c in zip(n, d, loss)))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO), SCALING_CACHE=str(cache))
    subprocess.run([sys.executable, "-c", SCRIPT, oct(umask), str(toml), str(out), str(points)], check=True,
                   env=env, cwd=tmp_path, timeout=300, capture_output=True)

    (run_dir,) = (out / "results").iterdir()
    expected = [run_dir / name for name in ("spec.json", "status.json", "result.json", "ckpt.pt")]
    expected += [out / "runs.csv", out / "fit" / "fit.json", *cache.iterdir()]
    assert any(p.suffix == ".bin" for p in cache.iterdir()), "no corpus cache was written"
    want = 0o666 & ~umask
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in expected}
    assert modes == {name: oct(want) for name in modes}


def test_a_rewrite_keeps_the_files_own_mode(tmp_path: Path) -> None:
    """As a plain open() does: a user who made runs.csv private (or group-writable) keeps it so."""
    import pandas as pd

    path = export_csv(pd.DataFrame({"a": [1]}), tmp_path / "runs.csv")
    os.chmod(path, 0o640)
    export_csv(pd.DataFrame({"a": [2]}), path)
    write_json_atomic(tmp_path / "x.json", {"a": 1})
    os.chmod(tmp_path / "x.json", 0o600)
    write_json_atomic(tmp_path / "x.json", {"a": 2})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text() == "a\n2\n"
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o600
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 2}
