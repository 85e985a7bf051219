"""`scaling plan`'s time estimate, calibrated from this machine's finished runs (issue 23, item 7)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from scaling.calibrate import calibrate, lpt_makespan, measured_runs
from scaling.cli import main
from scaling.config import load_sweep
from scaling.plan import plan_sweep

SWEEP = """name = "cal"
results_dir = "{root}"
[model]
seq_len = 128
head_dim = 16
[grid]
shapes = [{{n_layer = 1, d_model = 32}}, {{n_layer = 2, d_model = 64}}, {{n_layer = 2, d_model = 48}}]
n_tokens = [1.5e6]
[train]
batch_size = 16
[launch]
max_parallel = 2
threads_per_job = 1
est_flops_per_s = 7e10
"""


def _finished(root: Path, sweep: str, run: str, n_layer: int, d_model: int, n_params: int, flops: float,
              wall_s: float, host: str | None = None, threads: int = 1) -> None:
    """A finished run's spec.json and result.json, with the fields the calibration reads (as train.py writes
    them: shape in the spec; flops, wall_s, hostname, device, num_threads in the result)."""
    run_dir = root / sweep / run
    run_dir.mkdir(parents=True)
    shape = {"arch": "gpt", "n_layer": n_layer, "d_model": d_model, "n_head": d_model // 16, "seq_len": 128,
             "vocab_size": 256}
    (run_dir / "spec.json").write_text(json.dumps({"run_id": run, "shape": shape, "batch_size": 16,
                                                   "n_params": n_params}))
    (run_dir / "result.json").write_text(json.dumps({
        "run_id": run, "status": "done", "flops": flops, "wall_s": wall_s, "device": "cpu", "num_threads": threads,
        "hostname": host or socket.gethostname()}))


def _plan(tmp_path: Path):
    toml = tmp_path / "cal.toml"
    toml.write_text(SWEEP.format(root=tmp_path / "results"))
    return toml, plan_sweep(load_sweep(toml))


def test_without_finished_runs_the_stated_speed_is_used_and_said(tmp_path: Path) -> None:
    _, plan = _plan(tmp_path)
    cal = calibrate(plan)
    assert cal.n_measured == 0 and "assumed [launch].est_flops_per_s = 7e+10" in cal.source
    assert cal.seconds == {r.run_id: pytest.approx(r.flops / 7e10) for r in plan.runs}


def test_finished_runs_of_this_host_set_each_shapes_speed(tmp_path: Path) -> None:
    _, plan = _plan(tmp_path)
    root = tmp_path / "results"
    # Two runs of L1 d32 in another sweep (1e10 and 3e10 FLOP/s: median 2e10), one of L2 d64 (5e10)...
    _finished(root, "older", "a1", 1, 32, 24672, 1e11, 10.0)
    _finished(root, "older", "a2", 1, 32, 24672, 3e11, 10.0)
    _finished(root, "older", "a3", 1, 32, 24672, 2e11, 10.0)
    _finished(root, "older", "b1", 2, 64, 123200, 5e11, 10.0)
    # ...and runs that did not run like these jobs will: another host, another thread count.
    _finished(root, "older", "c1", 1, 32, 24672, 1e15, 1.0, host="elsewhere")
    _finished(root, "older", "c2", 1, 32, 24672, 1e15, 1.0, threads=2)
    assert len(measured_runs(root, host=socket.gethostname(), device="cpu", threads=1)) == 4
    cal = calibrate(plan)
    assert cal.n_measured == 4 and cal.n_same_shape == 2 and "calibrated from 4 finished run(s)" in cal.source
    by_shape = {(r.shape.n_layer, r.shape.d_model): r for r in plan.runs}
    assert cal.seconds[by_shape[1, 32].run_id] == pytest.approx(by_shape[1, 32].flops / 2e10)
    assert cal.seconds[by_shape[2, 64].run_id] == pytest.approx(by_shape[2, 64].flops / 5e10)
    # L2 d48 was never trained: its speed lies between the two measured sizes', log-linear in N.
    middle = by_shape[2, 48]
    rate = middle.flops / cal.seconds[middle.run_id]
    assert 2e10 < rate < 5e10


def test_plan_prints_the_estimates_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml, _ = _plan(tmp_path)
    assert main(["plan", str(toml)]) == 0
    assert "time estimate: assumed [launch].est_flops_per_s" in capsys.readouterr().out
    _finished(tmp_path / "results", "older", "a1", 1, 32, 24672, 1e11, 10.0)
    assert main(["plan", str(toml)]) == 0
    assert "time estimate: calibrated from 1 finished run(s)" in capsys.readouterr().out
    assert main(["plan", str(toml), "--flops-per-s", "1e9"]) == 0
    assert "time estimate: 1e+09 FLOP/s per job (--flops-per-s)" in capsys.readouterr().out


def test_lpt_makespan_is_the_pools_schedule() -> None:
    assert lpt_makespan([3, 5, 3, 4, 3], 2) == 10  # 5 | 4, then 3s to whichever slot frees first
    assert lpt_makespan([3, 5], 4) == 5 and lpt_makespan([], 2) == 0


def test_a_plan_measure_is_kept_and_used_until_runs_finish(tmp_path: Path) -> None:
    from scaling.calibrate import SPEED_CACHE, save_measured_speed

    _, plan = _plan(tmp_path)
    small, large = sorted({r.n_params for r in plan.runs})[0], sorted({r.n_params for r in plan.runs})[-1]
    path = save_measured_speed(plan, {float(small): 1e10, float(large): 4e10})
    assert path == tmp_path / "results" / SPEED_CACHE
    cal = calibrate(plan)
    assert "measured by `scaling plan --measure` on this host" in cal.source and "lower bound" in cal.source
    for r in plan.runs:
        rate = r.flops / cal.seconds[r.run_id]
        assert 1e10 * 0.999 <= rate <= 4e10 * 1.001
        if r.n_params == small:
            assert rate == pytest.approx(1e10)
    assert calibrate(plan, host="another-host").n_measured == 0  # another host's measurement is not used
    assert "assumed" in calibrate(plan, host="another-host").source
    _finished(tmp_path / "results", "older", "a1", 1, 32, 24672, 1e11, 10.0)
    assert calibrate(plan).source.startswith("calibrated from 1 finished run(s)")  # finished runs win


def test_a_later_plan_rereads_only_the_runs_that_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from scaling import calibrate as calibration
    root = tmp_path / "results"
    for i in range(5):
        _finished(root, "older", f"r{i}", 1, 32, 24672, 1e11 * (i + 1), 10.0)
    here = socket.gethostname()
    first = measured_runs(root, host=here, device="cpu", threads=1)
    assert (root / calibration.RUN_SPEED_INDEX).is_file()
    read: list[str] = []
    real_read = calibration.read_json
    monkeypatch.setattr(calibration, "read_json", lambda p: (read.append(Path(p).parent.name), real_read(p))[1])
    again = measured_runs(root, host=here, device="cpu", threads=1)
    assert again.equals(first) and read == [root.name]  # the index alone: no run's JSON was parsed
    # A run that finished again (new result.json) and a new run are read; the others come from the index.
    (root / "older" / "r2" / "result.json").write_text(json.dumps({
        "status": "done", "flops": 9e11, "wall_s": 10.0, "device": "cpu", "num_threads": 1, "hostname": here}))
    os.utime(root / "older" / "r2" / "result.json", ns=(1, 1))  # a different stamp even on a coarse clock
    _finished(root, "newer", "n0", 1, 32, 24672, 4e11, 10.0)
    read.clear()
    third = measured_runs(root, host=here, device="cpu", threads=1)
    assert sorted(read) == sorted([root.name, "r2", "r2", "n0", "n0"])  # result.json + spec.json of each
    assert len(third) == 6 and third.set_index("run_dir").loc[str(root / "older" / "r2"), "flops"] == 9e11
    # A results folder the planner cannot write still gets its estimate.
    (root / calibration.RUN_SPEED_INDEX).unlink()
    monkeypatch.setattr(calibration, "write_json_atomic", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "no")))
    assert len(measured_runs(root, host=here, device="cpu", threads=1)) == 6
