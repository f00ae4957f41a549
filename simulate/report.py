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
import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import polars as pl

from shared.atomic import write_text
from shared.durations import ROUND_SECONDS, format_duration
from simulate.pareto import Deployment, pareto_front
from simulate.recommend import (
    choices_of,
    iqr_text,
    kept_note,
    lead_changes,
    previous_row,
    row_label,
    stop_text,
    tie_summary,
    worse_text,
)
from simulate.words import REPORT_WORDS, words_html
from simulate.workers import worker_label

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f"]
MAX_TICKS = 8


def time_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Ticks of a log time axis from ``lo`` to ``hi`` seconds: the round durations between them
    (:data:`shared.durations.ROUND_SECONDS`), at most :data:`MAX_TICKS`, thinned so that neighbours are
    at least 2, 4, 8 … times apart (the first kept, and the last where it stands at least twice the tick before
    it); a narrow axis gets its two ends."""
    inside = [v for v in ROUND_SECONDS if lo <= v <= hi]
    ticks, apart = inside, 1.0
    while len(ticks) > MAX_TICKS:
        apart *= 2
        ticks = []
        for v in inside:
            if not ticks or v >= ticks[-1] * apart:
                ticks.append(v)
    if inside and ticks and inside[-1] >= 2 * ticks[-1]:  # the axis's right end keeps a label
        ticks.append(inside[-1])
    if len(ticks) < 2:
        ticks = [lo, hi]
    return ticks, [format_duration(v) for v in ticks]


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def _band(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[list, list]:
    """The 25–75 % band as closed polygons, one per stretch of budgets where both quartiles are
    finite (None between them): no band is drawn where a quartile is null, and none is bridged
    across a gap (``fill='tonexty'`` over NaN gaps joins the stretches with stray triangles)."""
    ok = np.isfinite(lo) & np.isfinite(hi)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(np.int8), [0]])))
    bx: list = []
    by: list = []
    for a, b in zip(edges[::2], edges[1::2]):  # one polygon per stretch, not per budget
        bx += [*x[a:b], *x[a:b][::-1], None]
        by += [*hi[a:b], *lo[a:b][::-1], None]
    return bx, by


DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def bsec_figure(curves: pl.DataFrame, by: str, title: str, baseline: str | None,
                baseline_score: float | None, budgets: np.ndarray) -> go.Figure:
    """Curves of one figure; ``by`` is the column whose values become separate curves (one colour
    each); with a ``workers`` column each worker count K is a curve of its own, one dash per K."""
    fig = go.Figure()
    keys = curves.get_column(by).unique(maintain_order=True).to_list()
    ks = sorted(curves.get_column("workers").unique().to_list()) if "workers" in curves.columns else [None]
    groups = [by] + (["workers"] if ks != [None] else [])
    for key, part in curves.group_by(groups, maintain_order=True):
        value, k = (key[0], key[1]) if len(groups) == 2 else (key[0] if isinstance(key, tuple) else key, None)
        i = keys.index(value)
        name = str(value) if k is None else f"{value} · {worker_label(k)}"
        color = PALETTE[i % len(PALETTE)]
        dash = DASHES[ks.index(k) % len(DASHES)]
        part = part.sort("budget_s")
        x = part.get_column("budget_s").to_numpy()
        q25 = part.get_column("q25").to_numpy()
        q75 = part.get_column("q75").to_numpy()
        bx, by = _band(x, q25, q75)
        fig.add_trace(go.Scatter(x=bx, y=by, mode="lines", line=dict(width=0), fill="toself",
                                 fillcolor=_rgba(color, 0.18), hoverinfo="skip", showlegend=False,
                                 legendgroup=name))
        custom = np.column_stack([
            [format_duration(v) for v in x], q25, q75,
            part.get_column("mode_backbone").fill_null("— none —").to_list(),
            part.get_column("mode_share").to_numpy() * 100,
            part.get_column("n_selected").to_numpy(), part.get_column("n_runs").to_numpy(),
        ])
        fig.add_trace(go.Scatter(
            x=x, y=part.get_column("median").to_numpy(), mode="lines", name=str(name),
            line=dict(color=color, width=2.2, dash=dash), legendgroup=name, customdata=custom,
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


def write_report(sim, path: str | Path, title: str | None = None, quality=None, deployment=None) -> Path:
    """Write ``report.html`` for a :class:`simulate.simulation.Simulation`; ``quality`` (a
    :class:`simulate.quality.Quality`) adds the section on how good each evaluator is,
    ``deployment`` (a :class:`Deployment`) the Pareto view."""
    figs = _figures(sim)
    s = sim.summary
    parts = [_head(title), _oracle_header(s), *_banners(s)]
    parts.append(recommendation_html(s.get("recommendation"), choices_of(s)))
    parts.append(worse_html(s.get("worse_with_budget") or []))
    worse = {worse_text(w) for w in s.get("worse_with_budget") or []}
    for note in s.get("notes", []):
        if not (s.get("limits") and note.startswith("deployment limits")) and note not in worse:
            parts.append(f"<p class='warn'>{html.escape(note)}</p>")
    for i, (label, fig) in enumerate(figs):
        div = pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), div_id=f"bsec-{i}",
                          config={"displaylogo": False, "responsive": True})
        parts.append(f"<div class='fig' aria-label='{html.escape(label)}'>{div}</div>")
    if deployment is not None:
        parts.append(deployment_section(deployment, sim))
    if quality is not None:
        parts.append(quality_section(quality))
    parts.append(_summary_table(s))
    parts.append(words_html(REPORT_WORDS))
    parts.append("<script>window.VIBES_FIGURES = " + json.dumps(len(figs)) + ";</script>")
    parts.append("</body></html>")
    return write_text(path, "".join(parts))


def _figures(sim) -> list[tuple[str, go.Figure]]:
    """The BSECs: per evaluator every strategy, and with several evaluators per strategy every evaluator."""
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
    return figs


def _head(title: str | None) -> str:
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title or 'VIBES BSEC report')}</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px}"
            "table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left;"
            "vertical-align:top}.warn{background:#fff3cd;border:1px solid #e0c36b;padding:8px}.fig{margin:18px 0}"
            "tr.tied td{color:#555;font-size:90%;padding-top:0}tr:has(+tr.tied) td{border-bottom:none}"
            ".num{white-space:nowrap}.change{font-weight:600}details{margin:18px 0}"
            "summary{cursor:pointer;font-weight:600}dl.words dt{font-weight:600}"
            "@media (max-width:1000px){td,th{padding:3px 5px}}</style>"
            "</head><body>"
            f"<h1>{html.escape(title or 'VIBES — Backbone Selection Efficiency Curves')}</h1>")


def _oracle_header(s: dict) -> str:
    """The demo banner (random weights) and the line saying which oracle, runs, budgets and baseline."""
    weights = s.get("weights", "pretrained")
    banner = "" if weights == "pretrained" else (
        f'<p class="warn">This oracle was computed with <b>{html.escape(str(weights))}</b> '
        f'backbone weights (an offline demo): the scores say nothing about real pretrained backbones.</p>')
    base = s["baseline"]
    return (banner + f"<p>Oracle <b>{html.escape(str(s['dataset']))}</b>: {s['pool_size']} backbones, truth "
            f"evaluator <code>{html.escape(str(s['truth']))}</code>; {s['n_runs']} runs per strategy, "
            f"seed {s['seed']}; {s['budgets']['n']} budgets from {format_duration(s['budgets']['min_s'])} to "
            f"{format_duration(s['budgets']['max_s'])}. Best possible: "
            f"{html.escape(s['best_possible']['backbone'])} ({s['best_possible']['true_score']:.4f}). "
            f"Baseline: {html.escape(str(base['backbone']))} "
            f"({_fmt(base['true_score']) if base['true_score'] is not None else 'not in the pool'}).</p>")


def _banners(s: dict) -> list[str]:
    """What the numbers below rest on: a declared cost model, deployment limits, another device's costs."""
    out = []
    if s.get("cost_model"):  # a declared cost model is said wherever its oracle is used
        out.append(f"<p class='cost-model warn'>Costs {html.escape(str(s['cost_model']))}</p>")
    if s.get("limits"):
        lim = s["limits"]
        out.append(f"<p class='limits'>Deployment limits: <b>{html.escape(lim['described'])}</b> — "
                   f"{lim['left_out']} of {lim['pool_before']} backbones are outside them and never evaluated; "
                   f"the best possible is the best within.</p>")
    if s.get("costs"):
        c = s["costs"]
        err = (f"leave-one-out median |log(predicted/actual)| {c['loo_error']:.3f} (×{math.exp(c['loo_error']):.3f}), "
               f"the constant ratio's {c['loo_error_constant']:.3f}" if c.get("loo_error") is not None
               and c.get("loo_error_constant") is not None else "no leave-one-out error (one sampled backbone)")
        out.append(f"<p class='warn'>Costs for <b>{html.escape(str(c.get('device') or 'the target device'))}</b>, "
                   f"predicted from {c['n_sample']} backbones timed there ({html.escape(str(c.get('source')))}): "
                   f"<code>{html.escape(c['formula'])}</code>; {err}. The budgets below are that device's "
                   f"time (costs.parquet: per backbone the oracle's and the predicted seconds).</p>")
    return out


def _summary_table(s: dict) -> str:
    """Every strategy × evaluator's score at 1 h and 1 day, time to beat the baseline and AUC, folded."""
    k_col = "workers" in s
    rows = "".join(
        f"<tr><td>{html.escape(r['strategy'])}</td><td>{html.escape(r['evaluator'])}</td>"
        + (f"<td>{r['workers']}</td>" if k_col else "")
        + f"<td>{_fmt(r['score_1h'])}</td><td>{_fmt(r['score_1d'])}</td>"
        f"<td>{format_duration(r['time_to_beat_baseline_s']) if r['time_to_beat_baseline_s'] else '—'}</td>"
        f"<td>{_fmt(r['auc_log'])}</td></tr>" for r in s["strategies"])
    return "".join([
        f"<details id='summary-table'><summary>Every strategy × evaluator ({len(s['strategies'])} rows): score at "
        f"1 h and 1 day, time to beat the baseline, AUC</summary>",
        "<table><tr><th>strategy π</th><th>evaluator ε̃</th>" + ("<th>workers K</th>" if k_col else "")
        + "<th>score at 1 h</th><th>score at 1 day</th><th>time to beat baseline</th><th>AUC (log time)</th></tr>",
        rows, "</table></details>"])


# ------------------------------------------------------------------------ deployment section
def deployment_section(d: Deployment, sim) -> str:
    """The Pareto scatter, the best under each limit, and a strategy's BSEC under the limits."""
    pts = d.points.filter(pl.col(d.cost).is_not_null())
    front = pts.filter(pareto_front(pts, d.cost)).sort(d.cost)  # a staircase, cheapest first
    fig = go.Figure()
    for within, name, color in ((True, "within the limits", PALETTE[0]), (False, "outside the limits", "#b0b0b0")):
        part = pts.filter(pl.col("within") == within)
        if part.height:
            fig.add_trace(go.Scatter(
                x=part.get_column(d.cost), y=part.get_column("true_score"), mode="markers", name=name,
                marker=dict(size=6, color=color, opacity=0.7), customdata=part.get_column("backbone"),
                hovertemplate=f"<b>%{{customdata}}</b><br>{d.cost} %{{x:.3g}} {d.unit}<br>true score %{{y:.4f}}"
                              "<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=front.get_column(d.cost), y=front.get_column("true_score"), mode="lines+markers", name="Pareto front",
        line=dict(shape="hv", color=PALETTE[1], width=2), marker=dict(size=8, color=PALETTE[1]),
        customdata=front.get_column("backbone"),
        hovertemplate=f"<b>%{{customdata}}</b> (on the front)<br>{d.cost} %{{x:.3g}} {d.unit}<br>"
                      "true score %{y:.4f}<extra></extra>"))
    for b in d.best:
        fig.add_vline(x=b["limit"], line=dict(color="#888", dash="dot", width=1))
    fig.update_layout(title=f"True score against {d.cost} ({d.unit}); the Pareto front", template="plotly_white",
                      height=460, hovermode="closest", margin=dict(l=60, r=20, t=60, b=50),
                      legend=dict(orientation="h", y=-0.18),
                      xaxis=dict(type="log", title=f"{d.cost} ({d.unit}), log scale"),
                      yaxis=dict(title="true score ε"))
    rows = []
    for b in d.best:
        r = d.rows.get(b["limit"], {})
        rows.append(f"<tr><td>≤ {b['limit']:g} {html.escape(d.unit)}</td><td>{b['n_within']}</td>"
                    f"<td>{html.escape(str(b['backbone']))}</td><td>{_fmt(b['true_score'])}</td>"
                    f"<td>{_fmt(r.get('median_at'))}</td></tr>")
    curves = []
    if d.curves.height:
        cfig = go.Figure()
        for i, (key, part) in enumerate(d.curves.group_by("limit", maintain_order=True)):
            t = key[0] if isinstance(key, tuple) else key
            part = part.sort("budget_s")
            label = "no limit on " + d.cost if t is None else f"≤ {t:g} {d.unit} ({part['pool_within'][0]} backbones)"
            cfig.add_trace(go.Scatter(x=part.get_column("budget_s"), y=part.get_column("median"), mode="lines",
                                      name=label, line=dict(color=PALETTE[i % len(PALETTE)], width=2.2),
                                      hovertemplate=f"{html.escape(label)}<br>%{{x:.3g}} s: median %{{y:.4f}}"
                                                    "<extra></extra>"))
        tickvals, ticktext = time_ticks(float(sim.budgets[0]), float(sim.budgets[-1]))
        cfig.update_layout(title=f"{d.strategy} × {d.evaluator} under each limit on {d.cost}",
                           template="plotly_white", height=420, margin=dict(l=60, r=20, t=60, b=50),
                           legend=dict(orientation="h", y=-0.2),
                           xaxis=dict(type="log", title="search budget t_max", tickvals=tickvals, ticktext=ticktext),
                           yaxis=dict(title="median true score of the selection"))
        curves.append("<div class='fig'>" + pio.to_html(cfig, full_html=False, include_plotlyjs=False,
                                                        div_id="limits-bsec", config={"displaylogo": False}) + "</div>")
    return "".join([
        "<h2 id='deployment'>Deployment: score against cost</h2>",
        f"<p>Every backbone's true score against its {html.escape(d.cost)}; the Pareto front joins the backbones "
        f"no other beats on both. The table gives, per limit, the best backbone within it and what "
        f"<b>{html.escape(d.strategy)} × {html.escape(d.evaluator)}</b> (the recommendation at "
        f"{format_duration(d.budget_s)}) finds in {format_duration(d.budget_s)} when the search is restricted to "
        f"it (<code>--max-…</code>): the median true score of its selection; the chart below, its BSEC under each "
        f"limit.</p>",
        "<div class='fig'>" + pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id="pareto",
                                          config={"displaylogo": False, "responsive": True}) + "</div>",
        ("<table id='limits-table'><tr><th>limit</th><th>backbones within</th><th>best possible</th>"
         f"<th>its true score</th><th>the strategy's median at {format_duration(d.budget_s)}</th></tr>"
         + "".join(rows) + "</table>") if rows else
        f"<p>No limit to show: every backbone has the same {html.escape(d.cost)}.</p>",
        *curves,
    ])


# --------------------------------------------------------------------------- quality section
_UNKNOWN_COLOR = "#b0b0b0"
_LOG_AXES = ("params_m", "gmacs")  # static baselines spanning orders of magnitude
_SORT_JS = """<script>
document.querySelectorAll('table.sortable th').forEach(function (th, i) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0], asc = th.dataset.dir !== 'asc';
    th.parentNode.querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = asc ? 'asc' : 'desc';
    function key(row) {
      var v = row.cells[i].dataset.v;
      return (v === undefined || v === '') ? null : (isNaN(Number(v)) ? v : Number(v));
    }
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === null || y === null) { return (x === null) - (y === null); }  // nulls last
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
    }).forEach(function (row) { body.appendChild(row); });
  });
});
</script>"""


def _pretrain_colors(points: pl.DataFrame) -> dict[str, str]:
    """Colour of each pretraining dataset: the 9 most frequent get the palette, the rest
    'other', unknown (null) grey."""
    per = (points.unique("backbone").group_by("pretrain_dataset").len()
           .filter(pl.col("pretrain_dataset").is_not_null())
           .sort(["len", "pretrain_dataset"], descending=[True, False]))
    names = per.get_column("pretrain_dataset").to_list()
    colors = {n: PALETTE[i] for i, n in enumerate(names[:9])}
    if len(names) > 9:
        colors["other"] = PALETTE[9]
    colors["unknown"] = _UNKNOWN_COLOR
    return colors


def quality_figure(spec: str, row: dict, points: pl.DataFrame, colors: dict[str, str]) -> go.Figure:
    """ε̃ of one spec against the true score ε, one trace per pretraining dataset; the spec's
    pick (its argmax, every tied backbone) ringed."""
    pts = points.with_columns(
        pl.when(pl.col("pretrain_dataset").is_null()).then(pl.lit("unknown"))
        .when(pl.col("pretrain_dataset").is_in(list(colors))).then(pl.col("pretrain_dataset"))
        .otherwise(pl.lit("other")).alias("_group"))
    fig = go.Figure()
    for group, color in colors.items():
        part = pts.filter(pl.col("_group") == group)
        if part.height == 0:
            continue
        fig.add_trace(go.Scatter(
            x=part.get_column("true_score").to_numpy(), y=part.get_column("eps_tilde").to_numpy(),
            mode="markers", name=group, text=part.get_column("backbone").to_list(),
            marker=dict(color=color, size=6, opacity=0.65, line=dict(width=0)),
            hovertemplate=(f"<b>%{{text}}</b><br>ε̃ {html.escape(spec)} = %{{y:.4g}}<br>true score ε = "
                           f"%{{x:.4f}}<br>pretraining: {html.escape(group)}<extra></extra>")))
    top = pts.filter(pl.col("eps_tilde") == pts.get_column("eps_tilde").max())
    if top.height <= 10:  # a ring on hundreds of tied picks would hide the points
        fig.add_trace(go.Scatter(
            x=top.get_column("true_score").to_numpy(), y=top.get_column("eps_tilde").to_numpy(),
            mode="markers", name="pick", text=top.get_column("backbone").to_list(), hoverinfo="skip",
            marker=dict(size=13, color="rgba(0,0,0,0)", line=dict(color="black", width=1.5))))
    title = (f"{html.escape(spec)}: τ-b {_fmt(row['kendall_tau_b'])}, ρ {_fmt(row['spearman_rho'])}, "
             f"n {row['n']}")
    log = spec in _LOG_AXES and pts.height and float(pts.get_column("eps_tilde").min()) > 0
    fig.update_layout(
        title=dict(text=title, font=dict(size=13)), template="plotly_white", height=330,
        margin=dict(l=55, r=15, t=40, b=45), showlegend=False, hovermode="closest",
        xaxis=dict(title="true score ε"),
        yaxis=dict(title=f"ε̃ = {spec}", type="log" if log else "linear", tickformat="~g",
                   dtick="D2" if log else None))  # log: 1, 2, 5, 10, ... in plain numbers
    return fig


def quality_section(q) -> str:
    """The quality table (sortable) and one scatter per spec, as HTML (plotly.js already loaded)."""
    t = q.table

    def cell(value, text=None):
        v = "" if value is None else html.escape(str(value))
        shown = text if text is not None else "—" if value is None else str(value)
        return f"<td data-v='{v}'>{html.escape(shown)}</td>"

    def top5(p):
        return "—" if p is None else "yes" if p == 1.0 else "no" if p == 0.0 else f"p = {p:.2g}"

    rows = []
    for r in t.iter_rows(named=True):
        pick = "" if r["pick"] is None else r["pick"] + (f" (+{r['n_pick_ties'] - 1} tied)"
                                                        if r["n_pick_ties"] > 1 else "")
        rows.append(
            f"<tr class='qrow' data-kind='{html.escape(r['kind'])}'>" + cell(r["spec"]) + cell(r["kind"])
            + cell(r["kendall_tau_b"], _fmt(r["kendall_tau_b"])) + cell(r["spearman_rho"], _fmt(r["spearman_rho"]))
            + cell(r["weighted_tau"], _fmt(r["weighted_tau"]))
            + cell(r["top1_regret"], _fmt(r["top1_regret"])) + cell(r["best_in_top5"], top5(r["best_in_top5"]))
            + cell(r["median_seconds"], "—" if r["median_seconds"] is None else format_duration(r["median_seconds"]))
            + cell(r["total_seconds"], "—" if r["total_seconds"] is None else format_duration(r["total_seconds"]))
            + cell(r["n"], f"{r['n']} / {r['n_pool']}") + cell(pick or None, pick or "—") + "</tr>")
    ceiling = t.filter(pl.col("kind") == "noise ceiling")
    ceiling_text = ("There is no noise ceiling: the truth has one seed."
                    if ceiling.height == 0 else
                    f"Noise ceiling: two seeds of the truth ({html.escape(ceiling['spec'][0])}) agree with "
                    f"τ-b {_fmt(ceiling['kendall_tau_b'][0])} (ρ {_fmt(ceiling['spearman_rho'][0])}) over "
                    f"{ceiling['n'][0]} backbones.")
    parts = [  # the style comes first: each figure is drawn (and sized) as its script is parsed
        "<style>.qgrid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:8px}"
        "#quality-table{font-size:0.92em}#quality-table td{white-space:nowrap}"
        "#quality-table td:last-child{white-space:normal;overflow-wrap:anywhere}table.sortable th{cursor:pointer}"
        "tr[data-kind='noise ceiling']{font-style:italic}</style>",
        "<h2 id='quality'>How good is each evaluator?</h2>",
        f"<p>How well each evaluator spec of the oracle, and each static baseline, ranks the pool "
        f"like the truth <code>{html.escape(q.truth)}</code> (true score ε = mean over seeds at "
        f"fraction 1.0), and what it costs. {ceiling_text} Click a heading to sort.</p>",
        "<details><summary>How to read the table</summary><ul>"
        "<li>ε̃ of a spec is the mean over seeds of its ok rows; a backbone with no ok row is left out "
        "of that spec's figures (<i>n / pool</i>).</li>"
        "<li><i>τ-b</i>: Kendall's tau-b; <i>ρ</i>: Spearman's rho (average ranks for ties); 1 = the "
        "truth's ranking, 0 = unrelated.</li>"
        "<li><i>τ<sub>w</sub></i>: weighted Kendall tau, hyperbolic weights on rank (scipy's "
        "<code>weightedtau</code>; the figure transferability papers publish): swaps near the top count "
        "most.</li>"
        "<li><i>top-1 regret</i>: best ε minus ε of the spec's pick (its argmax; the mean over the "
        "backbones tied for it, as a search meeting them in random order would pick).</li>"
        "<li><i>best in top 5</i>: whether a truly best backbone is among the spec's 5 highest "
        "(p = its chance when ties cross the 5th place).</li>"
        "<li><i>median s / backbone</i>: what one evaluation of one backbone costs (its mean over "
        "seeds); <i>total s</i>: evaluating every compared backbone once.</li>"
        "<li>Static baselines (published metadata) read <i>bigger is better</i> and cost nothing.</li>"
        "<li>The noise ceiling compares two single seeds of the truth; a spec averaged over several "
        "seeds can exceed it.</li></ul></details>",
        "<table class='sortable' id='quality-table'><thead><tr><th>spec</th><th>kind</th><th>τ-b</th>"
        "<th>ρ</th><th>τ<sub>w</sub></th><th>top-1 regret</th><th>best in top 5</th><th>median s / backbone</th>"
        "<th>total s</th><th>n / pool</th><th>pick</th></tr></thead><tbody>",
        "".join(rows), "</tbody></table>",
    ]
    for note in q.notes:
        parts.append(f"<p class='warn'>{html.escape(note)}</p>")
    colors = _pretrain_colors(q.points)
    present = set(q.points.get_column("pretrain_dataset").fill_null("unknown").to_list())
    shown = {n: c for n, c in colors.items() if n in present or n == "other"}
    parts.append("<p class='key'>Scatter colour = pretraining data: " + " ".join(
        f"<span style='color:{c}'>&#9679;</span>&nbsp;{html.escape(n)}" for n, c in shown.items())
        + "; a black ring marks each spec's pick (unless more than 10 tie for it).</p><div class='qgrid'>")
    figs = t.filter(pl.col("kind") != "noise ceiling")
    for i, r in enumerate(figs.iter_rows(named=True)):
        fig = quality_figure(r["spec"], r, q.points.filter(pl.col("spec") == r["spec"]), colors)
        div = pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=f"quality-{i}",
                          config={"displaylogo": False, "responsive": True, "displayModeBar": False})
        parts.append(f"<div class='qfig' aria-label='quality of {html.escape(r['spec'])}'>{div}</div>")
    parts.append("</div>")
    parts.append(_SORT_JS)
    parts.append(f"<script>window.VIBES_QUALITY = {figs.height};</script>")
    return "".join(parts)


_REC_STYLE = (
    "<style>#recommendation-table{width:100%;table-layout:fixed}#recommendation-table col.budget{width:11%}"
    "#recommendation-table col.choice{width:30%}#recommendation-table col.median{width:19%}"
    "#recommendation-table col.pick{width:40%}#recommendation-table .nm{white-space:nowrap}"
    "#recommendation-table .bb{overflow-wrap:anywhere}#recommendation-table .sub{color:#555;font-size:88%}"
    "#recommendation-table .mark{color:#a33;font-size:85%;font-weight:600}"
    "#recommendation-table tr.change>td{background:#fdf3f3}</style>")


def _names(text: str) -> str:
    """``a-b × c`` as HTML: each name kept whole (``complexity-up`` never breaks at its hyphen), the
    line free to break around the ×."""
    return " × ".join(f"<span class='nm'>{html.escape(part)}</span>" for part in text.split(" × "))


def _backbone(name) -> str:
    """A backbone name that wraps at its dots and underscores, not mid-word, when the column is narrow."""
    text = html.escape(str(name))
    for sep in (".", "_"):
        text = text.replace(sep, sep + "<wbr>")
    return f"<span class='bb'>{text}</span>"


def _rec_row(r: dict, before: dict | None, choices) -> str:
    """One budget's row (and its row of ties) of the recommendation table."""
    change = lead_changes(r, before)
    when = html.escape(row_label(r)) + ("<div class='mark'>← the best choice changes</div>" if change else "")
    if r.get("strategy") is None:
        return (f"<tr><td>{when}</td><td colspan='3'>none — "
                f"{html.escape(r.get('reason', 'no selection'))}</td></tr>")
    head, rest, broad = tie_summary(r, choices)
    kept = None if broad else kept_note(r, before)
    own = f"{r['strategy']} × {r['evaluator']}"
    subs = ([f"figures of {_names(own)}"] if head != own else []) + (
        [html.escape(stop_text(r).removeprefix(", "))] if stop_text(r) else [])
    choice = f"<b>{_names(head)}</b>" + "".join(f"<div class='sub'>{x}</div>" for x in subs)
    tie = ("<tr class='tied'><td></td><td colspan='3'>" + (html.escape(kept) + "; " if kept else "")
           + "also tied within the noise: " + "; ".join(_names(x) for x in rest[:4])
           + (f"; and {len(rest) - 4} more" if len(rest) > 4 else "") + "</td></tr>") if rest else ""
    cls = " class='change'" if change else ""
    return (f"<tr{cls}><td>{when}</td><td>{choice}</td>"
            f"<td><span class='num'>{_fmt(r['median'])}</span>"
            f"<div class='sub'>{html.escape(iqr_text(r['q25'], r['q75']))}</div></td>"
            f"<td>{_backbone(r['backbone'])}<div class='sub'>{100 * r['backbone_share']:.0f}% of runs</div></td></tr>"
            + tie)


def worse_html(worse: list[dict]) -> str:
    """One box naming every strategy × evaluator whose median falls with more budget (summary.json
    ``worse_with_budget``), each with its fall and its evaluator's favourite."""
    if not worse:
        return ""
    items = "".join(f"<li>{html.escape(worse_text(w))}</li>" for w in worse)
    return (f"<div class='warn' id='worse-with-budget'><b>{len(worse)} strategy × evaluator choice"
            f"{'s get' if len(worse) > 1 else ' gets'} worse with more budget</b> (more backbones evaluated, "
            f"and the evaluator's favourite is not the best; the recommendation above stops such a search "
            f"early):<ul>{items}</ul></div>")


def recommendation_html(rows, choices=None) -> str:
    """The answer (summary.json ``recommendation``): per budget, the strategy × evaluator to run, its
    median (IQR) and most frequent pick, the choices tied with it within the noise (summarised as
    ``any sampler × mlp@0.03`` where every strategy replayed with that evaluator ties:
    :func:`simulate.recommend.tie_summary`; ``choices``, every strategy × evaluator replayed), and the
    rows whose leading choice differs from the row before.  Laid out to fit a laptop's width: fixed
    columns, names wrapped between words, the backbone (the answer) always in view."""
    if not rows:
        return ""
    body = "".join(_rec_row(r, previous_row(rows, i), choices) for i, r in enumerate(rows))
    n = next((r["n_runs"] for r in rows if r.get("n_runs")), None)
    return (_REC_STYLE + "<h2 id='recommendation'>Recommendation: what to run at your budget</h2><p>For each "
            "budget t_max (round durations between the cheapest evaluation and the exhaustive time, the budgets "
            "where the best choice changes, and any asked with --recommend-at), the strategy π × evaluator ε̃ "
            f"whose selection has the highest median true score over the {n} runs, its IQR (25th–75th "
            "percentile) and the backbone it selects most often. Choices whose medians differ by less than twice "
            "the standard error of the difference are listed as tied (<i>any sampler × ε̃</i> when every "
            "strategy run with that evaluator is); the row keeps leading with the choice of the budget before "
            "while it is still tied (a tie is not a flip), and '← the best choice changes' marks a row that "
            "leads with another choice than the row above. A search run for a budget can stop earlier and keep "
            "what it has found: each choice is valued at its best budget so far, and 'stop at' says when that "
            "was, so the answer never gets worse with more budget.</p>"
            "<table id='recommendation-table'><colgroup><col class='budget'><col class='choice'>"
            "<col class='median'><col class='pick'></colgroup><tr><th>budget</th><th>strategy π × evaluator ε̃"
            "</th><th>median (IQR)</th><th>selected most often</th></tr>" + body + "</table>")


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.4f}"
