"""Trainer tokens/s and page faults per step with glibc's malloc at its defaults and with the trainer's setting
(scaling.train.keep_freed_memory), each run in a fresh process as a Slurm job or a single `train_run` is.

    python benchmarks/bench_malloc.py                        # the default sweep's shapes, 1 thread, 3 pairs
    python benchmarks/bench_malloc.py --shapes 1x32,2x64 --repeats 5

The two settings alternate, `--repeats` pairs per shape, so a change of machine load hits both alike; the
ratio printed is the median of the per-pair ratios. Faults are minor page faults of the whole process
(start-up included) divided by its steps. In the local pool a worker trains runs one after another, longest
first, and after its first run glibc's own threshold has grown, so there the setting matters little: this
measures the fresh-process case.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from shapes_arg import add_shapes_option  # beside this file; torch-free

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, tempfile
from pathlib import Path
sys.path[:0] = [{repo!r}, {bench!r}]
from bench_train import make_spec
from scaling.accounting import ModelShape
from scaling.results import write_json_atomic
from scaling.train import keep_freed_memory, train_run
L, d, steps, head_dim, seq_len, batch = {args}
shape = ModelShape(arch="gpt", n_layer=L, d_model=d, n_head=max(1, d // head_dim), seq_len=seq_len, vocab_size=256)
spec = make_spec(shape, steps, batch, "stdlib")
with tempfile.TemporaryDirectory() as tmp:
    write_json_atomic(Path(tmp) / "spec.json", spec.to_dict())
    result = train_run(Path(tmp), num_threads=1)
print(json.dumps({{"tok_s": result["tokens_per_s"], "kept": keep_freed_memory(),
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt / steps}}))
"""


def one(L: int, d: int, steps: int, head_dim: int, seq_len: int, batch: int, keep: bool) -> dict:
    code = CHILD.format(repo=str(REPO), bench=str(REPO / "benchmarks"), args=(L, d, steps, head_dim, seq_len, batch))
    env = dict(os.environ, SCALING_MALLOC_KEEP="1" if keep else "0", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shapes_option(parser, "1x16,1x32,1x48,2x48,2x64,2x80")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--head-dim", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"1 thread, {args.steps} steps per run, batch {args.batch_size} x seq_len {args.seq_len}, "
          f"{args.repeats} pairs per shape (load {os.getloadavg()[0]:.1f})")
    print(f"{'shape':>8} {'default tok/s':>13} {'faults/step':>11} {'kept tok/s':>10} {'faults/step':>11} "
          f"{'kept/default':>12}")
    for L, d in args.shapes:
        pairs = [(one(L, d, args.steps, args.head_dim, args.seq_len, args.batch_size, False),
                  one(L, d, args.steps, args.head_dim, args.seq_len, args.batch_size, True))
                 for _ in range(args.repeats)]
        assert all(k["kept"] and not p["kept"] for p, k in pairs), "the setting did not apply here (not glibc?)"
        default_tok = statistics.median(p["tok_s"] for p, _ in pairs)
        kept_tok = statistics.median(k["tok_s"] for _, k in pairs)
        default_f = statistics.median(p["faults"] for p, _ in pairs)
        kept_f = statistics.median(k["faults"] for _, k in pairs)
        ratio = statistics.median(k["tok_s"] / p["tok_s"] for p, k in pairs)
        print(f"  L{L} d{d:<3} {default_tok:>13.0f} {default_f:>11.0f} {kept_tok:>10.0f} {kept_f:>11.0f} "
              f"{ratio:>12.2f}", flush=True)


if __name__ == "__main__":
    main()
