"""Hyperparameter laws fitted from a sweep: the best LR and batch size as power laws of N and D, or of C.

lr*(N, D) = a * N^b * D^c, the same for batch size, and DeepSeek LLM 2024's compute-only form lr*(C) = k * C^e
(issue 28, item 3). Pure and torch-free (numpy only).

Per (N, D) point with at least MIN_VALUES distinct values of the hyperparameter, the optimum is the vertex of a
parabola in log(value) through the lowest loss and its neighbours (up to two each side). A point whose lowest
loss sits at the edge of the swept range, or whose parabola opens downwards, has no located optimum: it is
flagged and left out of the law, never extrapolated. The law is a least-squares fit of log(optimum) on log N
and log D; its intervals come from a bootstrap over the points (resampled with replacement). An exponent whose
variable does not vary across the points is not identified and is reported as such (nan), not fitted.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scaling import hparams

MIN_VALUES = 3
"""Fewest distinct LRs (or batch sizes) per (N, D) point: a parabola needs three."""


class LawInputError(ValueError):
    """Bad input for a hyperparameter law; the message is one line naming file, key and value."""


@dataclass(frozen=True)
class Optimum:
    n: float
    d: float
    value: float
    """The parabola's vertex (nan where not located)."""
    loss: float
    """The parabola's loss at the vertex (the lowest swept loss where not located)."""
    swept: tuple[float, ...]
    losses: tuple[float, ...]
    edge: bool
    """The lowest loss is at the smallest or largest swept value (or the parabola is not convex)."""

    def loss_at(self, value: float) -> float:
        """The loss the parabola through this point's sweep predicts at `value` (inside the swept range)."""
        x, y = _near_best(self.swept, self.losses)
        coef = np.polyfit(x, y, 2)
        return float(np.polyval(coef, math.log(value)))


@dataclass(frozen=True)
class Law:
    key: str
    a: float
    b: float
    c: float
    b_ci: tuple[float, float]
    c_ci: tuple[float, float]
    points: tuple[Optimum, ...]
    flagged: tuple[Optimum, ...] = field(default=())

    def predict(self, n: float, d: float) -> float:
        c = 0.0 if math.isnan(self.c) else self.c
        b = 0.0 if math.isnan(self.b) else self.b
        return self.a * n ** b * d ** c

    def line(self) -> str:
        name = "LR" if self.key == "lr" else "Batch"
        sym = "lr*" if self.key == "lr" else "B*"
        return (f"{name} law: {sym} = {self.a:.4g} * N^b * D^c, b = {_num(self.b)} [{_num(self.b_ci[0])}, "
                f"{_num(self.b_ci[1])}], c = {_num(self.c)} [{_num(self.c_ci[0])}, {_num(self.c_ci[1])}]")


@dataclass(frozen=True)
class ComputeLaw:
    key: str
    k: float
    e: float
    e_ci: tuple[float, float]

    def line(self) -> str:
        sym = "lr*" if self.key == "lr" else "B*"
        return (f"{'LR' if self.key == 'lr' else 'Batch'} law (compute only, DeepSeek 2024's form): "
                f"{sym} = {self.k:.4g} * C^e, e = {_num(self.e)} [{_num(self.e_ci[0])}, {_num(self.e_ci[1])}]")


def _num(x: float) -> str:
    return "not identified" if math.isnan(x) else f"{x:.3f}"


def _near_best(values, losses) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.log(np.asarray(values, float)), np.asarray(losses, float)
    best = int(np.argmin(y))
    idx = [i for i in range(best - 2, best + 3) if 0 <= i < len(x) and math.isfinite(y[i])]
    return x[idx], y[idx]


def optima(rows: list[tuple[float, float, float, float]], key: str = "lr", source: str = "<rows>") -> list[Optimum]:
    """rows: (N, D, value, loss). One Optimum per (N, D); LawInputError where a point has < MIN_VALUES values."""
    by_point: dict[tuple[float, float], dict[float, float]] = {}
    for n, d, v, loss in rows:
        if not v > 0:
            raise LawInputError(f"{source}: {key} = {v}: must be > 0")
        cur = by_point.setdefault((n, d), {})  # a diverged run (loss inf or nan) still counts as a swept value
        cur[v] = min(loss if math.isfinite(loss) else math.inf, cur.get(v, math.inf))
    if not by_point:
        raise LawInputError(f"{source}: {key}: no finite losses to fit a law to")
    out = []
    for (n, d), sweep in sorted(by_point.items()):
        if len(sweep) < MIN_VALUES:
            raise LawInputError(f"{source}: {key} = {sorted(sweep)} at N = {n:.4g}, D = {d:.4g}: a law needs at least "
                                f"{MIN_VALUES} distinct values per (N, D) point, got {len(sweep)}")
        values = tuple(sorted(sweep))
        losses = tuple(sweep[v] for v in values)
        best = int(np.argmin(losses))
        x, y = _near_best(values, losses)
        if len(x) < 3 or not math.isfinite(losses[best]):
            out.append(Optimum(n, d, math.nan, losses[best], values, losses, True))
            continue
        a2, a1, a0 = np.polyfit(x, y, 2)
        edge = best in (0, len(values) - 1) or a2 <= 0
        if edge:
            out.append(Optimum(n, d, math.nan, losses[best], values, losses, True))
            continue
        vx = float(np.clip(-a1 / (2 * a2), x.min(), x.max()))
        out.append(Optimum(n, d, math.exp(vx), float(np.polyval([a2, a1, a0], vx)), values, losses, False))
    return out


def _lstsq(cols: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    X = np.column_stack([np.ones_like(y)] + cols)
    return np.linalg.lstsq(X, y, rcond=None)[0]


def fit_law(points: list[Optimum], key: str = "lr", n_boot: int = 1000, seed: int = 0,
            source: str = "<rows>") -> Law:
    """lr* = a * N^b * D^c over the located optima, with bootstrap 95% intervals on b and c."""
    good = [p for p in points if not p.edge]
    flagged = tuple(p for p in points if p.edge)
    if len(good) < 2:
        raise LawInputError(f"{source}: {key}: {len(good)} (N, D) point(s) with an optimum inside the swept range "
                            f"({len(flagged)} at its edge); a law needs at least 2: widen the sweep")
    ln, ld = np.log([p.n for p in good]), np.log([p.d for p in good])
    y = np.log([p.value for p in good])
    vary_n, vary_d = np.ptp(ln) > 0, np.ptp(ld) > 0
    if not (vary_n or vary_d):
        raise LawInputError(f"{source}: {key}: every point has the same N and D; a law needs N or D to vary")

    def fit(idx: np.ndarray) -> tuple[float, float, float]:
        cols = ([ln[idx]] if vary_n else []) + ([ld[idx]] if vary_d else [])
        coef = _lstsq(cols, y[idx])
        b = coef[1] if vary_n else math.nan
        c = coef[-1] if vary_d else math.nan
        return float(coef[0]), float(b), float(c)

    all_idx = np.arange(len(good))
    log_a, b, c = fit(all_idx)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.choice(all_idx, size=len(all_idx), replace=True)
        sub_n, sub_d = np.ptp(ln[idx]) > 0 or not vary_n, np.ptp(ld[idx]) > 0 or not vary_d
        if sub_n and sub_d and len(set(idx.tolist())) > int(vary_n) + int(vary_d):
            boots.append(fit(idx)[1:])
    bs = np.array(boots) if boots else np.full((1, 2), math.nan)

    def ci(col: int, est: float) -> tuple[float, float]:
        if math.isnan(est):
            return (math.nan, math.nan)
        return (float(np.percentile(bs[:, col], 2.5)), float(np.percentile(bs[:, col], 97.5)))

    return Law(key, math.exp(log_a), b, c, ci(0, b), ci(1, c), tuple(good), flagged)


def fit_compute_law(points: list[Optimum], key: str = "lr", n_boot: int = 1000, seed: int = 0,
                    source: str = "<rows>") -> ComputeLaw:
    """DeepSeek LLM 2024's form: value* = k * C^e with C = 6 N D."""
    good = [p for p in points if not p.edge]
    lc = np.log([6 * p.n * p.d for p in good])
    if len(good) < 2 or np.ptp(lc) == 0:
        raise LawInputError(f"{source}: {key}: a compute-only law needs located optima at >= 2 compute budgets")
    y = np.log([p.value for p in good])
    log_k, e = _lstsq([lc], y)
    rng = np.random.default_rng(seed)
    es = []
    for _ in range(n_boot):
        idx = rng.choice(len(good), size=len(good), replace=True)
        if np.ptp(lc[idx]) > 0:
            es.append(_lstsq([lc[idx]], y[idx])[1])
    ci = (float(np.percentile(es, 2.5)), float(np.percentile(es, 97.5))) if es else (math.nan, math.nan)
    return ComputeLaw(key, float(math.exp(log_k)), float(e), ci)


def loss_lost(points: list[Optimum]) -> list[tuple[Optimum, float, float]]:
    """For each located point: (point, planned value, loss lost there against the optimum). The planned value is
    the geometric middle of the sweep (multiplier 1.0 of a symmetric `lr_sweep`), snapped to a swept value."""
    out = []
    for p in points:
        if p.edge:
            continue
        mid = math.exp((math.log(p.swept[0]) + math.log(p.swept[-1])) / 2)
        planned = min(p.swept, key=lambda v: abs(math.log(v / mid)))
        out.append((p, planned, max(0.0, p.loss_at(planned) - p.loss)))
    return out


def report(points: list[Optimum], key: str = "lr", compute: bool = False, n_boot: int = 1000,
           source: str = "<rows>") -> list[str]:
    """The lines `scaling fit` prints for a sweep with several values of `key` per (N, D) point."""
    law = fit_law(points, key, n_boot=n_boot, source=source)
    lines = [law.line() + f" ({len(law.points)} (N, D) points)"]
    for p in law.flagged:
        lines.append(f"  N = {p.n:.3g}, D = {p.d:.3g}: best {key} at the edge of the swept range "
                     f"[{p.swept[0]:.3g}, {p.swept[-1]:.3g}]; left out of the law (widen the sweep)")
    for p, planned, lost in loss_lost(points):
        lines.append(f"  N = {p.n:.3g}, D = {p.d:.3g}: {key} {planned:.3g} lost {lost:.4f} loss against the "
                     f"fitted optimum {p.value:.3g}")
    if compute:
        lines.append(fit_compute_law(points, key, n_boot=n_boot, source=source).line())
    lines += published_lines(law)
    return lines


def published_lines(law: Law) -> list[str]:
    """The fitted law beside Step Law's (Li et al. 2025), DeepSeek 2024's and Porian et al. 2024's at the largest
    (N, D) point fitted. N here is the source's params column; the published laws were fitted on non-embedding N
    (Step Law), on compute C (DeepSeek) and on N with the output head (Porian, in N alone, at D ~ 20N), at sizes
    1e2 to 1e6 times ours, so a gap is expected and says which one a sweep of ours resembles, not which is right.
    Batch sizes: the fitted law's in the source's unit (sequences), the published ones in tokens."""
    p = max(law.points, key=lambda q: (q.n * q.d, q.n))
    n, d = p.n, p.d
    if law.key == "lr":
        cells = [("fitted", law.predict(n, d)), ("Step Law (Li et al. 2025)", hparams.step_law_lr(n, d)),
                 ("DeepSeek 2024", hparams.deepseek_lr(6 * n * d)), ("Porian et al. 2024", hparams.porian_lr(n))]
    else:
        cells = [("fitted", law.predict(n, d)), ("Step Law (tokens)", hparams.step_law_batch_tokens(d)),
                 ("DeepSeek 2024 (tokens)", hparams.deepseek_batch_tokens(6 * n * d)),
                 ("Porian et al. 2024 (tokens)", hparams.porian_batch_tokens(n))]
    return [f"  at N = {n:.3g}, D = {d:.3g}: " + "; ".join(f"{name} {v:.3g}" for name, v in cells)]


def read_csv(path: Path, key: str = "lr") -> list[tuple[float, float, float, float]]:
    """Rows (N, D, value, loss) of a CSV with columns params, tokens, <key>, loss."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("params", "tokens", key, "loss") if c not in (reader.fieldnames or [])]
        if missing:
            raise LawInputError(f"{path}: column {missing[0]!r}: missing (need params, tokens, {key}, loss)")
        rows = []
        for i, r in enumerate(reader, start=2):
            try:
                n, d, v, loss = (float(r[c]) for c in ("params", "tokens", key, "loss"))
            except ValueError:
                raise LawInputError(f"{path}: line {i}: {key} = {r[key]!r}: not a number") from None
            if not v > 0:
                raise LawInputError(f"{path}: line {i}: {key} = {r[key]}: must be > 0")
            rows.append((n, d, v, loss))
    return rows
