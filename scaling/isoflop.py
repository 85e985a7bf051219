"""IsoFLOP designs centred per budget: the prior law, each budget's predicted N_opt(C), and its window.

Approach 2 (Hoffmann et al. 2022, sec. 3.2) fits a parabola in ln N to each budget's losses and takes its
minimum. The loss along an IsoFLOP line is not a parabola, so the fitted minimum is off by an amount that
depends on where the sampled sizes sit around the true optimum. With the same sizes at every budget the
optimum moves across the window as C grows and the error changes with C, which biases the exponent a
(on noiseless data from Besiroglu et al. 2024's law, a = 0.5126: 0.487-0.491 as a user measured it, 0.44
and 0.46 for 9 sizes over 3e7-1e10 and 1e7-3.2e10 at 1e18-1e22 FLOPs). A window of fixed width in ln N
centred on each budget's optimum makes the error the same at every budget where flops_per_token ~ 6N (the
loss along the line is then the same curve, shifted and scaled), so N_opt ~ C^a is recovered (0.5127).
At the 1e4-parameter scale shapes are coarse and flops_per_token / N drifts from 11 to 7; plan_windows
corrects for both by running Approach 2 on the prior's own losses (see there).

Pure and torch-free: the plan calls `resolve_prior` once, `plan_windows` per family and `check_design`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scaling.accounting import ModelShape, flops_per_token, n_params
from scaling.config import MAX_PARAMS, SweepConfig
from scaling.errors import ConfigError, ScalingError


A_TOLERANCE = 0.005
"""The most a design may bias Approach 2's exponent a on its prior's own noiseless losses."""


@dataclass(frozen=True)
class Prior:
    """The law that centres the windows, and where it came from (printed by `scaling plan`)."""

    law: object
    """Has compute_optimal(C) -> (N_opt, D_opt); Chinchilla-form laws also predict(N, D)."""
    source: str


def resolve_prior(cfg: SweepConfig) -> Prior:
    """The [grid.prior] law: a published one by name, a stated one, or Approach 3 fitted to a pilot."""
    from scaling.compare import published_laws
    from scaling.analysis import ChinchillaLaw

    p, src = cfg.grid.prior, cfg.source or "<config>"
    if p.law:
        laws = published_laws()
        if p.law not in laws:
            raise ConfigError(f"{src}: [grid.prior].law = {p.law!r}: unknown law (published laws: "
                              f"{', '.join(repr(n) for n in laws)})")
        return Prior(law=laws[p.law], source=f"published law {p.law!r} (scaling.compare.published_laws)")
    if p.stated:
        law = ChinchillaLaw.from_params(E=p.E, A=p.A, B=p.B, alpha=p.alpha, beta=p.beta)
        return Prior(law=law, source=f"stated in [grid.prior]: E={p.E:g}, A={p.A:g}, B={p.B:g}, "
                                     f"alpha={p.alpha:g}, beta={p.beta:g} (a={law.a_:.4f})")
    if p.pilot:
        return _fit_pilot(Path(p.pilot), src)
    raise ConfigError(f"{src}: [grid.prior]: missing; an IsoFLOP design needs a prior law")


def _fit_pilot(path: Path, src: str) -> Prior:
    """Approach 3 on a pilot's done runs (best LR per point, seed means), as `scaling fit` would fit them.
    ChinchillaLaw starts L-BFGS from a fixed grid, so the same pilot always gives the same law."""
    from scaling.analysis import ChinchillaLaw, fit_points, read_points_csv
    from scaling.results import load_results

    where = f"{src}: [grid.prior].pilot = {str(path)!r}"
    try:
        frame = load_results(path) if path.is_dir() else read_points_csv(path)
        if "arch" in frame.columns and frame["arch"].nunique() > 1:
            raise ConfigError(f"has runs of several families ({', '.join(sorted(frame['arch'].dropna().unique()))}); "
                              f"give a pilot of one family")
        done, _ = fit_points(frame)
        law = ChinchillaLaw().fit(done["n_params"], done["n_tokens"], done["loss"])
    except ScalingError as exc:
        message = str(exc).removeprefix(f"{path}: ")
        raise ConfigError(f"{where}: cannot fit a prior law: {message}") from None
    q = law.params_
    if not all(math.isfinite(v) and v > 0 for v in (q.A, q.B, q.alpha, q.beta)):
        raise ConfigError(f"{where}: its Approach 3 fit is degenerate ({law!r}): it gives no N_opt(C); "
                          f"add pilot runs or state the law")
    return Prior(law=law, source=f"pilot {path}: Approach 3 fit to {len(done)} runs: E={q.E:.4g}, "
                                 f"A={q.A:.4g}, B={q.B:.4g}, alpha={q.alpha:.4g}, beta={q.beta:.4g} "
                                 f"(a={law.a_:.4f})")


@functools.lru_cache(maxsize=32)
def candidate_shapes(arch: str, seq_len: int, vocab_size: int, head_dim: int, aspect_ratio: float,
                     mlp_ratio: int, **options: object) -> tuple[ModelShape, ...]:
    """Every shape the depth/width rule allows (the ones resolve_shape chooses from), smallest first:
    d_model a multiple of head_dim, n_layer = d_model / aspect_ratio rounded down or up (at least 1).
    `options`: the other ModelShape fields ([model].shape_options())."""
    shapes: set[ModelShape] = set()
    for multiple in range(1, 4097):
        d = multiple * head_dim
        row = [ModelShape(arch=arch, n_layer=n_layer, d_model=d, n_head=multiple, seq_len=seq_len,
                          vocab_size=vocab_size, mlp_ratio=mlp_ratio, **options)  # type: ignore[arg-type]
               for n_layer in {max(1, math.floor(d / aspect_ratio)), max(1, math.ceil(d / aspect_ratio))}]
        shapes.update(row)
        if min(n_params(s) for s in row) > 10 * MAX_PARAMS:
            break  # far past any size a sweep may ask for
    return tuple(sorted(shapes, key=lambda s: (n_params(s), s.n_layer)))


@dataclass(frozen=True)
class Window:
    """One budget's IsoFLOP sizes: the prior's optimum, the window asked for and the shapes planned."""

    arch: str
    budget: float
    centre: float
    """The prior's N_opt for this budget along the planned IsoFLOP line (D = C / flops_per_token(N))."""
    lo: float
    hi: float
    """The window asked for: centre / sqrt(window) .. centre * sqrt(window)."""
    shapes: tuple[ModelShape, ...]
    approach2: float = math.nan
    """Where Approach 2 puts N_opt on the prior's own noiseless losses at these shapes (nan: the prior
    predicts no losses). The parabola misses by about the same factor at every budget of a design (a
    constant factor does not move a); check_design refuses a design where the factors drift."""

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(n_params(s) for s in self.shapes)

    def describe(self) -> str:
        sizes = self.sizes
        # How far the planned sizes' own centre (in ln N) sits from the prior's optimum: shapes are discrete.
        mid = math.exp((math.log(sizes[0]) + math.log(sizes[-1])) / 2)
        return (f"budget {self.budget:.3g} FLOPs ({self.arch}): centre N_opt {self.centre:.3g}, window "
                f"{self.lo:.3g} .. {self.hi:.3g}; planned {len(sizes)} sizes {sizes[0]:.3g} .. {sizes[-1]:.3g} "
                f"(their centre {mid:.3g}, x{mid / self.centre:.3g})"
                + (f"; Approach 2 on the prior's losses: N_opt x{self.approach2 / self.centre:.4g}"
                   if math.isfinite(self.approach2) else ""))


@functools.lru_cache(maxsize=32)
def _line(arch: str, seq_len: int, vocab_size: int, head_dim: int, aspect_ratio: float, mlp_ratio: int,
          **options: object) -> tuple[np.ndarray, np.ndarray]:
    """ln N and ln(flops_per_token / N) along the depth/width rule taken as continuous (d_model any real,
    n_layer = d_model / aspect_ratio but at least 1, d_model / head_dim heads): a smooth version of the
    available shapes, whose own ratios jitter by a few % with the rounding of n_layer. The planned IsoFLOP
    line is D = C / (r(N) N) with r = flops_per_token / N. (n_params and flops_per_token are polynomials
    in the shape, so they accept real-valued widths.)"""
    log_n, log_r = [], []
    for d in np.geomspace(head_dim, 4096 * head_dim, 4000):
        shape = ModelShape(arch=arch, n_layer=max(1.0, d / aspect_ratio), d_model=d,  # type: ignore[arg-type]
                           n_head=d / head_dim, seq_len=seq_len, vocab_size=vocab_size,  # type: ignore[arg-type]
                           mlp_ratio=mlp_ratio, **options)  # type: ignore[arg-type]
        n = n_params(shape)
        log_n.append(math.log(n))
        log_r.append(math.log(flops_per_token(shape) / n))
    return np.array(log_n), np.array(log_r)


def centre_of(law: object, budget: float, line: tuple[np.ndarray, np.ndarray]) -> float:
    """The prior's N_opt at `budget` along the line the plan samples, D = C / flops_per_token(N).

    A law's own compute_optimal(C) assumes C = 6 N D; flops_per_token(N) / N is 6-12 at the tiny scale
    (embeddings and attention), so where the law predicts losses we minimise it along the planned line
    itself (`line`: ln N and ln(flops_per_token / N) along the depth/width rule, see _line). Laws that only
    give compute_optimal (Kaplan's frontier, Approach 1 power laws) are used as they are.
    """
    guess = float(np.asarray(law.compute_optimal(budget)[0]))  # type: ignore[attr-defined]
    if not hasattr(law, "predict") or not math.isfinite(guess) or guess <= 0:
        return guess
    log_n, log_r = line

    def loss(x: np.ndarray) -> np.ndarray:
        r = np.exp(np.interp(x, log_n, log_r))
        n = np.exp(x)
        return np.asarray(law.predict(n, budget / (r * n)), dtype=float)  # type: ignore[attr-defined]

    # A grid over +-6 in ln N around the 6ND optimum (the r(N) correction is well inside it), then a
    # golden-section refinement: deterministic, no starting-point dependence.
    x = math.log(guess) + np.linspace(-6.0, 6.0, 2401)
    i = int(np.argmin(loss(x)))
    lo, hi = x[max(i - 1, 0)], x[min(i + 1, len(x) - 1)]
    g = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if loss(np.array([a]))[0] < loss(np.array([b]))[0]:
            hi = b
        else:
            lo = a
    return math.exp((lo + hi) / 2)


def _parabola_minimum(law: object, budget: float, log_n: np.ndarray, flops_per_tok: np.ndarray) -> float:
    """ln N at the minimum of Approach 2's parabola through the law's losses at sizes exp(log_n), each
    trained for D = budget / flops_per_tok (nan for a law without predict, or a parabola with no minimum)."""
    from scaling.analysis.approaches import fit_parabola  # SciPy-backed: only when an IsoFLOP design is planned

    if not hasattr(law, "predict"):
        return math.nan
    loss = np.asarray(law.predict(np.exp(log_n), budget / flops_per_tok), dtype=float)  # type: ignore
    return fit_parabola(log_n, loss)[3]


def _shapes_minimum(law: object, budget: float, shapes: tuple[ModelShape, ...]) -> float:
    return _parabola_minimum(law, budget, np.log([n_params(s) for s in shapes]),
                             np.array([flops_per_token(s) for s in shapes], dtype=float))


def _choose(options: list[list[tuple[float, float, tuple[ModelShape, ...]]]], log_c: np.ndarray,
            ideal_misses: list[float]) -> list[tuple[float, float, tuple[ModelShape, ...]]]:
    """One option (miss, |shift|, shapes) per budget: the least-shifted windows whose misses are the same
    at every budget to within what moves a by A_TOLERANCE / 2, i.e. whose misses vs ln C have a slope
    below that. Tries a common miss to aim for from the ideal windows' mean across the range of misses."""
    misses = [o[0] for opts in options for o in opts]
    if not all(math.isfinite(v) for v in misses):  # a law without losses: the unshifted windows
        return [min(opts, key=lambda o: o[1]) for opts in options]
    aims = [float(np.mean(ideal_misses))] + list(np.linspace(min(misses), max(misses), 201))
    best: tuple[tuple[bool, float, float], list] | None = None
    for aim in aims:
        pick = [min(opts, key=lambda o: (abs(o[0] - aim), o[1])) for opts in options]
        slope = abs(float(np.polyfit(log_c, [o[0] for o in pick], 1)[0])) if len(set(log_c)) > 1 else 0.0
        score = (slope > A_TOLERANCE / 2, float(np.mean([o[1] for o in pick])), slope)
        if best is None or score < best[0]:
            best = (score, pick)
    assert best is not None
    return best[1]


def plan_windows(cfg: SweepConfig, arch: str, prior: Prior) -> list[Window]:
    """Each budget's n_sizes shapes for one family: log-spaced targets over the window around the prior's
    N_opt. Refused in one line when a window leaves the available shapes or the [grid].n_params limits,
    or when two targets resolve to one shape (the window is too narrow for the shape steps at this size).

    Shapes are discrete (d_model steps by head_dim, n_layer rounds), so the nearest shapes to the targets
    sit unevenly around the centre, and flops_per_token / N drifts along the line at the tiny scale; both
    move the parabola's minimum by amounts that differ between budgets, which biases a (by 0.01-0.06 at
    1e4 parameters). A parabola through a centred window misses the optimum by an amount that is the same
    at every budget where the loss curves are self-similar (flops_per_token ~ 6N), and that does not bias a.
    So where the prior predicts losses, Approach 2 is run on its own noiseless losses for the shapes
    nearest the targets, with each window shifted by up to half a size step, and the least-shifted windows
    whose misses agree across the budgets are planned (see _choose; check_design refuses the design if
    they still move a by more than A_TOLERANCE).
    """
    m, g, src = cfg.model, cfg.grid, cfg.source or "<config>"
    shapes = candidate_shapes(arch, m.seq_len, cfg.data.vocab_size, m.head_dim, m.aspect_ratio, m.mlp_ratio,
                              **m.shape_options())
    line = _line(arch, m.seq_len, cfg.data.vocab_size, m.head_dim, m.aspect_ratio, m.mlp_ratio,
                 **m.shape_options())
    log_sizes = np.log([n_params(s) for s in shapes])
    step = g.window ** (1.0 / (g.n_sizes - 1))
    offsets = np.linspace(-0.5, 0.5, g.n_sizes) * math.log(g.window)  # the targets around ln N_opt
    centres, ideal_misses = [], []
    for i, budget in enumerate(g.flops):
        where = f"{src}: [grid].flops[{i}] = {budget:g}"
        centre = centre_of(prior.law, budget, line)
        if not (math.isfinite(centre) and 0 < centre <= MAX_PARAMS):
            raise ConfigError(f"{where}: the prior ({prior.source}) gives N_opt = {centre:.3g}, not a model "
                              f"size in (0, {MAX_PARAMS:g}]")
        lo, hi, smallest = centre / math.sqrt(g.window), centre * math.sqrt(g.window), shapes[0]
        if lo < n_params(smallest) / math.sqrt(step):
            raise ConfigError(
                f"{where}: its window {lo:.3g} .. {hi:.3g} around N_opt {centre:.3g} ({arch}) starts below "
                f"the smallest {arch} model (L{smallest.n_layer} d{smallest.d_model}, {n_params(smallest):,} "
                f"params); raise the budget, narrow [grid].window or lower [model].head_dim")
        x = math.log(centre) + offsets
        ideal = _parabola_minimum(prior.law, budget, x, np.exp(x + np.interp(x, *line)))
        centres.append(centre)
        ideal_misses.append(ideal - math.log(centre))
    # Every distinct shape set of each budget's shifted windows, with its miss (ln N of Approach 2's
    # minimum minus ln N_opt) on the prior's losses.
    options: list[list[tuple[float, float, tuple[ModelShape, ...]]]] = []
    for i, (budget, centre) in enumerate(zip(g.flops, centres)):
        found: dict[tuple[ModelShape, ...], tuple[float, float, tuple[ModelShape, ...]]] = {}
        for shift in np.linspace(-0.5, 0.5, 41) * math.log(step):
            picked = tuple(shapes[int(np.argmin(np.abs(log_sizes - t)))] for t in math.log(centre) + offsets + shift)
            if len(set(picked)) == len(picked) and (picked not in found or abs(shift) < found[picked][1]):
                found[picked] = (_shapes_minimum(prior.law, budget, picked) - math.log(centre), abs(shift), picked)
        if not found:
            lo, hi = centre / math.sqrt(g.window), centre * math.sqrt(g.window)
            picked = tuple(shapes[int(np.argmin(np.abs(log_sizes - t)))] for t in math.log(centre) + offsets)
            dup = next(s for s in picked if picked.count(s) > 1)
            raise ConfigError(
                f"{src}: [grid].flops[{i}] = {budget:g}: two of its {g.n_sizes} sizes in {lo:.3g} .. {hi:.3g} "
                f"({arch}) resolve to one model (L{dup.n_layer} d{dup.d_model}, {n_params(dup):,} params; "
                f"d_model steps by head_dim {m.head_dim}); widen [grid].window, lower [grid].n_sizes or "
                f"[model].head_dim")
        options.append(list(found.values()))
    chosen = _choose(options, np.log(np.asarray(g.flops, dtype=float)), ideal_misses)
    windows = []
    for i, (budget, centre, (_miss, _shift, picked)) in enumerate(zip(g.flops, centres, chosen)):
        predicted = _shapes_minimum(prior.law, budget, picked)
        window = Window(arch=arch, budget=budget, centre=centre, lo=centre / math.sqrt(g.window),
                        hi=centre * math.sqrt(g.window), shapes=picked,
                        approach2=math.exp(predicted) if math.isfinite(predicted) else math.nan)
        if g.design == "isoflop" and len(g.n_params) == 2:
            n_lo, n_hi = g.n_params
            sizes = window.sizes
            if sizes[0] < n_lo or sizes[-1] > n_hi:
                raise ConfigError(
                    f"{src}: [grid].flops[{i}] = {budget:g}: its window {sizes[0]:.3g} .. {sizes[-1]:.3g} around "
                    f"N_opt {centre:.3g} ({arch}) does not fit inside [grid].n_params = [{n_lo:g}, {n_hi:g}]; "
                    f"narrow [grid].window, move the budget or widen the limits")
        windows.append(window)
    return windows


def design_exponents(windows: tuple[Window, ...] | list[Window]) -> dict[str, tuple[float, float]]:
    """Per family with >= 2 budgets: (the exponent of the prior's N_opt over the budgets, the exponent
    Approach 2 finds on the prior's own noiseless losses at the planned shapes). They differ only by the
    design's bias. (The first is the prior's a = beta / (alpha + beta) where flops_per_token = 6N; at the
    tiny scale, where embeddings make flops_per_token / N 7-11, it is the exponent in counted FLOPs.)"""
    out = {}
    for arch in dict.fromkeys(w.arch for w in windows):
        mine = [w for w in windows if w.arch == arch and math.isfinite(w.approach2)]
        if len({w.budget for w in mine}) < 2:
            continue
        log_c = np.log([w.budget for w in mine])
        a_prior = float(np.polyfit(log_c, np.log([w.centre for w in mine]), 1)[0])
        a_design = float(np.polyfit(log_c, np.log([w.approach2 for w in mine]), 1)[0])
        out[arch] = (a_prior, a_design)
    return out


def check_design(cfg: SweepConfig, windows: tuple[Window, ...] | list[Window]) -> None:
    """Refuse a design whose discreteness biases Approach 2's a by more than A_TOLERANCE even on the prior's
    own losses (a real sweep adds noise on top; this part is the planner's to avoid)."""
    for arch, (a_prior, a_design) in design_exponents(windows).items():
        if abs(a_design - a_prior) > A_TOLERANCE:
            raise ConfigError(
                f"{cfg.source or '<config>'}: [grid].flops = [{min(cfg.grid.flops):g} .. {max(cfg.grid.flops):g}] "
                f"({len(cfg.grid.flops)} budgets): with the available {arch} "
                f"shapes, Approach 2 on the prior's own losses would find a = {a_design:.4f} instead of "
                f"{a_prior:.4f} (more than {A_TOLERANCE} off); use more sizes per budget ([grid].n_sizes), a "
                f"smaller [model].head_dim, a different [grid].window, or budgets further apart")
