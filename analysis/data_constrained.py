"""Reproduce the check values of Muennighoff et al. 2023's data-constrained scaling law.

The law and its released constants (C4, GPT-2 tokenizer) are `scaling.laws.DataConstrainedLaw`; the
values below are those printed in the README of github.com/huggingface/datablations (Apache 2.0): the
two models of the paper's figure 1 (right) at commit 0c76502267929830725f1de47a1b7b02bec78af4, and the
allocation for 1e22 FLOPs added at commit 274d493da454fb01c5d4b17c1d7e28f162f4c853 (the law's code
is the same in both). No data file is needed: the law is its seven constants.

    python analysis/data_constrained.py

tests/test_analysis.py checks `check_values` against PUBLISHED.
"""

from __future__ import annotations

from scaling.laws import DataConstrainedLaw

UNIQUE = 25e9
"""The unique-token budget of the paper's figure 1 (right): 25B tokens of C4."""

# datablations README, as printed (losses in nats/token; the allocations rounded there as quoted).
PUBLISHED = {
    "rd_star": 15.387756,
    "rn_star": 5.309743,
    "loss(6.34e9, 242e9, 25e9)": 2.2256440889984477,
    "loss(8.67e9, 178e9, 25e9)": 2.2269634075087867,
    # "-> 227B tokens, 9.1 epochs, 6.8B parameters"
    "optimal from (8.67e9, 178e9, 25e9): tokens": 227e9,
    "optimal from (8.67e9, 178e9, 25e9): params": 6.8e9,
    # "-> 237336955477.55075 tokens, 9.49347821910203 epochs, 7022364735.879969 parameters"
    "optimal for 1e22 FLOPs, 25e9 unique: tokens": 237336955477.55075,
    "optimal for 1e22 FLOPs, 25e9 unique: params": 7022364735.879969,
}


def check_values(law: DataConstrainedLaw = DataConstrainedLaw()) -> dict[str, float]:
    """The quantities the datablations README prints, computed from `law`, keyed as in PUBLISHED."""
    _, d_fig, n_fig = law.optimal_allocation(8.67e9, 178e9, UNIQUE)
    _, d_c, n_c = law.optimal_allocation_for_compute(1e22, UNIQUE)
    return {
        "rd_star": law.rd_star,
        "rn_star": law.rn_star,
        "loss(6.34e9, 242e9, 25e9)": float(law.predict(6.34e9, 242e9, UNIQUE)),
        "loss(8.67e9, 178e9, 25e9)": float(law.predict(8.67e9, 178e9, UNIQUE)),
        "optimal from (8.67e9, 178e9, 25e9): tokens": d_fig,
        "optimal from (8.67e9, 178e9, 25e9): params": n_fig,
        "optimal for 1e22 FLOPs, 25e9 unique: tokens": d_c,
        "optimal for 1e22 FLOPs, 25e9 unique: params": n_c,
    }


def main() -> None:
    law = DataConstrainedLaw()
    print(f"Muennighoff et al. 2023 data-constrained law: A {law.A:.6g}, B {law.B:.6g}, E {law.E:.6g}, "
          f"alpha = beta {law.alpha:.7g}, R*_D {law.rd_star:.2f}, R*_N {law.rn_star:.2f}")
    ours = check_values(law)
    width = max(map(len, ours))
    print(f"\n{'':<{width}} {'this code':>22} {'published':>22}")
    for key, value in ours.items():
        print(f"{key:<{width}} {value:>22.16g} {PUBLISHED[key]:>22.16g}")
    _, d, n = law.optimal_allocation(8.67e9, 178e9, UNIQUE)
    print(f"\nfigure 1 (right): 6ND = {6 * 8.67e9 * 178e9:.3g} FLOPs, best {d / 1e9:.0f}B tokens "
          f"({d / UNIQUE:.1f} epochs of {UNIQUE / 1e9:.0f}B) and {n / 1e9:.1f}B parameters, from the "
          f"Chinchilla-optimal 178B tokens and 8.67B parameters the paper starts from")


if __name__ == "__main__":
    main()
