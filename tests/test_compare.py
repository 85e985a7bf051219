"""Tests for scaling.compare: published laws as data and side-by-side tables."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from scaling.compare import (
    BESIROGLU_2024,
    CHINCHILLA_APPROACH1,
    PF_DAY_FLOPS,
    KaplanLaw,
    compare_table,
    published_laws,
)
from scaling.errors import FitError
from scaling.analysis import ChinchillaLaw

BUDGETS = np.logspace(21, 24, 4)


def tokens_per_param(law: object, budgets: np.ndarray = BUDGETS) -> np.ndarray:
    n_opt, d_opt = law.compute_optimal(budgets)
    return np.asarray(d_opt) / np.asarray(n_opt)


def test_chinchilla_frontiers_near_20_tokens_per_param() -> None:
    # Hoffmann et al. 2022 Table 3 (Approach 1): ~20 tokens per parameter at every scale.
    ratio = tokens_per_param(CHINCHILLA_APPROACH1)
    assert np.all((ratio > 10) & (ratio < 40))
    n_opt, d_opt = CHINCHILLA_APPROACH1.compute_optimal(5.76e23)  # Table 3: 67B, 1.5T tokens
    assert n_opt == pytest.approx(67e9, rel=0.1) and d_opt == pytest.approx(1.5e12, rel=0.1)
    # Besiroglu et al. 2024's corrected Approach 3 law agrees with ~20 tokens per parameter ...
    besiroglu = ChinchillaLaw.from_params(**BESIROGLU_2024)
    assert np.all((tokens_per_param(besiroglu) > 10) & (tokens_per_param(besiroglu) < 40))
    # ... while Hoffmann's printed Approach 3 parameters imply far more (Besiroglu et al.'s point).
    printed = published_laws()["Chinchilla 2022 (Approach 3, printed)"]
    assert np.all(tokens_per_param(printed) > 40)


def test_kaplan_gives_far_fewer_tokens_per_param_at_large_compute() -> None:
    kaplan = KaplanLaw()
    chin = tokens_per_param(CHINCHILLA_APPROACH1)
    kap = tokens_per_param(kaplan)
    assert np.all(kap < chin / 5)
    assert kap[-1] < kap[0]  # N grows as C^0.73, D only as C^0.27
    # Units: 1 PF-day of compute gives N_opt = 1.3e9 (Kaplan fig. 14).
    n_opt, d_opt = kaplan.compute_optimal(PF_DAY_FLOPS)
    assert n_opt == pytest.approx(1.3e9)
    assert 6 * n_opt * d_opt == pytest.approx(PF_DAY_FLOPS)
    # eq. 1.5 reduces to L(N) = (N_c / N)^alpha_N when D is infinite.
    assert kaplan.predict(1e9, np.inf) == pytest.approx((8.8e13 / 1e9) ** 0.076)


def test_compare_table_side_by_side_with_intervals() -> None:
    rng = np.random.default_rng(0)
    truth = ChinchillaLaw.from_params(**BESIROGLU_2024)
    N, D = (x.ravel() for x in np.meshgrid(np.logspace(7.5, 10, 6), np.logspace(9, 11.5, 6)))
    L = truth.predict(N, D) * np.exp(0.01 * rng.standard_normal(N.shape))
    fitted = ChinchillaLaw().bootstrap(N, D, L, n_boot=30, seed=0)
    laws = {**published_laws(), "ours": fitted}
    table = compare_table(laws)
    assert len(table) == 11 and table["flops"].iloc[0] == 1e15 and table["flops"].iloc[-1] == 1e25
    for label in laws:
        assert f"{label}/tokens_per_param" in table.columns
    assert "ours/n_opt_lo" in table.columns and "Kaplan 2020/n_opt_lo" not in table.columns
    assert (table["ours/n_opt_lo"] <= table["ours/n_opt"]).all()
    assert (table["ours/n_opt"] <= table["ours/n_opt_hi"]).all()
    np.testing.assert_allclose(table["Kaplan 2020/tokens_per_param"],
                               table["Kaplan 2020/d_opt"] / table["Kaplan 2020/n_opt"])


def test_compare_table_rejects_objects_without_a_law() -> None:
    with pytest.raises(FitError, match="compute_optimal"):
        compare_table({"bad": pd.DataFrame()})


def test_an_unidentified_law_gives_0_and_inf_without_numpy_warnings() -> None:
    # A fit whose A underflowed to 0 (alpha at its bound): N_opt 0, D_opt inf, and no RuntimeWarning noise
    law = ChinchillaLaw.from_params(E=1.0, A=0.0, B=100.0, alpha=20.0, beta=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = compare_table({"unidentified": law}, [1e15, 1e16])
    assert (table["unidentified/n_opt"] == 0).all() and np.isinf(table["unidentified/d_opt"]).all()


def test_the_published_laws_have_one_home() -> None:
    """scaling.laws holds the data and the labels [grid.prior].law is checked against; compare builds from it."""
    from scaling.laws import PUBLISHED_LAWS

    laws = published_laws()
    assert list(laws) == list(PUBLISHED_LAWS)
    assert laws["Besiroglu 2024"].params_.to_dict() == pytest.approx(BESIROGLU_2024)
    assert laws["Chinchilla 2022 (Approach 1, Table 3)"] == CHINCHILLA_APPROACH1
    assert isinstance(laws["Kaplan 2020"], KaplanLaw)
