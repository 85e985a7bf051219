"""scaling.analysis.lr_law: LR and batch-size laws fitted from a sweep (issue 28, item 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaling.analysis import lr_law

from conftest import small_grid_sweep

A, B, C = 2.0, -0.5, 0.2


def true_lr(n, d):
    return A * n ** B * d ** C


def sweep_rows(mults=(0.25, 0.5, 1, 2, 4), noise=0.0, seed=0, lr_of=true_lr, shift=1.0):
    rng = np.random.default_rng(seed)
    rows = []
    for n in (1e5, 3e5, 1e6, 3e6):
        for d in (1e7, 3e7, 1e8):
            centre = lr_of(n, d) * shift
            for m in mults:
                lr = centre * m
                loss = 3.0 - 0.1 * math.log(n) + 0.05 * math.log(lr / lr_of(n, d)) ** 2 + noise * rng.normal()
                rows.append((n, d, lr, loss))
    return rows


def test_recovers_a_known_law_with_intervals_that_cover_it():
    points = lr_law.optima(sweep_rows(noise=0.002))
    law = lr_law.fit_law(points, n_boot=300)
    assert law.b == pytest.approx(B, abs=0.05) and law.c == pytest.approx(C, abs=0.05)
    assert law.b_ci[0] <= B <= law.b_ci[1] and law.c_ci[0] <= C <= law.c_ci[1]
    assert law.predict(1e6, 1e8) == pytest.approx(true_lr(1e6, 1e8), rel=0.15)
    line = lr_law.report(points, n_boot=100)[0]
    assert line.startswith("LR law: lr* = ") and ", b = " in line and ", c = " in line


def test_wrong_law_is_rejected_by_the_intervals():
    """A law with b = 0 (the LR not moving with N) gives intervals that exclude the true -0.5."""
    points = lr_law.optima(sweep_rows(noise=0.002, lr_of=lambda n, d: 0.01 * d ** C))
    law = lr_law.fit_law(points, n_boot=300)
    assert not (law.b_ci[0] <= B <= law.b_ci[1])


def test_edge_optimum_is_flagged_not_extrapolated():
    rows = sweep_rows(shift=8.0)  # every sweep centred 8x above the optimum: the best LR is the smallest swept
    points = lr_law.optima(rows)
    assert all(p.edge and math.isnan(p.value) for p in points)
    with pytest.raises(lr_law.LawInputError, match="at its edge"):
        lr_law.fit_law(points)
    mixed = lr_law.optima(sweep_rows()[:30] + [(n, d * 7, lr, l) for n, d, lr, l in sweep_rows(shift=8.0)[:15]])
    lines = lr_law.report(mixed, n_boot=50)
    assert any("edge of the swept range" in line for line in lines)


def test_loss_lost_at_the_planned_lr():
    points = lr_law.optima(sweep_rows(shift=2.0))  # the planned (middle) LR of each sweep is 2x its optimum
    lost = lr_law.loss_lost(points)
    assert len(lost) == len(points)
    for p, planned, v in lost:
        assert planned == pytest.approx(2 * true_lr(p.n, p.d))
        assert v == pytest.approx(0.05 * math.log(2) ** 2, rel=1e-6)
    centred = lr_law.loss_lost(lr_law.optima(sweep_rows()))
    assert max(v for _, _, v in centred) < 1e-9


def test_compute_only_form():
    law = lr_law.fit_compute_law(lr_law.optima(sweep_rows(lr_of=lambda n, d: 5 * (6 * n * d) ** -0.125)), n_boot=100)
    assert law.e == pytest.approx(-0.125, abs=0.01)
    assert "C^e" in law.line()


def test_batch_law_and_unidentified_exponent():
    rows = [(n, 1e8, b, 2 + 0.05 * math.log(b / (2 * n ** 0.3)) ** 2)
            for n in (1e5, 1e6, 1e7) for b in (8, 16, 32, 64, 128, 256, 512, 1024)]
    law = lr_law.fit_law(lr_law.optima(rows, key="batch_size"), key="batch_size", n_boot=100)
    assert law.b == pytest.approx(0.3, abs=0.05) and math.isnan(law.c)
    assert law.line().startswith("Batch law: B* = ") and "c = not identified" in law.line()


def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(lr_law.LawInputError, match=r"at least 3 distinct values"):
        lr_law.optima([(1e5, 1e7, 0.01, 3.0), (1e5, 1e7, 0.02, 2.9)], source="x.csv")
    p = tmp_path / "runs.csv"
    p.write_text("params,tokens,lr,loss\n1e5,1e7,0.01,3.0\n1e5,1e7,-0.02,2.9\n")
    with pytest.raises(lr_law.LawInputError, match=r"runs.csv: line 3: lr = -0.02: must be > 0") as e:
        lr_law.read_csv(p)
    assert "\n" not in str(e.value)
    single = [(1e5, 1e7, lr, 3 + (math.log(lr) + 4) ** 2) for lr in (0.005, 0.01, 0.02, 0.04)]
    with pytest.raises(lr_law.LawInputError, match="point"):
        lr_law.fit_law(lr_law.optima(single))
    p.write_text("params,tokens,loss\n1e5,1e7,3.0\n")
    with pytest.raises(lr_law.LawInputError, match="column 'lr': missing"):
        lr_law.read_csv(p)


def test_torch_free():
    import subprocess
    import sys
    code = "import sys, scaling.analysis.lr_law; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_scaling_fit_prints_the_law_for_a_csv_and_refuses_bad_lr(tmp_path, capsys):
    """`scaling fit runs.csv` with params,tokens,lr,loss: the Chinchilla fit, then the LR law line."""
    from scaling.pipeline import fit_source
    from scaling.errors import ConfigError

    p = tmp_path / "runs.csv"
    rows = [(n, d, lr, loss + 0.3 * (1e6 / n) ** 0.3 + 0.2 * (1e8 / d) ** 0.3) for n, d, lr, loss in sweep_rows()]
    p.write_text("params,tokens,lr,loss\n" + "".join(f"{n},{d},{lr},{loss}\n" for n, d, lr, loss in rows))
    fit_source(str(p), out=tmp_path / "fit", n_boot=20)
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("LR law: "))
    assert "b = -0.500" in line and "c = 0.200" in line
    p.write_text("params,tokens,lr,loss\n" + "".join(f"{n},{d},{-lr},{loss}\n" for n, d, lr, loss in rows))
    with pytest.raises(ConfigError, match=r"runs.csv: lr = -[0-9.e-]+: must be > 0"):
        fit_source(str(p), out=tmp_path / "fit2", n_boot=20)


def test_published_laws_beside_the_fit():
    from scaling import hparams

    assert hparams.step_law_lr(1e9, 1e11) == pytest.approx(1.79 * 1e9 ** -0.713 * 1e11 ** 0.307)
    line = lr_law.report(lr_law.optima(sweep_rows()), n_boot=20)[-1]
    assert "Step Law (Li et al. 2025)" in line and "DeepSeek 2024" in line
    expect = hparams.step_law_lr(3e6, 1e8)
    assert f"Step Law (Li et al. 2025) {expect:.3g}" in line


def test_porian_published_laws_equal_the_paper_by_hand():
    """Porian et al. 2024's rounded fits, LR = 0.0047 (N / 108e6)^-1/3 and BS = 160 (N / 108e6)^2/3 sequences of
    2048 tokens: at N = 8 x 108e6 the ratio's cube root is 2, so LR = 0.0047 / 2 and BS = 160 x 4 = 640 sequences."""
    from scaling import hparams

    assert hparams.porian_lr(864e6) == pytest.approx(0.00235, rel=1e-12)
    assert hparams.porian_lr(108e6) == pytest.approx(0.0047, rel=1e-12)
    assert hparams.porian_batch_sequences(864e6) == pytest.approx(640.0, rel=1e-12)
    assert hparams.porian_batch_tokens(864e6) == pytest.approx(640 * 2048, rel=1e-12)
    line = lr_law.report(lr_law.optima(sweep_rows()), n_boot=20)[-1]
    assert f"Porian et al. 2024 {hparams.porian_lr(3e6):.3g}" in line  # at the largest point, N = 3e6
    rows = [(n, d, b, loss) for n, d, b, loss in sweep_rows(lr_of=lambda n, d: 8.0 * d ** 0.1)]
    batch_line = lr_law.report(lr_law.optima(rows, "batch_size"), "batch_size", n_boot=20)[-1]
    assert f"Porian et al. 2024 (tokens) {hparams.porian_batch_tokens(3e6):.3g}" in batch_line


def test_scaling_compare_prints_the_lr_law_beside_the_published_ones(tmp_path, capsys):
    """`scaling compare` on a CSV with several LRs per (N, D) point: the fitted LR law, then one line with the
    fitted value beside Step Law's, DeepSeek's and Porian et al.'s at the largest point."""
    import numpy as np

    from scaling import hparams
    from scaling.pipeline import compare_sources

    p = tmp_path / "lrs.csv"
    rows = [(n, d, lr, loss + 0.3 * (1e6 / n) ** 0.3 + 0.2 * (1e8 / d) ** 0.3) for n, d, lr, loss in sweep_rows()]
    p.write_text("params,tokens,lr,loss\n" + "".join(f"{n},{d},{lr},{loss}\n" for n, d, lr, loss in rows))
    compare_sources([str(p)], np.logspace(15, 17, 3), n_boot=10)
    out = capsys.readouterr().out
    assert "lrs: hyperparameter laws beside the published ones" in out
    assert any(x.startswith("LR law: lr* = ") for x in out.splitlines())
    line = next(x for x in out.splitlines() if x.startswith("  at N = "))
    for name, value in (("Step Law (Li et al. 2025)", hparams.step_law_lr(3e6, 1e8)),
                        ("DeepSeek 2024", hparams.deepseek_lr(6 * 3e6 * 1e8)),
                        ("Porian et al. 2024", hparams.porian_lr(3e6))):
        assert f"{name} {value:.3g}" in line


def test_lr_rule_fitted_plans_each_run_from_the_law(tmp_path):
    """[train] lr_rule = "fitted" with [train.lr_law] constants: lr = a * N^b * D^c per run (x its lr_sweep)."""
    from scaling import hparams
    from scaling.config import load_sweep
    from scaling.errors import ConfigError
    from scaling.plan import plan_sweep

    plan = plan_sweep(load_sweep(small_grid_sweep(tmp_path, 'lr_rule = "fitted"\n[train.lr_law]\na = 2.0\nb = -0.5\nc = 0.2')))
    for r in plan.runs:
        assert r.lr == pytest.approx(hparams.fitted_lr(2.0, -0.5, 0.2, r.n_params_non_embedding, r.n_tokens_target))
    assert len({round(r.lr, 12) for r in plan.runs}) == 4  # the LR moves with N and with D
    with pytest.raises(ConfigError, match=r"s.toml: \[train.lr_law\].a = 0.0: must be > 0"):
        load_sweep(small_grid_sweep(tmp_path, 'lr_rule = "fitted"'))


def test_scaling_plan_says_where_each_lr_came_from(tmp_path, capsys):
    from scaling.cli import print_plan
    from scaling.config import load_sweep
    from scaling.plan import plan_sweep

    p = small_grid_sweep(tmp_path, 'lr_rule = "fitted"\nlr_sweep = [0.5, 1, 2]\n[train.lr_law]\na = 2.0\nb = -0.5\nc = 0.2')
    print_plan(plan_sweep(load_sweep(p)))
    out = capsys.readouterr().out
    assert "LR per run: the fitted law [train.lr_law], lr = 2 * N^-0.500 * D^0.200" in out
    assert "times each of lr_sweep = [0.5, 1.0, 2.0]" in out
