"""The interactive BSEC report: one self-contained HTML file (Plotly, no network needed).

One figure per evaluator compares the strategies (paper, Fig. 4) and, when several evaluators
were simulated, one figure per strategy compares the evaluators (paper, Figs. 2–3).  Each curve
is the median true score of the selected backbone over runs with its 25–75 % band; the baseline
backbone is a flat black line; the time axis is logarithmic with ticks labelled in seconds,
minutes, hours and days; hovering a point shows the budget, the median, the band and the
backbone selected most often at that budget.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import polars as pl

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f"]
_TICKS = [(0.1, "0.1 s"), (1, "1 s"), (3, "3 s"), (10, "10 s"), (30, "30 s"), (60, "1 min"),
          (300, "5 min"), (600, "10 min"), (1800, "30 min"), (3600, "1 h"), (6 * 3600, "6 h"),
          (86400, "1 day"), (7 * 86400, "1 week"), (30 * 86400, "30 days"), (365 * 86400, "1 year")]


def human_time(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def time_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    ticks = [(v, t) for v, t in _TICKS if lo <= v <= hi]
    if len(ticks) > 8:  # a wide grid: keep the round units only
        ticks = [(v, t) for v, t in ticks if not t.startswith(("3 s", "30 s", "5 min", "30 min"))]
    if len(ticks) < 2:  # a narrow grid: label its ends
        ticks = [(lo, human_time(lo)), (hi, human_time(hi))]
    return [v for v, _ in ticks], [t for _, t in ticks]


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def bsec_figure(curves: pl.DataFrame, by: str, title: str, baseline: str | None,
                baseline_score: float | None, budgets: np.ndarray) -> go.Figure:
    """Curves of one figure; ``by`` is the column whose values become separate curves."""
    fig = go.Figure()
    for i, (key, part) in enumerate(curves.group_by(by, maintain_order=True)):
        name = key[0] if isinstance(key, tuple) else key
        color = PALETTE[i % len(PALETTE)]
        part = part.sort("budget_s")
        x = part.get_column("budget_s").to_numpy()
        q25 = part.get_column("q25").to_numpy()
        q75 = part.get_column("q75").to_numpy()
        fig.add_trace(go.Scatter(x=x, y=q75, mode="lines", line=dict(width=0), hoverinfo="skip",
                                 showlegend=False, legendgroup=name))
        fig.add_trace(go.Scatter(x=x, y=q25, mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor=_rgba(color, 0.18), hoverinfo="skip", showlegend=False,
                                 legendgroup=name))
        custom = np.column_stack([
            [human_time(v) for v in x], q25, q75,
            part.get_column("mode_backbone").fill_null("— none —").to_list(),
            part.get_column("mode_share").to_numpy() * 100,
            part.get_column("n_selected").to_numpy(), part.get_column("n_runs").to_numpy(),
        ])
        fig.add_trace(go.Scatter(
            x=x, y=part.get_column("median").to_numpy(), mode="lines", name=str(name),
            line=dict(color=color, width=2.2), legendgroup=name, customdata=custom,
            hovertemplate=("<b>%{fullData.name}</b><br>budget %{customdata[0]}<br>"
                           "median ε(b̂) %{y:.4f} (IQR %{customdata[1]:.4f}–%{customdata[2]:.4f})<br>"
                           "selected most often: %{customdata[3]} (%{customdata[4]:.0f}% of runs)<br>"
                           "runs with a selection: %{customdata[5]} / %{customdata[6]}<extra></extra>"),
        ))
    if baseline_score is not None:
        fig.add_trace(go.Scatter(
            x=[budgets[0], budgets[-1]], y=[baseline_score, baseline_score], mode="lines",
            name=f"baseline: {baseline}", line=dict(color="black", width=1.5),
            hovertemplate=f"baseline {html.escape(str(baseline))}: %{{y:.4f}}<extra></extra>"))
    tickvals, ticktext = time_ticks(float(budgets[0]), float(budgets[-1]))
    fig.update_layout(
        title=title, template="plotly_white", height=460, hovermode="closest",
        margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h", y=-0.18),
        xaxis=dict(type="log", title="search budget t_max", tickvals=tickvals, ticktext=ticktext),
        yaxis=dict(title="true score of the selected backbone ε(b̂)"),
    )
    return fig


def write_report(sim, path: str | Path, title: str | None = None) -> Path:
    """Write ``report.html`` for a :class:`simulate.simulation.Simulation`."""
    path = Path(path)
    curves = sim.bsec
    figs: list[tuple[str, go.Figure]] = []
    for ev in sim.evaluators:
        figs.append((f"Strategies with evaluator {ev}", bsec_figure(
            curves.filter(pl.col("evaluator") == ev), "strategy",
            f"Sampling strategies π — evaluator ε̃ = {ev}", sim.baseline, sim.baseline_score,
            sim.budgets)))
    if len(sim.evaluators) > 1:
        for st in sim.strategies:
            figs.append((f"Evaluators with strategy {st}", bsec_figure(
                curves.filter(pl.col("strategy") == st), "evaluator",
                f"Approximate evaluators ε̃ — strategy π = {st}", sim.baseline,
                sim.baseline_score, sim.budgets)))
    s = sim.summary
    weights = s.get("weights", "pretrained")
    banner = ""
    if weights != "pretrained":
        banner = (f'<p class="warn">This oracle was computed with <b>{html.escape(str(weights))}</b> '
                  f'backbone weights (an offline demo): the scores say nothing about real '
                  f'pretrained backbones.</p>')
    rows = "".join(
        f"<tr><td>{html.escape(r['strategy'])}</td><td>{html.escape(r['evaluator'])}</td>"
        f"<td>{_fmt(r['score_1h'])}</td><td>{_fmt(r['score_1d'])}</td>"
        f"<td>{human_time(r['time_to_beat_baseline_s']) if r['time_to_beat_baseline_s'] else '—'}</td>"
        f"<td>{_fmt(r['auc_log'])}</td></tr>" for r in s["strategies"])
    base = s["baseline"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title or 'VIBES BSEC report')}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px}"
        "table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}"
        ".warn{background:#fff3cd;border:1px solid #e0c36b;padding:8px}.fig{margin:18px 0}</style></head><body>",
        f"<h1>{html.escape(title or 'VIBES — Backbone Selection Efficiency Curves')}</h1>",
        banner,
        f"<p>Oracle <b>{html.escape(str(s['dataset']))}</b>: {s['pool_size']} backbones, truth "
        f"evaluator <code>{html.escape(str(s['truth']))}</code>; {s['n_runs']} runs per strategy, "
        f"seed {s['seed']}; {s['budgets']['n']} budgets from {human_time(s['budgets']['min_s'])} to "
        f"{human_time(s['budgets']['max_s'])}. Best possible: "
        f"{html.escape(s['best_possible']['backbone'])} ({s['best_possible']['true_score']:.4f}). "
        f"Baseline: {html.escape(str(base['backbone']))} "
        f"({_fmt(base['true_score']) if base['true_score'] is not None else 'not in the pool'}).</p>",
        "<table><tr><th>strategy π</th><th>evaluator ε̃</th><th>score at 1 h</th>"
        "<th>score at 1 day</th><th>time to beat baseline</th><th>AUC (log time)</th></tr>",
        rows, "</table>",
    ]
    for note in s.get("notes", []):
        parts.append(f"<p class='warn'>{html.escape(note)}</p>")
    for i, (label, fig) in enumerate(figs):
        div = pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), div_id=f"bsec-{i}",
                          config={"displaylogo": False, "responsive": True})
        parts.append(f"<div class='fig' aria-label='{html.escape(label)}'>{div}</div>")
    parts.append("<script>window.VIBES_FIGURES = " + json.dumps(len(figs)) + ";</script>")
    parts.append("</body></html>")
    path.write_text("".join(parts), encoding="utf-8")
    return path


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.4f}"
