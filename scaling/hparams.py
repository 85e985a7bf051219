"""Per-size hyperparameter rules: peak LR, batch size and warmup as functions of N or C. Pure and torch-free.

Untuned LR per size biases fitted exponents (Porian et al. 2024, see notes/pitfalls.md); these rules give
a published starting point, and `[train].lr_sweep` adds multipliers around it so fits can keep the best.
"""

from __future__ import annotations

import math

# Kaplan et al. 2020, "Scaling Laws for Neural Language Models", eq. D.1:
#   LR(N) ~= 0.003239 - 0.0001395 log(N), N = non-embedding parameters (natural log).
KAPLAN_LR_A, KAPLAN_LR_B = 0.003239, 0.0001395
# DeepSeek LLM 2024 (arXiv:2401.02954), eq. 1, fitted on compute C in FLOPs:
#   eta_opt = 0.3118 * C^-0.1250,   B_opt = 0.2920 * C^0.3271 (tokens per step).
DEEPSEEK_LR_K, DEEPSEEK_LR_EXP = 0.3118, -0.1250
DEEPSEEK_BATCH_K, DEEPSEEK_BATCH_EXP = 0.2920, 0.3271
# Step Law (Li et al. 2025, "Predictable Scale: Part I", arXiv:2503.04715), fitted over 3,700 runs:
#   eta_opt(N, D) = 1.79 * N^-0.713 * D^0.307 (N non-embedding parameters, D tokens), B_opt(D) = 0.58 * D^0.571 tokens.
STEP_LAW_LR_K, STEP_LAW_LR_N_EXP, STEP_LAW_LR_D_EXP = 1.79, -0.713, 0.307
STEP_LAW_BATCH_K, STEP_LAW_BATCH_D_EXP = 0.58, 0.571
# Porian et al. 2024 ("Resolving Discrepancies in Compute-Optimal Scaling of Language Models", arXiv:2406.19146),
# the rounded fits of their hyperparameter sweep, verbatim from the authors' code (github.com/formll/
# resolving-scaling-law-discrepancies, plotting.py, plot_sweep_key, commit 0dc60d9): "Rounded fit: LR = 0.0047
# (N / 108e6)^-1/3" and "Rounded fit: BS = 160 (N / 108e6)^2/3", BS in sequences of 2048 tokens (the same function
# divides DeepSeek's batch in tokens by 2048 "to get BS in sequences instead of in tokens").
PORIAN_N_REF = 108e6
PORIAN_LR_K, PORIAN_LR_EXP = 0.0047, -1 / 3
PORIAN_BATCH_SEQS, PORIAN_BATCH_EXP, PORIAN_SEQ_LEN = 160.0, 2 / 3, 2048
# Kaplan et al. 2020, sec. 2.2 / 3: every run used "a 3000 step linear warmup" (at 2^19 tokens per step).
KAPLAN_WARMUP_STEPS = 3000
KAPLAN_MIN_LR = 1e-5
"""Eq. D.1 turns negative above N ~ 1e10; the rule never returns less than this."""


def kaplan_lr(n_params_non_embedding: float) -> float:
    """Kaplan et al. 2020 eq. D.1, floored at KAPLAN_MIN_LR."""
    return max(KAPLAN_MIN_LR, KAPLAN_LR_A - KAPLAN_LR_B * math.log(n_params_non_embedding))


def deepseek_lr(flops: float) -> float:
    """DeepSeek LLM 2024 eq. 1: the compute-optimal peak LR at budget C (FLOPs)."""
    return DEEPSEEK_LR_K * flops ** DEEPSEEK_LR_EXP


def deepseek_batch_tokens(flops: float) -> float:
    """DeepSeek LLM 2024 eq. 1: the compute-optimal batch size at budget C, in tokens."""
    return DEEPSEEK_BATCH_K * flops ** DEEPSEEK_BATCH_EXP


def step_law_lr(n_params_non_embedding: float, tokens: float) -> float:
    """Step Law (Li et al. 2025): the optimal peak LR for N non-embedding parameters trained on D tokens."""
    return STEP_LAW_LR_K * n_params_non_embedding ** STEP_LAW_LR_N_EXP * tokens ** STEP_LAW_LR_D_EXP


def step_law_batch_tokens(tokens: float) -> float:
    """Step Law (Li et al. 2025): the optimal batch size in tokens for a run of D tokens."""
    return STEP_LAW_BATCH_K * tokens ** STEP_LAW_BATCH_D_EXP


def porian_lr(n_params: float) -> float:
    """Porian et al. 2024 (arXiv:2406.19146): the optimal AdamW peak LR for a model of N parameters,

        eta*(N) = 0.0047 * (N / 108e6)^(-1/3)

    their rounded fit (summaries of Li et al. 2025's comparison table quote the unrounded one, 3.7 * N^-0.36,
    within 5% of this over 25M..1B) of the LR at the interpolated loss optimum of a grid over LR, batch size and
    AdamW beta2 in {0.95, 0.99, 0.999} (at each LR and batch size the best beta2), fitted over 25M < N < 110M
    (their get_interpolated_hparams_dfs). N counts the parameters that cost FLOPs per token: the non-embedding
    ones plus the output head, not the input embedding (their params = flops_per_token / 6). Sequence length
    2048. Depends on N alone, so a token budget far from theirs is not accounted for."""
    return PORIAN_LR_K * (n_params / PORIAN_N_REF) ** PORIAN_LR_EXP


def porian_batch_sequences(n_params: float) -> float:
    """Porian et al. 2024 (arXiv:2406.19146): the optimal batch size in sequences of PORIAN_SEQ_LEN = 2048 tokens,

        B*(N) = 160 * (N / 108e6)^(2/3)   (sequences of 2048 tokens)

    their rounded fit of the same sweep as porian_lr (the unrounded 0.00037 * N^0.703, quoted in tokens as
    0.7576 * N^0.703, is within 3% of this over 25M..110M). N as in porian_lr."""
    return PORIAN_BATCH_SEQS * (n_params / PORIAN_N_REF) ** PORIAN_BATCH_EXP


def porian_batch_tokens(n_params: float) -> float:
    """porian_batch_sequences in tokens: sequences x 2048, the sequence length it was fitted at."""
    return porian_batch_sequences(n_params) * PORIAN_SEQ_LEN


def fitted_lr(a: float, b: float, c: float, n_params_non_embedding: float, tokens: float) -> float:
    """lr_rule = "fitted": a * N^b * D^c with the constants of [train.lr_law] (scaling.analysis.lr_law fits them)."""
    return a * n_params_non_embedding ** b * tokens ** c


def describe_lr_rule(rule: str, base_lr: float, law: tuple[float, float, float], sweep: tuple[float, ...]) -> str:
    """Where each run's peak LR comes from, as `scaling plan` prints it."""
    where = {"constant": f"[train].lr = {base_lr:g} for every run",
             "kaplan": "Kaplan et al. 2020 eq. D.1 in non-embedding N (lr_rule = \"kaplan\")",
             "deepseek": "DeepSeek LLM 2024 eq. 1, 0.3118 * C^-0.125 (lr_rule = \"deepseek\")",
             "fitted": "the fitted law [train.lr_law], lr = {:.4g} * N^{:.3f} * D^{:.3f} (N non-embedding, D "
                       "tokens; lr_rule = \"fitted\")".format(*law)}.get(rule, rule)
    return f"LR per run: {where}" + (f", times each of lr_sweep = {list(sweep)}" if sweep else "")


def peak_lr(rule: str, base_lr: float, n_params_non_embedding: float, flops: float) -> float:
    """The run's peak LR under `rule` ("constant" returns base_lr)."""
    if rule == "constant":
        return base_lr
    if rule == "kaplan":
        return kaplan_lr(n_params_non_embedding)
    if rule == "deepseek":
        return deepseek_lr(flops)
    raise ValueError(f"unknown lr_rule {rule!r}")


def batch_size(rule: str, base_batch_size: int, seq_len: int, flops: float) -> int:
    """Sequences per step under `rule` ("constant" returns base_batch_size); at least 1."""
    if rule == "constant":
        return base_batch_size
    if rule == "deepseek":
        return max(1, round(deepseek_batch_tokens(flops) / seq_len))
    raise ValueError(f"unknown batch_rule {rule!r}")


def warmup_steps(rule: str, fraction: float, n_steps: int, n_params: float, tokens_per_step: int) -> int:
    """Linear-warmup steps under `rule`.

    "fraction": `fraction` of the run's n_steps (at least one step; 0 disables warmup).
    "params": as many tokens as the model has parameters, N. Porian et al. 2024 (arXiv:2406.19146, sec. 3)
        trace part of the Kaplan/Chinchilla discrepancy to Kaplan's fixed warmup, far too long for small
        models, and shorten it to N tokens; it grows with the model rather than with the run.
    "kaplan": Kaplan et al. 2020's fixed KAPLAN_WARMUP_STEPS, whatever the model or run (for reproducing it).
    """
    if rule == "fraction":
        return max(1, round(fraction * n_steps)) if fraction > 0 else 0
    if rule == "params":
        return max(1, round(n_params / tokens_per_step))
    if rule == "kaplan":
        return KAPLAN_WARMUP_STEPS
    raise ValueError(f"unknown warmup_rule {rule!r}")
