"""Which run folders a fit may use: the runs its sweep plans, all trained on the same corpus. Torch-free.

A sweep folder outlives edits of its sweep file: changing `lr` or dropping a budget plans new run ids, and
the old folders stay beside the new ones. A corpus edited in place keeps its path (so its run ids) but not
its content. Either way the folder holds runs the sweep no longer describes; fits, tables and figures of a
sweep use its planned runs, and runs trained on another corpus than the rest are retrained or refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from scaling.errors import FitError
from scaling.results import CKPT, METRICS, RESULT, STATUS, read_result
from scaling.safe import name_for, no_symlink

STALE_PREFIX = "stale-data-"
"""Sub-folder of a run folder that keeps a result trained on an earlier version of the corpus."""


def planned_rows(frame: pd.DataFrame, run_ids: Iterable[str]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(rows of the planned runs, rows of the other run folders, planned run ids with no folder yet); `run_ids`
    are a plan's (`Plan.run_ids`)."""
    ids = list(run_ids)
    have = (frame["run_id"].astype(str) if "run_id" in frame.columns
            else pd.Series([""] * len(frame), index=frame.index, dtype=str))  # no ids: nothing matches the plan
    mine = have.isin(set(ids)).to_numpy()
    present = set(have)
    missing = [i for i in ids if i not in present]
    return frame.loc[mine].reset_index(drop=True), frame.loc[~mine].reset_index(drop=True), missing


def check_one_corpus(frame: pd.DataFrame, where: str | Path, allow_mixed: bool = False) -> list[str]:
    """FitError (one line, naming runs and fingerprints) when finished runs were trained on different data.

    A run's result.json records the fingerprint of the tokens it saw (scaling.data.Corpus.fingerprint);
    runs without one (a CSV, older results) are not compared. With `allow_mixed`, the mixture is returned
    as a note instead.
    """
    if "data_fingerprint" not in frame.columns or "status" not in frame.columns:
        return []
    done = frame[(frame["status"].astype(str) == "done") & frame["data_fingerprint"].notna()]
    groups = {str(fp): part["run_id"].astype(str).tolist() for fp, part in done.groupby("data_fingerprint")}
    if len(groups) < 2:
        return []
    ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    text = "; ".join(f"{len(ids)} on corpus {fp} ({', '.join(ids[:2])}{', ...' if len(ids) > 2 else ''})"
                     for fp, ids in ranked)
    message = f"{where}: finished runs were trained on different data: {text}"
    if not allow_mixed:
        raise FitError(f"{message}; retrain the stale ones (`scaling run SWEEP` does) or pass --allow-mixed-data")
    return [f"{message} (fitted together: --allow-mixed-data)"]


def stale_data_runs(sweep_dir: str | Path, run_ids: Iterable[str], fingerprint: str) -> list[tuple[str, str]]:
    """(run_id, recorded fingerprint) of every planned run (of `run_ids`, in sweep_dir) finished on a corpus
    other than `fingerprint`."""
    stale = []
    for run_id in run_ids:
        result = read_result(Path(sweep_dir) / run_id)
        recorded = ((result or {}).get("corpus") or {}).get("fingerprint")
        if recorded is not None and recorded != fingerprint:
            stale.append((run_id, str(recorded)))
    return stale


def retire_stale(run_dir: Path, recorded: str) -> Path:
    """Move a run's result, checkpoint, metrics and status into run_dir/stale-data-<fingerprint>/, so the
    run reads as unfinished and is retrained; nothing is deleted. Returns that folder."""
    run_dir = no_symlink(run_dir)
    # the fingerprint comes from result.json: a folder name only when it is one safe name, else its digest
    stem = f"{STALE_PREFIX}{name_for(recorded)}"
    aside = run_dir / stem
    n = 1
    while os.path.lexists(aside):
        n += 1
        aside = run_dir / f"{stem}-{n}"
    aside.mkdir()
    # result.json first: once it is gone the run is unfinished, whatever happens to the rest
    for name in (RESULT, CKPT, METRICS, STATUS):
        if (run_dir / name).exists():
            os.replace(run_dir / name, aside / name)
    return aside

