"""`scaling report`: one self-contained HTML page of a fitted sweep, to share by mail or a chat.

The page holds the law with its intervals and identification verdicts, the compute-optimal table with the
data's compute range and its extrapolated rows marked, every figure (embedded as base64 PNG, so the file
needs nothing beside it), the runs table and the diagnostics. No script, no external style sheet or font:
it opens the same in any browser and from any folder.

Layering: this module formats what the analysis computed (a FitReport, figure PNGs, a runs frame); it
imports the analysis and nothing above it (never the CLI).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from scaling.analysis.approach3 import PARAM_NAMES
from scaling.analysis.extrapolation import EXTRAPOLATION_FACTOR, describe_range
from scaling.analysis.identify import N_OPT_MAX_FACTOR, verdict_of
from scaling.analysis.report import FitReport, compute_optimal_table

RUN_COLUMNS = ("run_id", "status", "arch", "n_params", "n_tokens", "flops", "lr", "seed", "loss", "train_loss",
               "wall_s", "reason")
"""Columns of the runs table, where the source has them (a CSV has params, tokens, loss)."""

FIGURE_CAPTIONS = {
    "loss_vs_params.png": "Held-out loss against parameters, one colour per token budget, with the fitted law.",
    "compute_optimal.png": "Compute-optimal N and D: solid over the runs' compute, dashed with the bootstrap band "
                           "beyond it; stars: Approach 2's IsoFLOP minima.",
    "isoflop.png": "IsoFLOP profiles (Approach 2): a parabola in ln N per budget and its minimum.",
    "envelope.png": "Approach 1: the minimum-loss envelope and its power laws.",
    "isoloss.png": "Iso-loss contours of the fitted L(N, D) and the efficient frontier.",
    "residuals.png": "Residuals of the fit; outlying runs are circled and named.",
    "predicted_vs_observed.png": "Observed against predicted loss; crosses: runs held out of the fit.",
    "frontiers.png": "This sweep's frontier beside published laws.",
    "loss_curves.png": "Every run's training loss curve, held-out evaluations as dots.",
    "allocation.png": "The data-constrained law: iso-loss contours under the smallest repeated unique-token budget, "
                      "the compute-optimal frontier with and without that limit, and the runs.",
}

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text { text-align: left; }
.bad { color: #b00020; font-weight: bold; } .extrapolated { background: #fff3e0; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; } .note { color: #555; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class Section:
    """One fitted family of a sweep: its report, figures (file name -> PNG bytes) and runs."""

    title: str
    report: FitReport
    figures: Mapping[str, bytes]
    runs: pd.DataFrame


@dataclass(frozen=True)
class TextSection:
    """A further fit of the sweep (e.g. the data-constrained law) as `scaling fit` prints it: its report lines,
    a table and figures (file name -> PNG bytes)."""

    title: str
    lines: Sequence[str]
    table: pd.DataFrame | None = None
    figures: Mapping[str, bytes] = field(default_factory=dict)


def _num(x: object) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return f"{x:.4g}"
    return html.escape(str(x))


def _table(frame: pd.DataFrame, text_columns: Sequence[str] = (), row_class: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for i, row in enumerate(frame.itertuples(index=False)):
        cells = "".join(f'<td class="text">{_num(v)}</td>' if c in text_columns else f"<td>{_num(v)}</td>"
                        for c, v in zip(frame.columns, row))
        cls = f' class="{row_class[i]}"' if row_class and row_class[i] else ""
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def law_section(report: FitReport) -> str:
    """The Approach 3 law: each parameter with its interval and verdict, N_opt at the largest compute."""
    law = report.law
    if law is None:
        return "<p class=\"bad\">Approach 3 not fitted (see the diagnostics).</p>"
    p = law.params_
    values = {**p.to_dict(), "a": p.a, "b": p.b}
    rows = []
    for name in (*PARAM_NAMES, "a", "b"):
        iv = report._interval(name)
        why = report.identification.get(name, "")
        rows.append({"quantity": name, "estimate": values[name],
                     f"{100 * report.level:g}% interval": f"[{iv[0]:.4g}, {iv[1]:.4g}]" if iv else "",
                     "verdict": (why if verdict_of(why) == "borderline" else f"NOT IDENTIFIED: {why}") if why
                     else ("identified" if name in report.identification else "")})
    table = pd.DataFrame(rows)
    out = ["<p>L(N, D) = E + A / N<sup>alpha</sup> + B / D<sup>beta</sup> (Chinchilla Approach 3, Huber loss on "
           "log residuals); N_opt &prop; C<sup>a</sup>, D_opt &prop; C<sup>b</sup>.</p>",
           _table(table, text_columns=("quantity", f"{100 * report.level:g}% interval", "verdict"),
                  row_class=["bad" if r["verdict"].startswith("NOT") else "" for r in rows])]
    o = report.optimum
    if o is not None and "n_opt_lo" in o:
        verdict = "identified" if o["identified"] else (
            "borderline (raise --n-boot)" if o.get("verdict") == "borderline"
            else f"NOT IDENTIFIED (band wider than {N_OPT_MAX_FACTOR:g}x)")
        out.append(f"<p>N_opt at the sweep's largest compute (C = 6ND = {o['flops']:.3g}): {o['n_opt']:.3g} "
                   f"[{o['n_opt_lo']:.3g}, {o['n_opt_hi']:.3g}], {o['factor']:.3g}x wide: "
                   f"<span class=\"{'' if o['identified'] else 'bad'}\">{verdict}</span></p>")
    for title, result in (("Approach 2 (IsoFLOP parabolas)", report.isoflop),
                          ("Approach 1 (minimum-loss envelope)", report.envelope)):
        out.append(f"<p>{title}: " + ("not fitted" if result is None else
                                      f"N_opt = {result.law.k_n:.4g} C<sup>{result.a:.4f}</sup>, "
                                      f"D_opt = {result.law.k_d:.4g} C<sup>{result.b:.4f}</sup>") + "</p>")
    if report.holdout is not None:
        h = report.holdout
        out.append(f"<p>Holdout: fitted on runs with C &le; {h.max_fit_flops:.3g}, {len(h.table)} held out; "
                   f"relative loss error mean {h.mean_abs_rel_error:.3%}, max {h.max_abs_rel_error:.3%}.</p>")
    return "\n".join(out)


def compute_optimal_section(report: FitReport) -> str:
    """The compute-optimal table with the data's range; extrapolated rows marked and shaded."""
    if report.law is None:
        return "<p>No compute-optimal table without an Approach 3 fit.</p>"
    table = compute_optimal_table(report.law, report.budgets, report.level)
    marks = list(table["extrapolated"]) if "extrapolated" in table else [False] * len(table)
    shown = pd.DataFrame({"FLOPs (6ND)": table["flops"], "N_opt": table["n_opt"], "D_opt": table["d_opt"],
                          "tokens/param": table["tokens_per_param"]})
    if "n_opt_lo" in table:
        shown[f"N_opt {100 * report.level:g}% band"] = [f"[{lo:.3g}, {hi:.3g}]" for lo, hi in
                                                        zip(table["n_opt_lo"], table["n_opt_hi"])]
    shown["range"] = ["extrapolated" if m else "" for m in marks]
    return (f"<p class=\"note\">{html.escape(describe_range(report.law, EXTRAPOLATION_FACTOR))}.</p>"
            + _table(shown, text_columns=(f"N_opt {100 * report.level:g}% band", "range"),
                     row_class=["extrapolated" if m else "" for m in marks]))


def figures_section(figures: Mapping[str, bytes]) -> str:
    out = []
    for name, png in figures.items():
        data = base64.b64encode(png).decode("ascii")
        caption = FIGURE_CAPTIONS.get(name, name)
        out.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                   f"<figcaption>{html.escape(name)}: {html.escape(caption)}</figcaption></figure>")
    return "\n".join(out) or "<p>No figures.</p>"


def runs_section(runs: pd.DataFrame) -> str:
    columns = [c for c in RUN_COLUMNS if c in runs.columns] or list(runs.columns)
    shown = runs[columns].sort_values([c for c in ("flops", "n_params") if c in columns] or columns[:1],
                                      kind="stable")
    return f"<p>{len(runs)} runs.</p>" + _table(shown, text_columns=("run_id", "status", "arch", "reason"))


def diagnostics_section(report: FitReport) -> str:
    if not report.diagnostics:
        return "<p>None.</p>"
    return "<ul>" + "".join(f"<li>{html.escape(d)}</li>" for d in report.diagnostics) + "</ul>"


def text_section(section: TextSection) -> str:
    lines = "\n".join(line for line in section.lines if line.strip())
    parts = [f"<h2>{html.escape(section.title)}</h2>", f"<pre>{html.escape(lines)}</pre>"]
    if section.table is not None:
        parts.append(_table(section.table))
    if section.figures:
        parts.append(figures_section(section.figures))
    return "\n".join(parts)


def render_page(title: str, sections: Sequence[Section], source: str, methods_url: str | None = None,
                more: Sequence[TextSection] = ()) -> str:
    """The whole page as one HTML string (UTF-8, no external resource)."""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class=\"note\">Source: {html.escape(source)}. Written by <code>scaling report</code>."
             + (f" Methods and citations: {html.escape(methods_url)}." if methods_url else "") + "</p>"]
    for s in sections:
        if len(sections) > 1:
            parts.append(f"<h2>{html.escape(s.title)}</h2>")
        r = s.report
        parts += [f"<h2>Fitted law</h2><p>{r.n_runs} runs, {r.n_done} done and fitted as "
                  f"{r.n_points if r.n_points is not None else r.n_done} points.</p>", law_section(r),
                  "<h2>Compute-optimal allocation</h2>", compute_optimal_section(r),
                  "<h2>Figures</h2>", figures_section(s.figures),
                  "<h2>Diagnostics</h2>", diagnostics_section(r),
                  "<h2>Runs</h2>", runs_section(s.runs)]
    parts += [text_section(t) for t in more]
    parts.append("</body></html>\n")
    return "\n".join(parts)
