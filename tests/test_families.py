"""The llama and gru families, the untied output head, and muP (scaling.mup): exact accounting against the
torch modules, all four families planned and trained from one sweep, muP's rules, and the coordinate check."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from conftest import tiny_sweep, write_sweep
from scaling import mup
from scaling.accounting import ModelShape, forward_flops_per_token, n_params, swiglu_hidden
from scaling.config import MUP_ARCHS, load_sweep
from scaling.errors import ConfigError
from scaling.model import build_model
from scaling.plan import plan_sweep
from scaling.results import write_json_atomic
from scaling.train import train_run

@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny models: one thread is fastest, and keeps the shared CI cores free for other work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SHAPES = [
    ModelShape(arch="llama", n_layer=1, d_model=32, n_head=2, seq_len=32, vocab_size=256),
    ModelShape(arch="llama", n_layer=3, d_model=96, n_head=3, seq_len=64, vocab_size=1000, mlp_ratio=2),
    ModelShape(arch="llama", n_layer=2, d_model=64, n_head=4, seq_len=16, vocab_size=300, tie_embeddings=False),
    ModelShape(arch="gpt", n_layer=2, d_model=64, n_head=4, seq_len=16, vocab_size=300, tie_embeddings=False),
    ModelShape(arch="gru", n_layer=1, d_model=32, n_head=1, seq_len=32, vocab_size=256),
    ModelShape(arch="gru", n_layer=3, d_model=48, n_head=1, seq_len=64, vocab_size=500, tie_embeddings=False),
    ModelShape(arch="lstm", n_layer=2, d_model=48, n_head=1, seq_len=64, vocab_size=500, tie_embeddings=False),
]


def _id(s: ModelShape) -> str:
    return f"{s.arch}-L{s.n_layer}-d{s.d_model}-V{s.vocab_size}" + ("" if s.tie_embeddings else "-untied")


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
def test_param_counts_match_accounting(shape: ModelShape) -> None:
    model = build_model(shape)
    total = sum(p.numel() for p in model.parameters())
    embedding = sum(p.numel() for name, p in model.named_parameters() if name.split(".")[0] in ("wte", "wpe"))
    assert total == n_params(shape)
    assert total - embedding == n_params(shape, non_embedding=True)  # an untied head counts as non-embedding
    assert sum(1 for _ in model.buffers()) == (2 * shape.n_layer if shape.arch == "llama" else 0)  # rotary only
    assert (getattr(model, "lm_head", None) is None) == shape.tie_embeddings


@pytest.mark.parametrize("shape", [s for s in SHAPES if s.arch != "lstm"], ids=_id)
def test_flop_counts_match_the_module(shape: ModelShape) -> None:
    # torch's FlopCounterMode counts the matmuls the module runs (attention through the math SDPA kernel, full
    # T x T like Chinchilla); the accounting adds the two terms Chinchilla counts that are no matmul: the
    # embedding lookup (2 V d) and the softmax (3 n_head T per layer). nn.LSTM's fused kernel is not counted.
    model = build_model(shape)
    B, T = 2, shape.seq_len
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(torch.zeros(B, T, dtype=torch.long))
    not_matmul = 2 * shape.vocab_size * shape.d_model
    if shape.arch in ("gpt", "llama"):
        not_matmul += shape.n_layer * 3 * shape.n_head * T
    assert counter.get_total_flops() == B * T * (forward_flops_per_token(shape) - not_matmul)


def test_llama_is_rmsnorm_swiglu_rotary_without_biases() -> None:
    shape = ModelShape(arch="llama", n_layer=2, d_model=48, n_head=3, seq_len=16, vocab_size=50)
    model = build_model(shape)
    assert swiglu_hidden(48, 4) == 128 and model.blocks[0].mlp.c_fc.out_features == 2 * 128  # 8/3 * 48 = 128
    assert all(isinstance(b.ln_1, torch.nn.RMSNorm) for b in model.blocks) and model.wpe is None
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    # rotary positions: q.k depends on the offset of two positions only, so attention is shift-invariant
    rot = model.blocks[0].attn.rotary
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    def dot(i: int, j: int) -> float:
        qi = rot(q.expand(1, 1, 16, 16))[0, 0, i]
        kj = rot(k.expand(1, 1, 16, 16))[0, 0, j]
        return float(qi @ kj)
    assert dot(5, 2) == pytest.approx(dot(12, 9), abs=1e-5) and dot(5, 2) != pytest.approx(dot(5, 4), abs=1e-3)


def four_families(tmp_path: Path, corpus: Path, **model: object) -> Path:
    return write_sweep(tmp_path / "four.toml", tiny_sweep(
        "four", corpus, results_dir=tmp_path / "results", model={"arch": ["gpt", "llama", "lstm", "gru"], **model}, grid={"n_tokens": [6_000]},
        train={"lr": 3e-3}))


def test_four_families_plan_and_train(tmp_path: Path, text_corpus: Path) -> None:
    plan = plan_sweep(load_sweep(four_families(tmp_path, text_corpus)))
    assert [r.shape.arch for r in plan.runs] == ["gpt", "llama", "lstm", "gru"]
    assert all(r.run_id.startswith(r.shape.arch + "-") for r in plan.runs)
    for run in plan.runs:
        run_dir = plan.sweep.sweep_dir / run.run_id
        run_dir.mkdir(parents=True)
        write_json_atomic(run_dir / "spec.json", run.to_dict())
        result = train_run(run_dir, num_threads=1)
        assert result["status"] == "done" and result["n_params"] == n_params(run.shape), run.run_id
        assert result["val_loss"] < math.log(256), run.run_id  # learned something beyond uniform bytes


def test_mup_runs_plan_and_train(tmp_path: Path, text_corpus: Path) -> None:
    toml = write_sweep(tmp_path / "mup.toml", tiny_sweep(
        "mup", text_corpus, results_dir=tmp_path / "results", grid={"n_tokens": [6_000]}, train={"lr": 3e-3},
        model={"arch": ["gpt", "llama"], "parametrization": "mup", "base_width": 16, "tie_embeddings": False}))
    plan = plan_sweep(load_sweep(toml))
    sp = plan_sweep(load_sweep(write_sweep(tmp_path / "sp.toml", tiny_sweep(
        "mup", text_corpus, results_dir=tmp_path / "results", grid={"n_tokens": [6_000]}, train={"lr": 3e-3},
        model={"arch": ["gpt", "llama"], "tie_embeddings": False}))))
    assert {r.run_id for r in plan.runs}.isdisjoint(r.run_id for r in sp.runs)  # muP runs get their own folders
    for run in plan.runs:
        assert run.shape.parametrization == "mup" and run.shape.base_width == 16 and run.shape.d_model == 32
        run_dir = plan.sweep.sweep_dir / run.run_id
        run_dir.mkdir(parents=True)
        write_json_atomic(run_dir / "spec.json", run.to_dict())
        result = train_run(run_dir, num_threads=1)
        assert result["status"] == "done" and result["val_loss"] < math.log(256), run.run_id


def test_untied_head_adds_v_times_d_and_keeps_tied_run_ids(tmp_path: Path, text_corpus: Path) -> None:
    tied = plan_sweep(load_sweep(four_families(tmp_path, text_corpus)))
    untied = plan_sweep(load_sweep(four_families(tmp_path, text_corpus, tie_embeddings=False)))
    for a, b in zip(tied.runs, untied.runs):
        assert b.n_params - a.n_params == a.shape.vocab_size * a.shape.d_model
        assert a.run_id != b.run_id
    # the new shape fields at their defaults leave run ids as they were before the fields existed (the
    # literal ids pinned in tests/test_plan.py), however a spec.json written before them reads
    from scaling.results import RunSpec
    old = tied.runs[0].to_dict()
    old["shape"] = {k: v for k, v in old["shape"].items() if k not in ("tie_embeddings", "parametrization",
                                                                      "base_width")}
    assert RunSpec.from_dict(old) == tied.runs[0]


@pytest.mark.parametrize("model, match", [
    ({"parametrization": "mup"}, r"\[model\]\.base_width = 0: must be > 0 with parametrization = \"mup\""),
    ({"parametrization": "mup", "base_width": 32, "arch": ["gpt", "lstm"]},
     r"\[model\]\.arch\[1\] = 'lstm': parametrization = \"mup\" is defined for gpt, llama only"),
    ({"parametrization": "mu-p"}, r"\[model\]\.parametrization = 'mu-p': must be one of sp, mup"),
    ({"base_width": 32}, r"\[model\]\.base_width = 32: only used with parametrization = \"mup\""),
    ({"arch": "llama", "head_dim": 15}, r"\[model\]\.head_dim = 15: must be even for llama"),
])
def test_model_config_errors(tmp_path: Path, text_corpus: Path, model: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_sweep(write_sweep(tmp_path / "m.toml", tiny_sweep("m", text_corpus, model=model)))


def test_mup_rules_per_parameter() -> None:
    sp = ModelShape(arch="gpt", n_layer=2, d_model=128, n_head=8, seq_len=8, vocab_size=40)
    wide = dataclasses.replace(sp, parametrization="mup", base_width=32)
    torch.manual_seed(0)
    sp_model = build_model(sp)
    torch.manual_seed(0)
    mup_model = build_model(wide)
    assert mup.width_mult(wide) == 4.0 and mup_model.output_mult == 0.25 and sp_model.output_mult == 1.0
    assert mup_model.blocks[0].attn.scale == 8.0 / 16 and sp_model.blocks[0].attn.scale is None
    # same draws: embeddings and norms as SP, hidden matrices / sqrt(m), queries zero
    sp_p, mup_p = dict(sp_model.named_parameters()), dict(mup_model.named_parameters())
    assert torch.equal(sp_p["wte.weight"], mup_p["wte.weight"])
    torch.testing.assert_close(mup_p["blocks.0.mlp.c_fc.weight"], sp_p["blocks.0.mlp.c_fc.weight"] / 2)
    assert not mup_p["blocks.1.attn.c_attn.weight"][:128].any()
    torch.testing.assert_close(mup_p["blocks.1.attn.c_attn.weight"][128:], sp_p["blocks.1.attn.c_attn.weight"][128:] / 2)
    groups = mup.param_groups(mup_model, wide, weight_decay=0.1)
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert by_id[id(mup_p["blocks.0.attn.c_proj.weight"])]["lr_scale"] == 0.25
    assert by_id[id(mup_p["blocks.0.attn.c_proj.weight"])]["weight_decay"] == pytest.approx(0.4)  # lr * wd kept
    # the tied embedding/readout: a base-tuned 8x at every width (tests/test_mup_balance.py has why)
    assert by_id[id(mup_p["wte.weight"])]["lr_scale"] == mup.TIED_EMBEDDING_LR_MULT == 8.0
    assert by_id[id(mup_p["wpe.weight"])]["lr_scale"] == 1.0 and by_id[id(mup_p["ln_f.weight"])]["weight_decay"] == 0
    assert sum(len(g["params"]) for g in groups) == len(mup_p)
    untied = build_model(dataclasses.replace(wide, tie_embeddings=False))
    assert not untied.lm_head.weight.any()  # muP's zero readout
    with pytest.raises(ValueError, match="'mup' is defined for gpt, llama, not 'gru'"):
        build_model(dataclasses.replace(wide, arch="gru"))
    assert MUP_ARCHS == ("gpt", "llama")


def test_sp_optimizer_and_steps_are_the_ones_train_always_built() -> None:
    # The optimizer scaling.train built before muP existed; SP training must stay bitwise the same.
    shape = ModelShape(arch="gpt", n_layer=2, d_model=32, n_head=2, seq_len=16, vocab_size=50)
    x = torch.randint(0, 50, (4, 17), generator=torch.Generator().manual_seed(0))
    losses = []
    for legacy in (True, False):
        torch.manual_seed(0)
        model = build_model(shape)
        if legacy:
            groups = [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.1},
                      {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]
        else:
            groups = mup.param_groups(model, shape, 0.1)
        opt = torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.95), fused=True)
        run = []
        for _ in range(3):
            for g in opt.param_groups:
                g["lr"] = 1e-2 * g.get("lr_scale", 1.0)
            loss = F.cross_entropy(model(x[:, :-1]).reshape(-1, 50), x[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses.append(run)
    assert losses[0] == losses[1]


def coordinate_scale(arch: str, parametrization: str, d_model: int, steps: int = 3, lr: float = 1e-2) -> float:
    """Mean |x| of the last block's output (the residual stream) after `steps` AdamW steps at `lr`."""
    shape = ModelShape(arch=arch, n_layer=2, d_model=d_model, n_head=d_model // 8, seq_len=16, vocab_size=256,
                       parametrization=parametrization, base_width=16 if parametrization == "mup" else 0)
    torch.manual_seed(0)
    model = build_model(shape)
    opt = torch.optim.AdamW(mup.param_groups(model, shape, 0.0), lr=lr, betas=(0.9, 0.95))
    for g in opt.param_groups:
        g["lr"] = lr * g["lr_scale"]
    batches = torch.randint(0, 256, (steps + 1, 8, 17), generator=torch.Generator().manual_seed(1))  # (S, B, T+1)
    seen: list[float] = []
    model.blocks[-1].register_forward_hook(lambda _m, _i, out: seen.append(out.abs().mean().item()))
    for step in range(steps + 1):
        logits = model(batches[step, :, :-1])
        if step == steps:
            break
        loss = F.cross_entropy(logits.reshape(-1, 256), batches[step, :, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return seen[-1]


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_coordinate_check(arch: str) -> None:
    # Yang et al. 2022, fig. 5: after a few Adam steps at one LR, SP's activations grow with width (each
    # hidden matrix's update moves its output by ~ lr * fan_in), muP's stay put. Widths 16 .. 128 (m = 1 .. 8).
    widths = (16, 32, 64, 128)
    sp = [coordinate_scale(arch, "sp", d) for d in widths]
    mu = [coordinate_scale(arch, "mup", d) for d in widths]
    assert sp[-1] / sp[0] > 8 and all(b > a for a, b in zip(sp, sp[1:])), sp  # measured: x25 (gpt), x15 (llama)
    assert max(mu) / min(mu) < 1.5, mu  # measured: within x1.2
