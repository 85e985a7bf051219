"""Local pool throughput: the makespan of one small sweep trained by `scaling run` with two versions of the
launcher, and the error of the progress line's ETA at 25%, 50% and 75% of the sweep's FLOPs.

The sweep is built like the tests' tiny fixtures (tests/conftest.py: 1-layer GPTs, seq_len 32, batch 8, on the
first 20 KB of 40 stdlib modules), two widths x four token budgets; plan order puts the largest run last.

    python benchmarks/bench_pool.py --before /tmp/before   # a copy of the old code (git archive BASE)

Each mode trains the same sweep in a fresh results folder, one after the other on the same machine:
    before       the code at --before (one process per run, plan order)
    lpt          this code with [launch].process_per_run = true (longest first, one process per run)
    workers      this code's default (longest first, one worker process per slot)
While `workers` trains, a thread samples `scaling.launch.summarize` (what the progress line prints) every
0.5 s; the ETA error at q% is (t + ETA - t_end) / (t_end - t) at the first sample with >= q% of the FLOPs done.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from conftest import tiny_sweep, write_sweep  # noqa: E402


def corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py"))[:40]:
        (folder / path.name).write_bytes(path.read_bytes()[:20_000])
    return folder


def sweep_toml(base: Path, mode: str, data: Path, process_per_run: bool) -> Path:
    launch = {"max_parallel": 2, "threads_per_job": 1, "timeout_min": 30}
    if process_per_run:
        launch["process_per_run"] = True
    cfg = tiny_sweep("pool", data, results_dir=base / mode,
                     grid={"shapes": [{"n_layer": 1, "d_model": 32}, {"n_layer": 1, "d_model": 64}],
                           "n_tokens": [32768, 98304, 196608, 393216]},
                     train={"log_every_steps": 5}, launch=launch)
    return write_sweep(base / f"{mode}.toml", cfg)


def run(toml: Path, pythonpath: Path, sample: bool = False) -> dict:
    env = os.environ | {"PYTHONPATH": str(pythonpath), "PYTHONUNBUFFERED": "1"}
    samples: list[tuple[float, float, float]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sampler() -> None:
        from scaling.config import load_sweep
        from scaling.launch import summarize, sweep_status
        from scaling.plan import plan_sweep

        plan = plan_sweep(load_sweep(toml))
        while not stop.is_set():
            p = summarize(sweep_status(plan), slots=2, est_flops_per_s=plan.sweep.launch.est_flops_per_s)
            samples.append((time.monotonic() - t0, p.flops_done / p.flops_total, p.eta_s))
            time.sleep(0.5)

    thread = threading.Thread(target=sampler, daemon=True) if sample else None
    if thread:
        thread.start()
    # cwd = the code under test: `python -m` puts the working directory first on sys.path
    out = subprocess.run([sys.executable, "-m", "scaling.cli", "run", str(toml), "--no-fit"], cwd=pythonpath,
                         env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    stop.set()
    if thread:
        thread.join()
    assert out.returncode == 0, out.stdout + out.stderr
    sweep_s = float(re.search(r"sweep finished in (\d+) s", out.stdout).group(1))
    result = {"wall_s": round(wall, 1), "sweep_s": sweep_s}
    if sample:
        # t_end: the first sample with every FLOP done (0.5 s resolution)
        t_end = next((t for t, f, _ in samples if f >= 1.0), wall)
        errors = {}
        for q in (0.25, 0.5, 0.75):
            t, f, eta = next(s for s in samples if s[1] >= q)
            errors[f"{q:.0%}"] = {"t_s": round(t, 1), "eta_s": round(eta, 1), "actual_left_s": round(t_end - t, 1),
                                  "rel_error": round((t + eta - t_end) / (t_end - t), 3)}
        result["eta"] = errors
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=Path, required=True, help="a copy of the old code (its repository root)")
    ap.add_argument("--modes", default="before,lpt,workers,before,lpt,workers",
                    help="run in this order (interleaved repeats even out a shared machine's load)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-pool-"))
    os.environ["SCALING_CACHE"] = str(base / "cache")
    data = corpus(base / "corpus")
    out = {}
    for i, mode in enumerate(args.modes.split(",")):
        code = args.before if mode == "before" else REPO
        toml = sweep_toml(base, f"{mode}{i}", data, process_per_run=mode == "lpt")
        out[f"{mode}{i}"] = run(toml, code, sample=mode == "workers")
        print(f"{mode}{i}", json.dumps(out[f"{mode}{i}"]), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
