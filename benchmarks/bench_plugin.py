"""Plug-in counting cost: planning sweeps/own_model.toml (a plug-in beside gpt) with torch.nn.init's
initializers skipped while the module is built on the meta device (what scaling.plugin does) against the
same with them kept.

On meta tensors the first nn.init call loads torch's Python meta kernels (hundreds of modules), a one-time
cost per process, so each mode is timed in a fresh interpreter after `import torch` (torch's import is not
counted); modes alternate, --repeats times each, and the ratio of medians is printed.

    python benchmarks/bench_plugin.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD = r"""
import contextlib, json, sys, time
import torch
import scaling.plugin
if sys.argv[1] == "kept":
    scaling.plugin._no_init = contextlib.nullcontext
n0 = len(sys.modules)
from scaling.config import load_sweep
from scaling.plan import plan_sweep
t = time.perf_counter()
plan = plan_sweep(load_sweep("sweeps/own_model.toml"))
print(json.dumps({"s": time.perf_counter() - t, "runs": len(plan.runs), "modules": len(sys.modules) - n0}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    times: dict[str, list[float]] = {"skipped": [], "kept": []}
    for i in range(args.repeats):
        for mode in (("skipped", "kept") if i % 2 == 0 else ("kept", "skipped")):
            out = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=REPO, capture_output=True, text=True,
                                 check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            times[mode].append(r["s"])
            print(f"{mode:8s} plan {r['s']:7.3f} s  ({r['runs']} runs, {r['modules']} modules imported)", flush=True)
    skipped, kept = statistics.median(times["skipped"]), statistics.median(times["kept"])
    print(f"median: init skipped {skipped:.3f} s, kept {kept:.3f} s; kept / skipped = {kept / skipped:.1f}x")


if __name__ == "__main__":
    main()
