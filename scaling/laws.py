"""Published scaling laws as data: their constants, labels and citations (the laws `scaling compare` shows).

Values are copied from the papers, cited where defined. `PUBLISHED_LAWS` names every law a sweep may take as
its IsoFLOP prior ([grid.prior].law; the config checks names against it) and says how to build it;
scaling.compare.published_laws() turns it into law objects with compute_optimal(C), beside fitted laws.
Kaplan et al. 2020's law is a class here; the Chinchilla fits are ChinchillaLaw parameters
(scaling.analysis) and Approach 1's projection a power law N_opt = k_n C^a, D_opt = k_d C^b.

The data-constrained law of Muennighoff et al. 2023 needs more than (N, D):

Muennighoff, Rush, Barak, Le Scao, Piktus, Tazi, Pyysalo, Wolf, Raffel 2023, "Scaling Data-Constrained
Language Models", arXiv 2305.16264, sec. 3. Chinchilla's
L(N, D) = E + A / N^alpha + B / D^beta assumes every token is new. With U_D unique tokens seen
1 + R_D times, the law replaces D by an effective data term D' in which repeated tokens are worth less
and less, decaying with the constant R*_D:

    D' = U_D + U_D R*_D (1 - exp(-R_D / R*_D)),    R_D = D / U_D - 1 (>= 0)

and, since a model too large for its unique data gains less from its extra parameters, N by

    N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N)),    U_N = min(N, N_opt(U_D)),  R_N = N / U_N - 1 (>= 0)

where N_opt(U_D) is the compute-optimal size for U_D tokens under the law itself (Chinchilla's
N_opt = G (C/6)^a, D_opt = (C/6)^b / G with G = (alpha A / (beta B))^(1/(alpha+beta)), eliminated:
N_opt(D) = G (G D)^(beta/alpha)). Then L(N, D, U_D) = E + A / N'^alpha + B / D'^beta. With unlimited
unique data (R_D = R_N = 0) it is Chinchilla's law with the same constants.

The constants and the code this module follows are those released in the README of
github.com/huggingface/datablations (commit 0c76502267929830725f1de47a1b7b02bec78af4, Apache 2.0;
fitted on C4 with the GPT-2 tokenizer, loss in nats/token). Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scaling.errors import FitError


PF_DAY_FLOPS = 1e15 * 24 * 3600
"""One petaflop/s-day, Kaplan et al. 2020's compute unit: 8.64e19 FLOPs."""


@dataclass(frozen=True)
class KaplanLaw:
    """Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv 2001.08361.

    Loss: eq. 1.5, L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D with N the
    non-embedding parameters and D tokens (Table 2 / sec. 1.2: alpha_N 0.076, alpha_D 0.095,
    N_c 8.8e13, D_c 5.4e13); loss in nats/token of their WebText2 BPE, so its level is not
    comparable to other corpora, only its shape.

    Compute-efficient frontier: sec. 6.1 / fig. 14, N_opt = 1.3e9 (C_min / PF-day)^0.73, and with
    C = 6 N D (their C ~ 6 N B S, non-embedding) D_opt = C / (6 N_opt) ~ C^0.27.
    Approximation: we feed total parameters where Kaplan means non-embedding parameters; the
    difference is the embedding matrix, small at the billions of parameters where the frontier is
    compared (and the source of bias at small scale, Pearce & Song 2024).
    """

    alpha_n: float = 0.076
    alpha_d: float = 0.095
    n_c: float = 8.8e13
    d_c: float = 5.4e13
    n_opt_coefficient: float = 1.3e9
    """N_opt at C_min = 1 PF-day."""
    a: float = 0.73
    """N_opt ~ C^a."""

    @property
    def b(self) -> float:
        """D_opt ~ C^(1 - a) follows from C = 6 N D."""
        return 1.0 - self.a

    def predict(self, N: float | np.ndarray, D: float | np.ndarray) -> np.ndarray:
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return ((self.n_c / N) ** (self.alpha_n / self.alpha_d) + self.d_c / D) ** self.alpha_d

    def compute_optimal(self, C: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        C = np.asarray(C, dtype=float)
        n_opt = self.n_opt_coefficient * (C / PF_DAY_FLOPS) ** self.a
        return n_opt, C / (6.0 * n_opt)


# Hoffmann et al. 2022, App. D.2 (eq. 10), as printed.
CHINCHILLA_PRINTED = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
# The same fit, unrounded, from the paper's TeX source (Besiroglu et al. 2024).
CHINCHILLA_TEX = {"E": 1.6934, "A": 406.4, "B": 410.7, "alpha": 0.3392, "beta": 0.2849}
# Besiroglu, Erdil, Barnett, You 2024, arXiv 2404.10102: refit of the extracted fig. 4 data.
BESIROGLU_2024 = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}

# Hoffmann et al. 2022, Table 3 (Approach 1 projections): 10B parameters, 1.23e22 FLOPs,
# 205.1B tokens, with Table 2's Approach 1 exponents a = b = 0.50. ~20 tokens/parameter.
_T3_N, _T3_D = 10e9, 205.1e9
_T3_C = 6.0 * _T3_N * _T3_D
CHINCHILLA_APPROACH1_PARAMS = {"k_n": _T3_N / math.sqrt(_T3_C), "a": 0.5, "k_d": _T3_D / math.sqrt(_T3_C), "b": 0.5}
"""N_opt = k_n C^a, D_opt = k_d C^b through Table 3's point (scaling.compare.CHINCHILLA_APPROACH1)."""

PUBLISHED_LAWS: dict[str, tuple[str, dict[str, float]]] = {
    "Kaplan 2020": ("kaplan", {}),
    "Chinchilla 2022 (Approach 1, Table 3)": ("power_law", CHINCHILLA_APPROACH1_PARAMS),
    "Chinchilla 2022 (Approach 3, printed)": ("chinchilla", CHINCHILLA_PRINTED),
    "Chinchilla 2022 (Approach 3, TeX)": ("chinchilla", CHINCHILLA_TEX),
    "Besiroglu 2024": ("chinchilla", BESIROGLU_2024),
}
"""label -> (kind, parameters) of each published law: "kaplan" (KaplanLaw), "power_law" (Approach 1/2's
PowerLawFit) or "chinchilla" (ChinchillaLaw.from_params). Labels name laws in tables, plots and [grid.prior].law."""


@dataclass(frozen=True)
class DataConstrainedLaw:
    """Muennighoff et al. 2023's data-constrained law L(N, D, U); defaults are their released C4 fit.

    A, B and E are stored as their logs, as released (datablations README: `a, b, e, alpha, beta,
    rd_star, rn_star = [6.255414, 7.3049974, 0.6254804, 0.3526596, 0.3526596, 15.387756, 5.309743]`).
    """

    log_a: float = 6.255414
    """log A, the parameter term's coefficient."""
    log_b: float = 7.3049974
    """log B, the data term's coefficient."""
    log_e: float = 0.6254804
    """log E, the irreducible loss."""
    alpha: float = 0.3526596
    """Exponent of the (effective) parameters."""
    beta: float = 0.3526596
    """Exponent of the (effective) tokens; the paper fits alpha = beta."""
    rd_star: float = 15.387756
    """R*_D: decay constant of the value of repeated tokens (in repetitions: D' saturates at U (1 + R*_D))."""
    rn_star: float = 5.309743
    """R*_N: decay constant of the value of parameters beyond the optimum for the unique tokens."""

    @property
    def A(self) -> float:
        return math.exp(self.log_a)

    @property
    def B(self) -> float:
        return math.exp(self.log_b)

    @property
    def E(self) -> float:
        return math.exp(self.log_e)

    @property
    def G(self) -> float:
        """G = (alpha A / (beta B))^(1/(alpha+beta)): N_opt = G (C/6)^a, D_opt = (C/6)^b / G."""
        return ((self.alpha * self.A) / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def compute_optimal(self, C: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) for C = 6 N D FLOPs with unlimited unique data (Chinchilla's allocation)."""
        C = np.asarray(C, dtype=float)
        a = self.beta / (self.alpha + self.beta)
        return self.G * (C / 6.0) ** a, (C / 6.0) ** (1.0 - a) / self.G

    def params_for_tokens(self, D: float | np.ndarray) -> np.ndarray:
        """The compute-optimal N for D tokens: N_opt(D) = G (G D)^(beta/alpha) (datablations `D_to_N`)."""
        return (np.asarray(D, dtype=float) * self.G) ** (self.beta / self.alpha) * self.G

    def effective_tokens(self, D: float | np.ndarray, U: float | np.ndarray) -> np.ndarray:
        """D' = U + U R*_D (1 - exp(-R_D / R*_D)) with R_D = max(D / U - 1, 0) repetitions."""
        D, U = _checked(D, U)
        R_D = np.maximum(D / U - 1.0, 0.0)
        return U + U * self.rd_star * (1.0 - np.exp(-R_D / self.rd_star))

    def effective_params(self, N: float | np.ndarray, U: float | np.ndarray) -> np.ndarray:
        """N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N)), U_N = min(N, N_opt(U)), R_N = max(N / U_N - 1, 0)."""
        N, U = np.asarray(N, dtype=float), np.asarray(U, dtype=float)
        U_N = np.minimum(N, self.params_for_tokens(U))
        R_N = np.maximum(N / U_N - 1.0, 0.0)
        return U_N + U_N * self.rn_star * (1.0 - np.exp(-R_N / self.rn_star))

    def predict(self, N: float | np.ndarray, D: float | np.ndarray, U: float | np.ndarray) -> np.ndarray:
        """L(N, D, U) = E + A / N'^alpha + B / D'^beta for N parameters, D tokens of which U unique."""
        D_eff = self.effective_tokens(D, U)
        N_eff = self.effective_params(N, U)
        return self.E + self.A / N_eff ** self.alpha + self.B / D_eff ** self.beta

    def optimal_allocation(self, n_base: float, d_base: float, unique: float, n_grid: int = 500,
                           max_factor: float = 3.0) -> tuple[float, float, float]:
        """(loss, D, N): the best of N/i, D*i and N*i, D/i for i in linspace(1.0001, max_factor, n_grid).

        The datablations README's grid search at fixed 6ND (no closed form is known); U is capped at
        D as there. It never returns the base point itself (i > 1), as in the original.
        """
        best = (math.inf, math.nan, math.nan)
        for i in np.linspace(1.0001, max_factor, n_grid):
            for D, N in ((d_base * i, n_base / i), (d_base / i, n_base * i)):
                loss = float(self.predict(N, D, min(unique, D)))
                if loss < best[0]:
                    best = (loss, float(D), float(N))
        return best

    def optimal_allocation_for_compute(self, C: float, unique: float, **grid: float) -> tuple[float, float, float]:
        """(loss, D, N) for C FLOPs and `unique` tokens: the grid search around Chinchilla's allocation.

        As in the datablations README from commit 274d493da454fb01c5d4b17c1d7e28f162f4c853 on.
        """
        n_opt, d_opt = self.compute_optimal(C)
        return self.optimal_allocation(float(n_opt), float(d_opt), unique, **grid)


def _checked(D: float | np.ndarray, U: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """D and U as arrays; a FitError naming the first impossible value (as the original's assert U <= D)."""
    D, U = np.broadcast_arrays(np.asarray(D, dtype=float), np.asarray(U, dtype=float))
    bad = ~(np.isfinite(U) & (U > 0))
    if bad.any():
        raise FitError(f"unique tokens U = {U[bad].flat[0]:.4g}: must be finite and > 0")
    bad = U > D  # more unique tokens than tokens seen is no data budget
    if bad.any():
        raise FitError(f"unique tokens U = {U[bad].flat[0]:.4g} > tokens D = {D[bad].flat[0]:.4g}: U must be <= D")
    return D, U
