"""``league.html``: the answer of a league first, then the regret of every strategy over the budgets and
a regret heatmap (strategies × oracles) per budget (:mod:`simulate.league`)."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import polars as pl

from shared.atomic import write_text
from shared.durations import format_duration
from simulate.league import benchmark_median_regret, league_curves
from simulate.recommend import stop_text
from simulate.report import PALETTE, time_ticks
from simulate.words import LEAGUE_WORDS, words_html  # the words section: one glossary with report.html

STYLE = ("<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px}"
         "table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left;"
         "vertical-align:top}.warn{background:#fff3cd;border:1px solid #e0c36b;padding:8px}.num{white-space:nowrap}"
         "dt{font-weight:600}details{margin:18px 0}summary{cursor:pointer;font-weight:600}"
         "@media (max-width:1000px){td,th{padding:3px 5px}}</style>")

def _label(row: dict, many_k: bool) -> str:
    return f"{row['strategy']} × {row['evaluator']}" + (f" (K={row['workers']})" if many_k else "")


def _share(p) -> str:
    return "—" if p is None else f"{100 * p:.0f}%"


def _runner_up(r: dict) -> str:
    ru = r.get("runner_up")
    return "—" if not ru else f"{_label(ru, False)} ({ru['median_regret']:.4f})"


def answer_table(league) -> str:
    rows = league.answer
    many_k = len(league.settings["workers"]) > 1
    body = "".join(
        f"<tr><td class='num'>{html.escape(format_duration(r['budget_s']))}</td>"
        + (f"<td>{r['workers']}</td>" if many_k else "")
        + f"<td><b>{html.escape(r['strategy'])} × {html.escape(r['evaluator'])}</b>{html.escape(stop_text(r))}</td>"
        f"<td class='num'>{r['median_regret']:.4f}</td><td class='num'>{r['benchmark_median_regret']:.4f}</td>"
        f"<td class='num'>{_share(r['p_beat_benchmark'])}</td><td>{html.escape(_runner_up(r))}</td></tr>"
        for r in rows)
    return ("<h2 id='answer'>Which strategy to use on a dataset not seen</h2>"
            "<p>Per budget, the strategy × evaluator with the lowest median regret across the "
            f"{len(league.oracles)} oracles, against taking each oracle's benchmark pick without any search. A "
            "search may stop before its budget and keep what it found: 'stop at' says when it is at its best, so "
            "the answer never gets worse with more budget.</p>"
            "<table id='league-answer'><tr><th>budget</th>" + ("<th>workers K</th>" if many_k else "")
            + "<th>use</th><th>median regret</th><th>benchmark pick's median regret</th>"
            "<th>beats the benchmark pick</th><th>runner-up (median regret)</th></tr>" + body + "</table>")


def regret_figure(table: pl.DataFrame, budgets: np.ndarray) -> go.Figure:
    """Median regret across the oracles against the budget, one line per strategy × evaluator × K."""
    many_k = table.get_column("workers").n_unique() > 1
    agg = league_curves(table).sort("strategy", "evaluator", "workers", "budget_s")
    bench = benchmark_median_regret(table)
    fig = go.Figure()
    keys = agg.select("strategy", "evaluator", "workers").unique(maintain_order=True).rows(named=True)
    k_min = min(r["workers"] for r in keys)
    for i, key in enumerate(keys):
        part = agg.filter((pl.col("strategy") == key["strategy"]) & (pl.col("evaluator") == key["evaluator"])
                          & (pl.col("workers") == key["workers"]))
        fig.add_trace(go.Scatter(x=part.get_column("budget_s").to_list(), y=part.get_column("median_regret").to_list(),
                                 mode="lines", name=_label(key, many_k),
                                 line={"color": PALETTE[i % len(PALETTE)],
                                       "dash": "solid" if key["workers"] == k_min else "dot"}))
    fig.add_hline(y=bench, line={"color": "black", "dash": "dash"},
                  annotation_text=f"benchmark pick, no search ({bench:.4f})", annotation_position="top right")
    vals, text = time_ticks(float(budgets[0]), float(budgets[-1]))
    fig.update_layout(title="Median regret across the oracles (lower is better)", height=460,
                      xaxis={"type": "log", "tickvals": vals, "ticktext": text, "title": "budget t_max"},
                      yaxis={"title": "median regret (no selection yet: scored 0)", "rangemode": "tozero"},
                      margin={"l": 60, "r": 20, "t": 50},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def heatmap_figure(table: pl.DataFrame, budgets: list[float]) -> go.Figure:
    """Regret per strategy × evaluator × K (rows) and oracle (columns), one slider step per budget."""
    many_k = table.get_column("workers").n_unique() > 1
    at = table.filter(pl.col("budget_s").is_in(budgets)).with_columns(
        pl.col("regret").fill_null(pl.col("best_possible")))
    oracles = at.get_column("oracle").unique(maintain_order=True).to_list()
    keys = at.select("strategy", "evaluator", "workers").unique(maintain_order=True).rows(named=True)
    names = [_label(k, many_k) for k in keys]
    label = pl.concat_str(pl.col("strategy"), pl.lit(" × "), pl.col("evaluator"),
                          *([pl.lit(" (K="), pl.col("workers").cast(pl.String), pl.lit(")")] if many_k else []))
    zs = []
    for b in budgets:
        wide = (at.filter(pl.col("budget_s") == b).with_columns(label.alias("_k"))
                .pivot(on="oracle", index="_k", values="regret"))
        wide = pl.DataFrame({"_k": names}).join(wide, on="_k", how="left", maintain_order="left")
        zs.append(wide.select([pl.col(o) if o in wide.columns else pl.lit(None, pl.Float64).alias(o)
                               for o in oracles]).to_numpy().astype(np.float64))
    finite = [z[np.isfinite(z)] for z in zs]
    zmax = max((float(f.max()) for f in finite if f.size), default=1.0)
    head = oracles[0].split(":")[0] + ":"
    shown = [o.removeprefix(head) for o in oracles] if all(o.startswith(head) for o in oracles) else oracles
    fig = go.Figure(go.Heatmap(z=zs[-1], x=shown, y=names, zmin=0, zmax=zmax, colorscale="Reds",
                               colorbar={"title": "regret"}, hovertemplate="%{y}<br>%{x}<br>regret %{z:.4f}"
                                                                             "<extra></extra>"))
    steps = [{"label": format_duration(b), "method": "restyle", "args": [{"z": [z]}]} for b, z in zip(budgets, zs)]
    fig.update_layout(title="Regret per oracle (rows: strategy × evaluator; slide the budget)",
                      height=max(360, 26 * len(names) + 220), margin={"l": 220, "r": 20, "t": 50, "b": 140},
                      xaxis={"tickangle": -45}, yaxis={"automargin": True},
                      sliders=[{"active": len(steps) - 1, "steps": steps, "y": -0.45,
                                "currentvalue": {"prefix": "budget "}}])
    return fig


def quality_table(league) -> str:
    q = league.quality_summary()
    if q is None or q.height == 0:
        return ""
    f = lambda x, fmt="+.3f": "—" if x is None else format(x, fmt)  # noqa: E731
    body = "".join(f"<tr><td>{html.escape(r['spec'])}</td><td>{html.escape(r['kind'])}</td>"
                   f"<td class='num'>{f(r['kendall_tau_b'])}</td><td class='num'>{f(r['spearman_rho'])}</td>"
                   f"<td class='num'>{f(r['weighted_tau'])}</td><td class='num'>{f(r['top1_regret'], '.4f')}</td>"
                   f"<td>{r['n_oracles']}</td></tr>" for r in q.to_dicts())
    return ("<h2 id='quality'>How well each evaluator and prior ranks the backbones</h2><p>Medians over the oracles "
            "of the rank agreement with each oracle's truth (Kendall τ-b, Spearman ρ, weighted τ: swaps near the "
            "top count most) and the top-1 regret of the spec's pick; the <code>meta</code> prior is leave-one-out "
            "(league_quality.parquet has every oracle's row).</p><table id='league-quality'><tr><th>spec</th>"
            "<th>kind</th><th>τ-b</th><th>ρ</th><th>τ<sub>w</sub></th><th>top-1 regret</th><th>oracles</th></tr>"
            + body + "</table>")


def write_league_report(league, path: str | Path) -> Path:
    path = Path(path)
    s = league.settings
    head = (f"<p>{len(league.oracles)} oracles, {s['runs']} runs per strategy × evaluator × K, seed {s['seed']}, "
            f"workers {', '.join(map(str, s['workers']))}; {league.budgets.size} budgets from "
            f"{format_duration(float(league.budgets[0]))} to {format_duration(float(league.budgets[-1]))}.</p>")
    costs = "".join(f"<p class='warn cost-model'>Costs {html.escape(m)}</p>" for m in league.cost_models)
    words = words_html(LEAGUE_WORDS)
    bench = league.benchmarks()
    btable = ("<details><summary>Each oracle's benchmark pick</summary><table><tr><th>oracle</th>"
              "<th>benchmark pick</th><th>its true score</th><th>best possible</th></tr>" + "".join(
                  f"<tr><td>{html.escape(r['oracle'])}</td><td>{html.escape(r['benchmark_backbone'])}</td>"
                  f"<td class='num'>{r['benchmark_score']:.4f}</td><td class='num'>{r['best_possible']:.4f}</td></tr>"
                  for r in bench.iter_rows(named=True)) + "</table></details>")
    notes = "".join(f"<p class='warn'>{html.escape(n)}</p>" for n in league.notes)
    figs = [regret_figure(league.table, league.budgets), heatmap_figure(league.table, league.answer_budgets)]
    divs = "".join(pio.to_html(f, full_html=False, include_plotlyjs=(i == 0), div_id=f"league-{i}",
                               config={"displaylogo": False, "responsive": True}) for i, f in enumerate(figs))
    doc = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>VIBES league</title>" + STYLE + "</head><body>"
           "<h1>VIBES — a league across datasets</h1>" + head + costs + answer_table(league) + divs
           + quality_table(league) + btable
           + words + notes + "</body></html>")
    return write_text(path, doc)
