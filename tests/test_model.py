import pytest
import torch

from scaling.accounting import ModelShape, n_params
from scaling.model import build_model

SHAPES = [
    ModelShape(arch="gpt", n_layer=1, d_model=32, n_head=2, seq_len=32, vocab_size=256),
    ModelShape(arch="gpt", n_layer=3, d_model=96, n_head=3, seq_len=128, vocab_size=256),
    ModelShape(arch="gpt", n_layer=2, d_model=64, n_head=4, seq_len=64, vocab_size=1000, mlp_ratio=2),
    ModelShape(arch="lstm", n_layer=1, d_model=32, n_head=1, seq_len=32, vocab_size=256),
    ModelShape(arch="lstm", n_layer=3, d_model=48, n_head=1, seq_len=64, vocab_size=500),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s.arch}-L{s.n_layer}-d{s.d_model}-V{s.vocab_size}")
def test_param_counts_match_accounting(shape: ModelShape) -> None:
    model = build_model(shape)
    total = sum(p.numel() for p in model.parameters())
    embedding = sum(p.numel() for name, p in model.named_parameters() if name.split(".")[0] in ("wte", "wpe"))
    assert total == n_params(shape)
    assert total - embedding == n_params(shape, non_embedding=True)


@pytest.mark.parametrize("arch", ["gpt", "lstm"])
def test_forward_shape_and_causality(arch: str) -> None:
    torch.manual_seed(0)
    shape = ModelShape(arch=arch, n_layer=2, d_model=32, n_head=2, seq_len=16, vocab_size=50)
    model = build_model(shape).eval()
    idx = torch.randint(0, 50, (3, 16))
    logits = model(idx)
    assert logits.shape == (3, 16, 50)
    t = 7
    changed = idx.clone()
    changed[:, t + 1:] = torch.randint(0, 50, (3, 16 - t - 1))
    out = model(changed)
    # Outputs up to t depend only on inputs up to t; later outputs do see the change.
    torch.testing.assert_close(out[:, : t + 1], logits[:, : t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(out[:, t + 1:], logits[:, t + 1:])


def test_output_head_is_tied_to_token_embedding() -> None:
    shape = ModelShape(arch="gpt", n_layer=1, d_model=32, n_head=2, seq_len=8, vocab_size=40)
    model = build_model(shape)
    with torch.no_grad():
        model.wte.weight.zero_()
    assert torch.count_nonzero(model(torch.zeros(1, 8, dtype=torch.long))) == 0


def test_residual_projections_are_scaled_down() -> None:
    torch.manual_seed(0)
    shape = ModelShape(arch="gpt", n_layer=8, d_model=128, n_head=4, seq_len=8, vocab_size=40)
    model = build_model(shape)
    assert model.blocks[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.blocks[0].mlp.c_proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)


def test_unknown_arch_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown arch 'rnn'"):
        build_model(ModelShape(arch="rnn", n_layer=1, d_model=8, n_head=1, seq_len=8, vocab_size=10))
