"""Sweep MFU of a whole sweep on this machine: its FLOPs / (wall time x fp32 matmul peak measured in the same run).

    python benchmarks/bench_sweep.py                                   # the default sweep, sweeps/tiny.toml
    python benchmarks/bench_sweep.py --before /tmp/before              # and the same sweep with older code
    python benchmarks/bench_sweep.py --set grid.n_tokens=[2.5e5,5e5]   # any `scaling run --set` override

Each sweep trains from scratch into a fresh temporary results folder with `scaling run SWEEP --no-fit` in a
process of its own (start-up included, as a user would run it); wall time is measured around that process.
FLOPs are the sum of result.json "flops" (Chinchilla counting) over the runs that finished. The peak is the
best fp32 GFLOP/s of a 1024^3 matmul on max_parallel x threads_per_job threads (the cores the sweep uses),
measured before and after the sweeps; MFU uses the higher of the two, the stricter figure. With --before
DIR (a checkout of older code, e.g. `git archive <base> | tar -x -C DIR`), both sweeps run one after the
other in this invocation, with the same sweep file and peak, so their ratio is what counts on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scaling.cli import _overrides  # noqa: E402
from scaling.config import load_sweep  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train  # noqa: E402  (its matmul_peak)


def matmul_peak(threads: int, seconds: float = 3.0) -> float:
    """bench_train.matmul_peak (fp32 GFLOP/s of a 1024^3 matmul) on `threads` threads."""
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return bench_train.matmul_peak(seconds=seconds)
    finally:
        torch.set_num_threads(prev)


def run_sweep(code: Path, sweep: Path, sets: list[str], results_dir: Path) -> dict[str, float]:
    """Train `sweep` from scratch with the scaling package in `code`; wall time, FLOPs and per-run seconds."""
    cmd = [sys.executable, "-m", "scaling.cli", "run", str(sweep), "--no-fit",
           "--set", f"results_dir={json.dumps(str(results_dir))}"]
    for item in sets:
        cmd += ["--set", item]
    env = dict(os.environ, PYTHONPATH=str(code))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    results = [json.loads(p.read_text()) for p in results_dir.glob("*/*/result.json")]
    done = [r for r in results if r.get("status") == "done"]
    return {"wall_s": wall, "flops": sum(r["flops"] for r in done), "runs": len(done), "all_runs": len(results),
            "train_s": sum(r["train_s"] for r in done), "run_wall_s": sum(r["wall_s"] for r in done)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", nargs="?", default=str(REPO / "sweeps" / "tiny.toml"))
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, as `scaling run --set` (repeatable)")
    parser.add_argument("--before", type=Path, default=None,
                        help="a checkout of older code: run the same sweep with it first, for a ratio")
    args = parser.parse_args()
    sweep = Path(args.sweep).resolve()
    cfg = load_sweep(sweep, _overrides(args.sets))  # the CLI's own parsing: what the sweeps below will run
    threads = cfg.launch.max_parallel * cfg.launch.threads_per_job
    peak_before = matmul_peak(threads)
    print(f"{sweep.name}: {cfg.launch.max_parallel} jobs x {cfg.launch.threads_per_job} threads; fp32 matmul peak "
          f"on {threads} threads: {peak_before:.1f} GFLOP/s (torch {torch.__version__}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f})", flush=True)
    codes = ([("before", args.before.resolve())] if args.before else []) + [("now", REPO)]
    measured = {}
    with tempfile.TemporaryDirectory(prefix="bench_sweep-") as tmp:
        for label, code in codes:
            measured[label] = run_sweep(code, sweep, args.sets, Path(tmp) / label)
            m = measured[label]
            print(f"  {label}: {m['runs']}/{m['all_runs']} runs done, {m['flops']:.3g} FLOPs in {m['wall_s']:.1f} s "
                  f"(runs' own training {m['train_s']:.0f} s, wall {m['run_wall_s']:.0f} s)", flush=True)
    peak_after = matmul_peak(threads)
    peak = max(peak_before, peak_after)
    print(f"peak before/after the sweeps: {peak_before:.1f} / {peak_after:.1f} GFLOP/s; MFU below uses {peak:.1f}; "
          f"load now {os.getloadavg()[0]:.1f}")
    print(f"{'code':>8} {'wall s':>8} {'FLOPs':>9} {'sweep MFU':>10} {'busy':>6}")
    for label, m in measured.items():
        mfu = m["flops"] / (m["wall_s"] * peak * 1e9)
        busy = m["run_wall_s"] / (m["wall_s"] * cfg.launch.max_parallel)  # slots' share spent inside train_run
        print(f"{label:>8} {m['wall_s']:>8.1f} {m['flops']:>9.3g} {mfu:>10.1%} {busy:>6.0%}")
    if "before" in measured:
        b, n = measured["before"], measured["now"]
        print(f"now / before: wall {n['wall_s'] / b['wall_s']:.2f}, sweep MFU "
              f"{(n['flops'] / n['wall_s']) / (b['flops'] / b['wall_s']):.2f}")


if __name__ == "__main__":
    main()
