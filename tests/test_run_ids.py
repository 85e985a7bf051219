"""Every shipped sweep plans exactly as before: run ids, the plan table, IsoFLOP windows and spec.json contents
match tests/data/golden_plans.json, written by the code before the import layers were rearranged (issue 25).

A run id names a results folder, so a changed id silently orphans finished runs; this test fails on any change
to a planned run. To regenerate after an intended change (and say why in the commit message):
    python tests/test_run_ids.py > tests/data/golden_plans.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from scaling.config import load_sweep
from scaling.plan import plan_sweep

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden_plans.json"
SWEEPS = sorted(p.name for p in (REPO / "sweeps").glob("*.toml"))


def planned(name: str) -> dict:
    """What the golden file records of sweeps/<name>: ids, the plan table as CSV, windows, a digest of the specs."""
    plan = plan_sweep(load_sweep(str(Path("sweeps") / name)))
    specs = json.dumps([r.to_dict() for r in plan.runs], sort_keys=True)
    return {"run_ids": [r.run_id for r in plan.runs], "plan_csv": plan.to_frame().to_csv(index=False),
            "windows": plan.describe_windows(), "specs_sha256": hashlib.sha256(specs.encode()).hexdigest()}


def test_every_sweep_has_a_golden_plan() -> None:
    assert sorted(json.loads(GOLDEN.read_text())) == SWEEPS


@pytest.mark.parametrize("name", SWEEPS)
def test_plan_is_unchanged(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # sweeps name plug-ins and data relative to the repository root
    monkeypatch.syspath_prepend(str(REPO))
    golden = json.loads(GOLDEN.read_text())[name]
    now = planned(name)
    assert now["run_ids"] == golden["run_ids"]
    assert now["plan_csv"] == golden["plan_csv"]
    assert now["windows"] == golden["windows"]
    assert now["specs_sha256"] == golden["specs_sha256"]


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    import os
    os.chdir(REPO)
    print(json.dumps({name: planned(name) for name in SWEEPS}, indent=1, sort_keys=True))
