"""Results on disk: one folder per run, written atomically, read back into a pandas table.

This package owns the run folder: what it holds (files), the records written there (records: RunSpec,
RunResult, the one digest naming runs, trunks and checkpoints, the schema checks), and its state read from
the files alone (state: read_run behind run_state, load_results and sweep_status). WSD trunks
(<sweep>/.trunks/<trunk_id>/) are run folders like any other.

Layout of results/<sweep>/<run_id>/:
    spec.json      the RunSpec (written by the launcher before the job starts)
    status.json    state + heartbeat + job id + log path (running / failed / requeued), rewritten atomically
    metrics.jsonl  one JSON object per logged step (append-only; a torn last line is ignored)
    result.json    the RunResult; its presence with a valid status means the run is finished
    ckpt.pt        the latest checkpoint (torch.save to a temp file, then os.replace)
    (the submitit logs of each attempt are in <sweep>/.submitit/<launch>/; status.json names them)
The table is always derived from these files, never stored as the source of truth. Nothing here imports
torch, and nothing here unpickles anything. results/README.md describes a sweep's folder for users.
"""

from scaling.results.files import (CKPT, LOCK, METRICS, RESULT, SPEC, STATUS, append_metrics, atomic_path,
                                   export_csv, last_metrics_record, read_json, read_json_checked, read_metrics,
                                   storage_error, write_json_atomic)
from scaling.results.records import (ADDED_AFTER_CHECKPOINTS, ADDED_LATER, BRANCH_ONLY, arch_label, FINAL_STATES, LABELS, NAMES, NOT_COMPUTED,
                                     PLAUSIBLE, RESULT_FIELDS, SHAPE_ADDED_LATER, STATES, RunResult, RunSpec, checkpoint_id, describe_ids,
                                     implausible, number, result_problem, run_id_for, si, spec_digest,
                                     spec_problem, status_problem, trunk_id_for, twin_key)
from scaling.results.state import (HEARTBEAT_STALE_S, PROGRESS_COLUMNS, STATUS_COLUMNS, RunFiles, RunLock, claim, damage,
                                   load_curves, load_results, read_result, read_run, read_spec, run_dirs,
                                   run_state, sweep_status, write_result, write_spec, write_status)

__all__ = [name for name in dir() if not name.startswith("_") and name not in ("files", "records", "state")]
