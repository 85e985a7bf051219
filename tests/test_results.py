"""Results on disk: atomic writes, corrupt files read as missing, states from files alone, the table."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scaling.results import (RunLock, append_metrics, export_csv, load_results, read_metrics, read_result,
                             run_state, write_json_atomic, write_result, write_status)

RESULT = {"status": "done", "train_loss": 2.0, "val_loss": 2.1, "n_params": 1000, "n_tokens": 5000,
          "flops": 3e7, "wall_s": 1.0}


def make_run(root: Path, name: str, n_params: int = 1000, n_tokens: int = 5000) -> Path:
    run = root / name
    run.mkdir(parents=True)
    spec = {"run_id": name, "sweep": "s", "shape": {"arch": "gpt", "n_layer": 1, "d_model": 32, "n_head": 2,
                                                    "seq_len": 32, "vocab_size": 256, "mlp_ratio": 4},
            "n_params": n_params, "n_params_non_embedding": n_params // 2, "n_tokens": n_tokens,
            "flops": 6.0 * n_params * n_tokens, "flops_6nd": 6.0 * n_params * n_tokens, "seed": 0}
    write_json_atomic(run / "spec.json", spec)
    return run


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    write_json_atomic(tmp_path / "a.json", {"x": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_truncated_or_incomplete_result_means_not_finished(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r")
    write_result(run, RESULT)
    assert read_result(run) == RESULT and run_state(run) == "done"
    text = (run / "result.json").read_text()
    (run / "result.json").write_text(text[: len(text) // 2])  # a half-written file
    assert read_result(run) is None and run_state(run) == "damaged"  # not finished: the next launch redoes it
    (run / "result.json").write_text(json.dumps({"status": "done"}))  # missing fields
    assert read_result(run) is None
    with pytest.raises(ValueError):
        write_result(run, {"status": "maybe"})


def test_torn_metrics_line_is_skipped(tmp_path: Path) -> None:
    append_metrics(tmp_path, {"step": 1, "train_loss": 3.0})
    append_metrics(tmp_path, {"step": 2, "train_loss": 2.9})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "train_lo')
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_states_from_disk(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r")
    assert run_state(run) == "pending"
    write_status(run, "failed", error="boom", log="/x.err")
    assert run_state(run) == "failed"
    # 'running' written by a process that is gone reads as failed, not as running forever
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    write_status(run, "running")
    status = json.loads((run / "status.json").read_text())
    write_json_atomic(run / "status.json", {**status, "pid": int(dead)})
    assert run_state(run) == "failed"
    write_status(run, "running")  # this (live) process
    assert run_state(run) == "running"
    write_result(run, {**RESULT, "status": "diverged", "reason": "non-finite loss"})
    assert run_state(run) == "diverged"


def test_lock_excludes_a_second_holder_and_dies_with_its_process(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from scaling.results import RunLock; "
        f"l = RunLock({str(tmp_path)!r}); assert l.acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = RunLock(tmp_path)
        assert not lock.acquire() and lock.is_held_elsewhere()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path) as lock:  # the kernel released it with the killed process
        assert lock.acquire()


def test_load_results_table(tmp_path: Path) -> None:
    done = make_run(tmp_path, "a", n_params=1000)
    write_result(done, RESULT)
    diverged = make_run(tmp_path, "b", n_params=2000)
    write_result(diverged, {**RESULT, "status": "diverged", "val_loss": float("nan"),
                            "reason": "non-finite loss (nan) at step 7"})
    make_run(tmp_path, "c", n_params=3000)
    (tmp_path / "not_a_run").mkdir()
    frame = load_results(tmp_path)
    assert list(frame["run_id"]) == ["a", "b", "c"]
    assert list(frame["status"]) == ["done", "diverged", "pending"]
    assert frame.loc[0, "loss"] == 2.1 and frame["loss"].isna().tolist() == [False, True, True]
    assert frame.loc[1, "reason"].startswith("non-finite")
    csv = export_csv(frame, tmp_path / "runs.csv")
    assert csv.read_text().splitlines()[0].startswith("run_id,")
    # `scaling fit SWEEP --out new/folder` writes the table into a folder that does not exist yet
    assert export_csv(frame, tmp_path / "new" / "folder" / "runs.csv").read_text() == csv.read_text()


def test_result_records_are_typed_and_keep_what_they_do_not_know(tmp_path: Path) -> None:
    from scaling.results import RunResult

    record = RunResult.from_dict(RESULT | {"reason": None, "my_trainer_note": "kept"})
    assert record.val_loss == 2.1 and record.extra == {"my_trainer_note": "kept"}
    run = make_run(tmp_path, "r")
    write_result(run, record.replace(steps_done=10))
    on_disk = json.loads((run / "result.json").read_text())
    assert on_disk == RESULT | {"steps_done": 10, "my_trainer_note": "kept"}  # None fields are left out
    with pytest.raises(ValueError, match="not a result record: val_loss = -1 is outside"):
        write_result(run, RESULT | {"val_loss": -1.0})  # damage is refused at write time too
    assert read_result(run) == on_disk


def test_one_reader_behind_state_table_and_status(tmp_path: Path) -> None:
    from scaling.results import read_run, sweep_status

    done, failed, damaged = (make_run(tmp_path, n) for n in ("done", "failed", "damaged"))
    write_result(done, RESULT)
    write_status(failed, "failed", error="boom")
    (damaged / "status.json").write_text('{"state": 3}')
    runs = {d.name: read_run(d) for d in (done, failed, damaged)}
    assert {n: r.state for n, r in runs.items()} == {"done": "done", "failed": "failed", "damaged": "damaged"}
    assert runs["failed"].error == "boom" and runs["damaged"].error == "status.json: state = 3 is not a string"
    table = load_results(tmp_path).set_index("run_id")
    status = sweep_status(tmp_path).set_index("run_id")
    for name, run in runs.items():
        assert table.loc[name, "status"] == status.loc[name, "state"] == run_state(tmp_path / name) == run.state
        text = lambda v: v if isinstance(v, str) else None  # a missing reason reads NaN in a table
        assert text(table.loc[name, "reason"]) == text(status.loc[name, "error"]) == run.error
    planned = sweep_status({"done": None, "not-yet": {"n_params": 5}}, tmp_path).set_index("run_id")
    assert list(planned["state"]) == ["done", "pending"] and planned.loc["not-yet", "n_params"] == 5


def planned_spec():
    """A real RunSpec: the first run of the shipped default sweep's plan."""
    from scaling.config import load_sweep
    from scaling.plan import plan_sweep

    return plan_sweep(load_sweep(Path(__file__).resolve().parents[1] / "sweeps" / "tiny.toml")).runs[0]


def test_read_spec_is_the_one_schema_checked_reader_of_spec_json(tmp_path: Path) -> None:
    from scaling.errors import LaunchError
    from scaling.results import read_spec, write_spec

    spec = planned_spec()
    with pytest.raises(LaunchError, match=r"spec.json: missing or unreadable run spec$"):
        read_spec(tmp_path)
    write_spec(tmp_path, spec)
    assert read_spec(tmp_path) == spec
    raw = json.loads((tmp_path / "spec.json").read_text())
    write_json_atomic(tmp_path / "spec.json", {**raw, "n_params": "many"})
    with pytest.raises(LaunchError, match=r"spec.json: damaged run spec: .*n_params"):
        read_spec(tmp_path)


def test_claim_returns_a_finished_result_or_holds_the_lock_or_refuses(tmp_path: Path) -> None:
    from scaling.errors import LaunchError
    from scaling.results import claim

    done, lock = claim(tmp_path)
    assert done is None and lock is not None and not RunLock(tmp_path).acquire()  # held: a second claim fails
    lock.release()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from scaling.results import RunLock; "
        f"l = RunLock({str(tmp_path)!r}); assert l.acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LaunchError, match="is being trained by another process"):
            claim(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    write_result(tmp_path, RESULT)
    done, lock = claim(tmp_path)
    assert done is not None and done["status"] == "done" and lock is None
