"""Plug-in models: `[model] arch = "module:factory"` counted from the built module, trained by the project's
trainer beside a built-in family, with one-line errors for a factory that does not import or build."""

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import tiny_sweep, write_sweep
from scaling.accounting import ModelShape, flops_per_token, n_params
from scaling.config import load_sweep
from scaling.errors import ConfigError
from scaling.launch import launch
from scaling.plan import plan_sweep
from scaling.results import read_result

DATA = Path(__file__).parent / "data"


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """tests/data/toy_models.py under a fresh module name in a fresh working directory (where jobs import it)."""
    name = f"my_models_{uuid.uuid4().hex[:8]}"
    shutil.copy(DATA / "toy_models.py", tmp_path / f"{name}.py")
    monkeypatch.chdir(tmp_path)
    return name


def test_counts_come_from_the_built_module_by_the_stated_rules(models: str) -> None:
    import torch

    from scaling.model import build_model

    def shape(factory: str) -> ModelShape:
        return ModelShape(arch=f"{models}:{factory}", n_layer=2, d_model=32, n_head=2, seq_len=16, vocab_size=256)

    tied, untied, hooked = shape("build"), shape("build_untied"), shape("build_with_hook")
    module = build_model(tied)
    assert n_params(tied) == sum(p.numel() for p in module.parameters())  # tied head counted once
    assert n_params(tied) - n_params(tied, non_embedding=True) == (256 + 16) * 32  # the two nn.Embedding tables
    # the estimate: 6 N_non_embedding + 6 n_layer seq_len d_model + 6 d_model vocab_size (a tied head's logits)
    assert flops_per_token(tied) == 6 * n_params(tied, non_embedding=True) + 6 * 2 * 16 * 32 + 6 * 32 * 256
    # an untied head is non-embedding already: its logits are not added a second time
    assert n_params(untied) == n_params(tied) + 256 * 32
    assert flops_per_token(untied) == 6 * n_params(untied, non_embedding=True) + 6 * 2 * 16 * 32
    assert flops_per_token(hooked) == 12345  # the plug-in's own count wins
    torch.manual_seed(0)
    assert build_model(tied)(torch.zeros(2, 16, dtype=torch.long)).shape == (2, 16, 256)


@pytest.mark.parametrize("arch, match", [
    ("no_such_module_x:build", r"\[model\].arch\[1\] = 'no_such_module_x:build': cannot import 'no_such_module_x'"),
    ("{models}:nope", r"has no attribute 'nope'"),
    ("{models}:build:x", r"a plug-in is \"package.module:factory\""),
    ("{models}:build_broken", r"the factory failed for L1 d32: RuntimeError: no such width 32"),
    ("{models}:build_not_a_module", r"returned a str, not a torch.nn.Module"),
    # issue #24 item 15: parameters or FLOPs that cannot be counted are refused at plan time, in one line
    ("{models}:build_lazy", r"parameter 'extra.weight' is uninitialized \(a lazy module such as nn.LazyLinear\)"),
    ("{models}:build_inf_flops", r"flops_per_token\(\) = inf: must be a finite number >= 1"),
    ("{models}:build_nan_flops", r"flops_per_token\(\) = nan: must be a finite number >= 1"),
    ("{models}:build_zero_flops", r"flops_per_token\(\) = 0: must be a finite number >= 1"),
])
def test_a_bad_plug_in_is_one_config_error_naming_file_key_and_value(models: str, tmp_path: Path, text_corpus: Path,
                                                                    arch: str, match: str,
                                                                    count_case: Callable) -> None:
    arch = arch.format(models=models)
    path = write_sweep(tmp_path / "bad.toml", tiny_sweep("bad", text_corpus, model={"arch": ["gpt", arch]},
                                                       grid={"n_tokens": [2560]}))
    with pytest.raises(ConfigError, match=match) as err:
        plan_sweep(load_sweep(path))
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    count_case("bad input")


@pytest.mark.parametrize("factory, match", [
    # counted on the meta device with mlp_ratio 1, trained with 4: the plan's N would be recorded for another model.
    # L1 d32: LayerNorm 2*32 + Linear 32x(32r)+32r + Linear (32r)x32+32 = 8,416 (r=4) or 2,176 (r=1) non-embedding,
    # + embeddings 256*32 + 32*32 = 9,216.
    ("build_smaller_on_meta", r"the module built for training has 17,632 parameters \(8,416 non-embedding\) but "
                              r"the plan counted 11,392 \(2,176 non-embedding\) on torch's meta device"),
    # (T, B, V) logits have the size of (B, T, V): the loss would score each position against another's target
    ("build_time_major", r"forward returned logits of shape \(32, 8, 256\); expected \(batch, seq_len, "
                         r"vocab_size\) = \(8, 32, 256\)"),
    ("build_with_loss", r"forward returned a tuple, not a logits tensor of shape \(batch, seq_len, vocab_size\) = "
                        r"\(8, 32, 256\)"),
])
def test_a_plug_in_that_trains_unlike_its_plan_fails_its_run_in_one_line(models: str, tmp_path: Path,
                                                                         text_corpus: Path, factory: str, match: str,
                                                                         count_case: Callable) -> None:
    from scaling.plugin import PluginError
    from scaling.results import SPEC, read_json, write_json_atomic
    from scaling.train import train_run

    arch = f"{models}:{factory}"
    cfg = tiny_sweep("mine", text_corpus, results_dir=tmp_path / "results", model={"arch": arch},
                     grid={"n_tokens": [2560]})
    (spec,) = plan_sweep(load_sweep(write_sweep(tmp_path / "mine.toml", cfg))).runs
    run_dir = tmp_path / "results" / "mine" / spec.run_id
    run_dir.mkdir(parents=True)
    write_json_atomic(run_dir / SPEC, spec.to_dict())
    with pytest.raises(PluginError, match=match) as err:
        train_run(run_dir, num_threads=1)
    assert str(err.value).startswith(f"[model].arch = {arch!r}: ") and "\n" not in str(err.value)
    status = read_json(run_dir / "status.json")
    assert status["state"] == "failed" and arch in status["error"] and read_result(run_dir) is None
    count_case("bad input")


@pytest.mark.slow
def test_a_plug_in_trains_beside_gpt_on_the_local_pool_and_resumes_bitwise(models: str, tmp_path: Path,
                                                                           text_corpus: Path) -> None:
    from scaling import load_results
    from scaling.train import train_run

    arch = f"{models}:build"
    cfg = tiny_sweep("mine", text_corpus, results_dir=tmp_path / "results", model={"arch": ["gpt", arch]},
                     grid={"n_tokens": [2560]}, train={"log_every_steps": 5},
                     launch={"max_parallel": 2, "timeout_min": 10})
    plan = plan_sweep(load_sweep(write_sweep(tmp_path / "mine.toml", cfg)))
    mine = [r for r in plan.runs if r.shape.arch == arch]
    assert len(plan.runs) == 2 and len(mine) == 1 and mine[0].run_id.startswith(f"{models}.build-L1-d32-")  # ':' kept out of folder names
    assert mine[0].n_params == n_params(mine[0].shape) and mine[0].flops == mine[0].n_tokens * mine[0].flops_per_token
    report = launch(plan, verbose=False)  # jobs are other processes: they import the module from the cwd too
    assert report.failed == []
    table = load_results(plan.sweep.sweep_dir)
    assert set(table["arch"]) == {"gpt", arch} and (table["status"] == "done").all()
    result = read_result(plan.sweep.sweep_dir / mine[0].run_id)
    assert result["n_params"] == mine[0].n_params and result["steps_done"] == mine[0].n_steps

    # Checkpoints: paused half way and resumed, the plug-in's run ends bitwise where the pool's did.
    again = tmp_path / "again" / mine[0].run_id
    again.mkdir(parents=True)
    shutil.copy(plan.sweep.sweep_dir / mine[0].run_id / "spec.json", again / "spec.json")
    assert train_run(again, num_threads=1, stop_at_step=mine[0].n_steps // 2)["status"] == "paused"
    resumed = train_run(again, num_threads=1)
    assert (resumed["val_loss"], resumed["train_loss"]) == (result["val_loss"], result["train_loss"])



def test_a_plug_in_family_fits_into_a_safe_folder_named_like_its_run_ids() -> None:
    # `scaling fit` of a multi-family sweep writes <sweep>/<family>/fit.json; ':' is not a safe folder name
    # (sweeps/own_model.toml's fit runs it end to end: results/own_model/sweeps.own_model.build/)
    from scaling.pipeline import family_folder
    from scaling.config import is_safe_component
    from scaling.plan import arch_label

    assert family_folder("sweeps.own_model:build") == arch_label("sweeps.own_model:build") == "sweeps.own_model.build"
    assert is_safe_component(family_folder("sweeps.own_model:build")) and family_folder("gpt") == "gpt"
