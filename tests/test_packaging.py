"""A regular (non-editable) install works: the wheel holds every subpackage, its console script runs a fit.

The wheel is built from a copy of the checkout's tracked files (nothing is written into the checkout) and
installed into a fresh venv outside it; torch, numpy and the rest come from the system's site-packages (no
network). The venv's `scaling` must be the wheel's, not an editable install's or the checkout's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _tracked_copy(dest: Path) -> Path:
    """The checkout's tracked files (as in its work tree) copied to dest; a clean clone's view of it."""
    names = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True
                           ).stdout.decode().split("\0")
    for name in filter(None, names):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _clean_env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PWD"] = str(cwd)
    return env


@pytest.mark.slow
def test_wheel_installs_in_a_clean_venv_and_fits(tmp_path: Path) -> None:
    src = _tracked_copy(tmp_path / "src")
    for required in ("LICENSE", "CITATION.cff"):
        assert (src / required).is_file(), f"{required} is not tracked"
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(dist), str(src)], check=True, cwd=tmp_path, env=_clean_env(tmp_path))
    (wheel,) = dist.glob("scaling-*.whl")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False, symlinks=True).create(env_dir)
    python, script = env_dir / "bin" / "python", env_dir / "bin" / "scaling"
    work = tmp_path / "work"  # a cwd outside the checkout: `import scaling` must not find its folder
    work.mkdir()
    env = _clean_env(work)
    # The venv has no pip of its own: the system's pip (seen through --system-site-packages), run by the venv's
    # python, installs into the venv.
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, cwd=work, env=env)
    where = subprocess.run([str(python), "-c", "import scaling, scaling.results, scaling.analysis; "
                            "print(scaling.__file__)"], capture_output=True, text=True, check=True, cwd=work,
                           env=env).stdout.strip()
    assert Path(where).resolve().is_relative_to(env_dir.resolve()), f"imported {where}, not the wheel's"
    assert script.is_file(), "the wheel installed no `scaling` console script"

    help_text = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True, cwd=work,
                               env=env).stdout
    assert "plan" in help_text and "fit" in help_text

    # A tiny fit: 12 points of a known law (E=1.7, A=400, B=1100, alpha=0.34, beta=0.28) with 1% noise.
    rng = np.random.default_rng(0)
    n = np.repeat(np.logspace(6, 7.5, 4), 3)
    d = np.tile(np.logspace(8, 9.5, 3), 4)
    loss = (1.7 + 400 / n ** 0.34 + 1100 / d ** 0.28) * (1 + 0.01 * rng.standard_normal(n.size))
    csv = work / "points.csv"
    csv.write_text("params,tokens,loss\n" + "".join(f"{a:.6g},{b:.6g},{c:.6g}\n" for a, b, c in zip(n, d, loss)))
    out = work / "fit"
    # The console script, run by the venv's python in-process so that afterwards every `scaling` module it
    # imported can be checked to be the wheel's: an editable install's finder elsewhere on the system would
    # otherwise quietly serve the subpackages a broken wheel leaves out.
    checked = (f"import runpy, sys\nsys.argv = [{str(script)!r}, *sys.argv[1:]]\ntry:\n"
               f"    runpy.run_path({str(script)!r}, run_name='__main__')\nexcept SystemExit as e:\n    rc = e.code\n"
               "outside = sorted(n for n, m in sys.modules.items() if n.split('.')[0] == 'scaling' and\n"
               f"                 not (getattr(m, '__file__', None) or '').startswith({str(env_dir)!r}))\n"
               "print('OUTSIDE', outside)\nsys.exit(rc if not outside else 3)\n")
    for argv in (["--help"], ["fit", str(csv), "--n-boot", "20", "--out", str(out)]):
        run = subprocess.run([str(python), "-c", checked, *argv], capture_output=True, text=True, cwd=work,
                             env=env, timeout=300)
        assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-2000:])
        assert "OUTSIDE []" in run.stdout
    assert (out / "fit.json").is_file() and "E" in run.stdout
