"""A small external training script for the [train].command tests (no torch: it starts in milliseconds).

It follows the contract of scaling.external: "trains" for --n_steps steps whose loss is Chinchilla's law
L(N, D) = 1.69 + 406.4 / N^0.34 + 410.7 / D^0.28 (Hoffmann et al. 2022, Approach 3) at the tokens seen so
far, appends a loss curve to metrics.jsonl, checkpoints its step to toy_ckpt.json after every step, stops
on SIGTERM after saving (the framework's requeue request), resumes from its checkpoint when started again,
and writes final.json last. --fail_seed / --silent_seed make one seed exit 3 or exit 0 without a result.
--lr adds a known LR penalty, 0.05 * ln(lr / lr_opt(N))^2 with lr_opt(N) = 0.01 * (N / 1e5)^-0.5, so an lr_sweep
of this script has a known LR law.
"""

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path


def law(n_params: float, n_tokens: float, lr: float | None = None) -> float:
    penalty = 0.0 if lr is None else 0.05 * math.log(lr / (0.01 * (n_params / 1e5) ** -0.5)) ** 2
    return 1.69 + 406.4 / n_params ** 0.34 + 410.7 / max(n_tokens, 1.0) ** 0.28 + penalty


def write_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def main() -> int:
    p = argparse.ArgumentParser()
    for name in ("n_params", "n_tokens", "n_steps", "seed"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--step_s", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--fail_seed", type=int, default=-1)
    p.add_argument("--silent_seed", type=int, default=-1)
    a = p.parse_args()
    if a.seed == a.fail_seed:
        print("toy_train: CUDA out of memory (pretend)", file=sys.stderr)
        return 3
    if a.seed == a.silent_seed:
        print("toy_train: finished, but forgot to write final.json")
        return 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    ckpt, metrics = a.out / "toy_ckpt.json", a.out / "metrics.jsonl"
    step = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
    resumed_from = step
    if metrics.exists():  # keep the curve up to the checkpoint: no duplicate steps after a resume
        kept = [ln for ln in metrics.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        metrics.write_text("".join(ln + "\n" for ln in kept))
    print(f"toy_train: attempt {os.environ.get('SCALING_ATTEMPT')}, starting at step {step} in {os.getcwd()}",
          flush=True)
    per_step = a.n_tokens / a.n_steps
    while step < a.n_steps:
        time.sleep(a.step_s)
        step += 1
        with open(metrics, "a") as f:
            f.write(json.dumps({"step": step, "tokens": int(step * per_step),
                                "train_loss": law(a.n_params, step * per_step, a.lr)}) + "\n")
        write_atomic(ckpt, {"step": step})
        if stop:
            print(f"toy_train: SIGTERM at step {step}; checkpoint saved", flush=True)
            return 0
    write_atomic(a.out / "final.json", {"val_loss": law(a.n_params, a.n_tokens, a.lr), "n_params": a.n_params,
                                        "resumed_from": resumed_from})
    return 0


if __name__ == "__main__":
    sys.exit(main())
