"""[model].mup_tied_embedding_lr_mult (the tied embedding's LR under muP) as a config key, and the muP checkpoints
written before it had a group of its own (issue 28 leftovers)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import small_grid_sweep, write_specs
from scaling import mup
from scaling.config import load_sweep
from scaling.errors import ConfigError
from scaling.model import build_model
from scaling.plan import plan_sweep
from scaling.results import CKPT, RunSpec, checkpoint_id

MUP = 'parametrization = "mup"\nbase_width = 16\narch = ["gpt", "llama"]'
IDS_BEFORE_THE_KEY = [  # planned by the code before the key existed (main at eac8bb2)
    "gpt-L1-d32-T100K-s0-09449a6a", "gpt-L1-d32-T400K-s0-0632e859", "gpt-L2-d48-T100K-s0-c6ad79af",
    "gpt-L2-d48-T400K-s0-86426a5a", "llama-L1-d32-T100K-s0-482b2236", "llama-L1-d32-T400K-s0-0c235726",
    "llama-L2-d48-T100K-s0-25a4f039", "llama-L2-d48-T400K-s0-7bb959e3"]
CHECKPOINT_IDS_BEFORE_THE_KEY = ["c24a13265dc65062", "f9224d00b905a784"]


def plan(tmp_path: Path, extra: str = ""):
    return plan_sweep(load_sweep(str(small_grid_sweep(tmp_path, model=MUP + extra))))


def test_default_keeps_run_ids_and_spec_json_and_setting_it_changes_them(tmp_path: Path) -> None:
    default = plan(tmp_path)
    assert default.run_ids == IDS_BEFORE_THE_KEY
    assert [checkpoint_id(r) for r in default.runs[:2]] == CHECKPOINT_IDS_BEFORE_THE_KEY
    assert "mup_tied_embedding_lr_mult" not in default.runs[0].to_dict()["shape"]  # spec.json as before
    assert plan(tmp_path, "\nmup_tied_embedding_lr_mult = 8").run_ids == IDS_BEFORE_THE_KEY
    four = plan(tmp_path, "\nmup_tied_embedding_lr_mult = 4")
    assert not set(four.run_ids) & set(IDS_BEFORE_THE_KEY)
    assert {checkpoint_id(r) for r in four.runs[:2]}.isdisjoint(CHECKPOINT_IDS_BEFORE_THE_KEY)
    spec = four.runs[0].to_dict()
    assert spec["shape"]["mup_tied_embedding_lr_mult"] == 4.0
    assert RunSpec.from_dict(json.loads(json.dumps(spec))) == four.runs[0]


def test_the_trainer_uses_the_key(tmp_path: Path) -> None:
    shape = plan(tmp_path, "\nmup_tied_embedding_lr_mult = 4").runs[0].shape
    model = build_model(shape)
    scale = {id(p): g["lr_scale"] for g in mup.param_groups(model, shape, 0.1) for p in g["params"]}
    assert scale[id(model.wte.weight)] == 4.0


@pytest.mark.parametrize("model, match", [
    ("\nmup_tied_embedding_lr_mult = 0", r"s\.toml: \[model\]\.mup_tied_embedding_lr_mult = 0\.0: must be > 0"),
    ("\nmup_tied_embedding_lr_mult = -2.5", r"s\.toml: \[model\]\.mup_tied_embedding_lr_mult = -2\.5: must be > 0"),
    ("\nmup_tied_embedding_lr_mult = inf", r"s\.toml: \[model\]\.mup_tied_embedding_lr_mult = inf: must be finite"),
    ("\nmup_tied_embedding_lr_mult = nan", r"s\.toml: \[model\]\.mup_tied_embedding_lr_mult = nan: must be finite"),
    ("\nmup_tied_embedding_lr_mult = \"8\"", r"mup_tied_embedding_lr_mult = '8': must be a number"),
])
def test_bad_values_are_one_line(tmp_path: Path, model: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        plan(tmp_path, model)


def test_only_with_mup(tmp_path: Path) -> None:
    p = small_grid_sweep(tmp_path, model="mup_tied_embedding_lr_mult = 4")
    with pytest.raises(ConfigError, match=r"s\.toml: \[model\]\.mup_tied_embedding_lr_mult = 4\.0: only used with "
                                          r"parametrization = \"mup\""):
        load_sweep(str(p))


# ---------------------------------------------------------------------------------------------- old checkpoints


def groups_before_the_multiplier(model: torch.nn.Module, shape, weight_decay: float) -> list[dict]:
    """scaling.mup.param_groups as it was before commit 4da2e36: the tied token embedding in the embedding group."""
    named = list(model.named_parameters())
    hidden: dict[float, list[torch.Tensor]] = {}
    for n, p in named:
        if mup.kind(n, p) == "hidden":
            hidden.setdefault(mup.fan_in_mult(shape, p.shape[1]), []).append(p)
    other = [p for n, p in named if mup.kind(n, p) in ("embedding", "output")]
    vectors = [p for n, p in named if mup.kind(n, p) == "vector"]
    return [{"params": ps, "weight_decay": weight_decay * fm, "lr_scale": 1.0 / fm} for fm, ps in hidden.items()] + [
            {"params": other, "weight_decay": weight_decay, "lr_scale": 1.0},
            {"params": vectors, "weight_decay": 0.0, "lr_scale": 1.0}]


def write_old_checkpoint(run_dir: Path, spec: RunSpec, steps: int = 2) -> None:
    """A real checkpoint in the trainer's format, trained `steps` AdamW steps with the groups built the old way."""
    torch.manual_seed(spec.seed)
    model = build_model(spec.shape)
    opt = torch.optim.AdamW(groups_before_the_multiplier(model, spec.shape, spec.weight_decay), lr=spec.lr,
                            betas=(spec.beta1, spec.beta2))
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        x = torch.randint(0, spec.shape.vocab_size, (spec.batch_size, spec.shape.seq_len + 1), generator=gen)
        loss = F.cross_entropy(model(x[:, :-1]).reshape(-1, spec.shape.vocab_size), x[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": steps, "losses": losses,
                "train_s": 0.5, "spec_hash": checkpoint_id(spec), "torch_rng": torch.get_rng_state()},
               run_dir / CKPT)


def test_old_checkpoint_is_refused_in_one_line_and_kept(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from scaling.cli import main
    from scaling.train import train_run

    p = plan(tmp_path)
    spec = p.runs[0]  # gpt L1 d32 over base 16: one hidden group, embeddings, vectors (+ the tied weight now)
    run_dir = write_specs(p)[0]
    write_old_checkpoint(run_dir, spec)
    saved = torch.load(run_dir / CKPT, weights_only=True)["optimizer"]["param_groups"]
    model = build_model(spec.shape)
    assert mup.predates_tied_group(saved, mup.param_groups(model, spec.shape, spec.weight_decay))
    with pytest.raises(ConfigError, match=(
            rf"{run_dir.name}: ckpt\.pt predates \[model\]\.mup_tied_embedding_lr_mult \(its optimizer has 3 "
            r"parameter groups, this run 4\): its 2 steps trained the tied embedding at 1x \[train\]\.lr, this run "
            r"trains it at 8x; delete .*ckpt\.pt to restart the run, or set mup_tied_embedding_lr_mult = 1")):
        train_run(run_dir, num_threads=1)
    assert (run_dir / CKPT).exists() and not list(run_dir.glob(f"{CKPT}.bad-*"))  # left for the user to decide
    assert "ConfigError: " in json.loads((run_dir / "status.json").read_text())["error"]
    capsys.readouterr()
    assert main(["train", str(run_dir)]) == 2  # `scaling train` (what a job runs): one line, no traceback
    err = capsys.readouterr().err.strip()
    assert err.startswith("ConfigError: ") and "\n" not in err and "Traceback" not in err
    (run_dir / CKPT).unlink()  # what the line says to do
    result = train_run(run_dir, num_threads=1)
    assert result["status"] == "done" and math.isfinite(result["val_loss"])


def test_current_and_untied_checkpoints_are_not_mistaken_for_old_ones(tmp_path: Path) -> None:
    for extra in ("", "\ntie_embeddings = false"):
        shape = plan(tmp_path, extra).runs[0].shape
        model = build_model(shape)
        groups = mup.param_groups(model, shape, 0.1)
        opt = torch.optim.AdamW(mup.param_groups(model, shape, 0.1))
        assert not mup.predates_tied_group(opt.state_dict()["param_groups"], groups)
        # tied: the old layout is one group short; untied: the layouts are the same, nothing to refuse
        assert mup.predates_tied_group(groups_before_the_multiplier(model, shape, 0.1), groups) == (not extra)
