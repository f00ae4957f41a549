"""``simulate compare OUT_DIR...``: one interactive report from several ``simulate`` outputs.

Each OUT_DIR is a folder ``simulate --out`` wrote (``summary.json`` and ``bsec.parquet``); they may
come from different oracles, datasets and strategy sets.  The report (one self-contained HTML
file, Plotly, no network needed) overlays their BSECs in one figure: a colour per strategy π, a
line style per evaluator ε̃ and, with several outputs, a marker per output.  By default only the
``--top`` (3) best strategy × evaluator pairs of each output are drawn, ranked by the area under
their BSEC on log time (``auc_log`` of the summary), with their IQR bands; every other pair is a
click away in the legend (Plotly ``legendonly``), listed after the drawn ones.  Check boxes per
output, strategy and evaluator filter both, a menu draws the best 1, 3, 5, 10 or all pairs per
output, a switch shows the raw true score ε(b̂) or the regret to each output's best possible
backbone (``best_possible`` of its summary: ε* − ε(b̂), 0 = the exhaustive search's answer), IQR
bands on or off (drawn only for the curves drawn), and the time axis is log, labelled in
seconds … days.  Below it: the recommendations side by side (budget × output), and the summary
rows of every output.

The figure's state can be set from the URL fragment, e.g. ``compare.html#y=regret&outs=1&bands=0&top=all``
(keys ``y`` = raw|regret, ``outs`` = output indices, ``strategies``, ``evaluators``, ``bands``,
``top`` = a number or ``all``), which is how the headless-browser test drives it.
"""
from __future__ import annotations

import html
import json
import math
from datetime import datetime
from pathlib import Path

import click
import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import polars as pl

from shared.durations import format_duration
from shared.errors import VibesError
from shared.exactmath import logs
from simulate.recommend import iqr_text
from simulate.report import PALETTE, _fmt, time_ticks

TOP = 3  # pairs drawn per output by default; the rest are a legend click away
TOP_CHOICES = (1, 3, 5, 10)
#: one per evaluator: Plotly's six named dashes, then four more patterns
DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot", "12px,3px,3px,3px,3px,3px", "2px,6px",
          "18px,4px", "6px,3px,12px,3px"]
#: the same patterns for the check boxes' swatches (SVG stroke-dasharray; Plotly's named dashes in px)
_DASH_SVG = {"solid": "", "dash": "9,9", "dot": "3,3", "dashdot": "9,5,3,5", "longdash": "15,15",
             "longdashdot": "15,5,3,5"}
#: one per output (with several outputs): markers on each curve
SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x", "star", "cross", "triangle-down"]
EPILOG = """\b
Examples:
  simulate compare out/digits out/digits-sk
  simulate compare out/sketch out/imagenet-r --label sketch --label imagenet-r --out out/compare.html
  simulate compare out/demo --top 5        # the 5 best strategy x evaluator pairs drawn
"""


def load_output(folder: str | Path) -> dict:
    """``summary.json`` and ``bsec.parquet`` of one simulate output, checked; a one-line error.
    Curves replayed on several worker counts (``simulate --workers``) are told apart in the strategy
    name (``cycling · 4 workers``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VibesError(f"{str(folder)!r} is not a folder; expected an output folder of `simulate --out`")
    need = [folder / "summary.json", folder / "bsec.parquet"]
    missing = [p.name for p in need if not p.is_file()]
    if missing:
        raise VibesError(f"{str(folder)!r} has no {' or '.join(missing)}; is it an output folder of "
                         f"`simulate --out`?")
    try:
        summary = json.loads(need[0].read_text())
        curves = pl.read_parquet(need[1])
    except Exception as exc:
        raise VibesError(f"cannot read the outputs in {str(folder)!r}: {type(exc).__name__}: {exc}") from None
    lacking = [c for c in ("strategy", "evaluator", "budget_s", "median", "q25", "q75") if c not in curves.columns]
    if lacking or "best_possible" not in summary:
        raise VibesError(f"{str(folder)!r}: bsec.parquet or summary.json lacks "
                         f"{', '.join(lacking) or 'best_possible'}; written by an incompatible simulate?")
    if "workers" in curves.columns and curves.get_column("workers").n_unique() > 1:
        curves = curves.with_columns(pl.format("{} · {} workers", "strategy", "workers").alias("strategy"))
        summary = dict(summary, strategies=[dict(r, strategy=f"{r['strategy']} · {r['workers']} workers")
                                            if "workers" in r else r for r in summary.get("strategies", [])])
    return {"folder": folder, "summary": summary, "curves": curves}


def _labels(outputs: list[dict], given: tuple[str, ...]) -> list[str]:
    if given and len(given) != len(outputs):
        raise VibesError(f"--label given {len(given)} time(s) for {len(outputs)} output folder(s); give one "
                         f"per folder, in order, or none")
    if given:
        return list(given)
    labels = [f"{o['summary'].get('dataset', '?')} · {o['folder'].name}" for o in outputs]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if labels.count(label) == 1 else f"{label} #{seen[label]}")
    return out


def _first_seen(outputs: list[dict], column: str) -> list[str]:
    values: list[str] = []
    for o in outputs:
        for v in o["curves"].get_column(column).unique(maintain_order=True).to_list():
            values += [v] if v not in values else []
    return values


def ranked_pairs(o: dict) -> list[tuple[str, str]]:
    """The (strategy, evaluator) pairs of one output, best first: by the area under the BSEC on log
    time (the summary's ``auc_log``; computed from the curve where the summary lacks it, a budget
    without a selection counting 0), ties by name."""
    auc = {(r["strategy"], r["evaluator"]): r.get("auc_log") for r in o["summary"].get("strategies", [])}
    scored = []
    for (st, ev), part in o["curves"].group_by("strategy", "evaluator", maintain_order=True):
        a = auc.get((st, ev))
        if a is None:
            part = part.sort("budget_s")
            x = logs(part.get_column("budget_s").to_numpy())  # the same ranking on every CPU
            y = part.get_column("median").fill_null(0.0).fill_nan(0.0).to_numpy()
            a = float(np.trapezoid(y, x) / (x[-1] - x[0])) if len(x) > 1 and x[-1] > x[0] else float(y.mean())
        scored.append((-float(a), st, ev))
    return [(st, ev) for _, st, ev in sorted(scored)]


def compare_figure(outputs: list[dict], labels: list[str], top: int | None = TOP) -> go.Figure:
    """The BSECs of every output: a colour per strategy, a dash per evaluator, a marker per output
    (several outputs); the ``top`` best pairs of each output (:func:`ranked_pairs`; None: all) drawn
    with their bands, the others ``legendonly`` (bands hidden).  Every trace's ``meta`` says its
    output, strategy, evaluator, role (median, band-hi, band-lo, baseline), rank within its output,
    the index of its median trace (bands), and its raw and regret y values."""
    strategies, evaluators = _first_seen(outputs, "strategy"), _first_seen(outputs, "evaluator")
    several = len(outputs) > 1
    fig = go.Figure()
    lo, hi = float("inf"), 0.0
    for i, (o, label) in enumerate(zip(outputs, labels)):
        best = float(o["summary"]["best_possible"]["true_score"])
        ranks = {pair: k for k, pair in enumerate(ranked_pairs(o))}
        symbol = SYMBOLS[i % len(SYMBOLS)]
        # one output: its name heads the legend; several: each curve's marker says its output (the check boxes
        # show which), the legend listing every output's drawn curves first, then the greyed ones
        title = {} if several else {"legendgrouptitle_text": label}
        for (s, e), part in o["curves"].group_by("strategy", "evaluator", maintain_order=True):
            part = part.sort("budget_s")
            x = part.get_column("budget_s").to_list()
            lo, hi = min(lo, x[0]), max(hi, x[-1])
            color = PALETTE[strategies.index(s) % len(PALETTE)]
            dash = DASHES[evaluators.index(e) % len(DASHES)]
            rank = ranks[(s, e)]
            drawn = top is None or rank < top
            col = {q: part.get_column(q).to_list() for q in ("median", "q25", "q75")}
            regret = {q: [None if v is None else best - v for v in col[q]] for q in col}
            median_index = len(fig.data) + 2

            def meta(role, raw, reg, i=i, s=s, e=e, rank=rank, median_index=median_index):
                return {"out": i, "strategy": s, "evaluator": e, "role": role, "rank": rank,
                        "median": median_index, "raw": raw, "regret": reg}

            group = dict(legendgroup=f"out{i}", **title)  # on every trace: any may be hidden
            fig.add_trace(go.Scatter(x=x, y=col["q75"], mode="lines", line=dict(width=0), hoverinfo="skip",
                                     showlegend=False, visible=drawn, meta=meta("band-hi", col["q75"], regret["q25"]),
                                     **group))
            fig.add_trace(go.Scatter(x=x, y=col["q25"], mode="lines", line=dict(width=0), fill="tonexty",
                                     fillcolor=_rgba(color, 0.12), hoverinfo="skip", showlegend=False,
                                     visible=drawn, meta=meta("band-lo", col["q25"], regret["q75"]), **group))
            mode = part.get_column("mode_backbone").fill_null("— none —").to_list() \
                if "mode_backbone" in part.columns else ["?"] * len(x)
            fig.add_trace(go.Scatter(
                x=x, y=col["median"], mode="lines+markers" if several else "lines", name=f"{s} × {e}",
                line=dict(color=color, width=2.2, dash=dash),
                marker=dict(symbol=symbol, size=7, color=color, maxdisplayed=12),
                visible=True if drawn else "legendonly", legendrank=(0 if drawn else 100_000) + 1000 * i + rank + 1,
                customdata=[[format_duration(v), m] for v, m in zip(x, mode)], meta=meta("median", col["median"],
                                                                                   regret["median"]),
                hovertemplate=(f"<b>{html.escape(label)}</b><br>{html.escape(s)} × {html.escape(e)} "
                               f"(#{rank + 1} by area)<br>budget %{{customdata[0]}}<br>%{{y:.4f}}<br>"
                               "selected most often: %{customdata[1]}<extra></extra>"), **group))
        base = o["summary"].get("baseline") or {}
        if base.get("true_score") is not None:
            b = float(base["true_score"])
            fig.add_trace(go.Scatter(
                x=[lo, hi], y=[b, b], name=f"baseline {base.get('backbone')}",
                line=dict(color="black", width=1, dash="dot"), legendgroup=f"out{i}", **title,
                mode="lines+markers" if several else "lines", marker=dict(symbol=symbol, size=6, color="black"),
                legendrank=1000 * i,
                meta={"out": i, "strategy": None, "evaluator": None, "role": "baseline", "rank": -1, "median": None,
                      "raw": [b, b], "regret": [best - b, best - b]},
                hovertemplate=f"{html.escape(label)}: baseline {html.escape(str(base.get('backbone')))} "
                              f"%{{y:.4f}}<extra></extra>"))
    tickvals, ticktext = time_ticks(lo, hi) if hi > 0 else ([], [])
    # the legend under the plot, in rows (the plot keeps the page's width): the drawn curves first, then the
    # greyed ones; the figure grows by its rows (about 4 entries a row at 900 px), the plot itself stays 460 px
    entries = sum(1 for t in fig.data if t.showlegend is not False) + len(outputs)
    fig.update_layout(
        template="plotly_white", height=520 + 21 * math.ceil(entries / 4), hovermode="closest",
        margin=dict(l=60, r=20, t=30, b=50),
        # grouped, not reversed: Plotly reverses a legend holding fill="tonexty" traces (the bands) by itself
        legend=dict(groupclick="toggleitem", traceorder="normal", font=dict(size=11), tracegroupgap=8,
                    orientation="h", x=0, xanchor="left", y=-0.14, yanchor="top", entrywidth=210),
        xaxis=dict(type="log", title="search budget t_max", tickvals=tickvals, ticktext=ticktext),
        yaxis=dict(title="true score of the selected backbone ε(b̂)"))
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def _rec_cell(o: dict, t: float) -> str:
    """One output's recommendation at budget ``t``: its choice, median (IQR, in
    :func:`simulate.recommend.iqr_text`'s words) and most-selected backbone; else why there is none —
    no row at this budget (its budgets come from its own oracle's time scale), no strategy selecting
    by then, or no recommendation in the output at all (written before simulate made one)."""
    rows = o["summary"].get("recommendation")
    if not rows:
        return "<td class='none'>no recommendation in this output</td>"
    r = next((x for x in rows if float(x["budget_s"]) == t), None)
    if r is None:
        return "<td class='none'>no row at this budget</td>"
    if r.get("strategy") is None:
        return f"<td class='none'>none — {html.escape(r.get('reason') or 'no selection by then')}</td>"
    return (f"<td><b>{html.escape(r['strategy'])} × {html.escape(r['evaluator'])}</b><br>"
            f"{_fmt(r['median'])} ({html.escape(iqr_text(r.get('q25'), r.get('q75')))})<br>"
            f"{html.escape(str(r['backbone']))} ({100 * r['backbone_share']:.0f}%)</td>")


def recommendation_table(outputs: list[dict], labels: list[str]) -> str:
    """Budgets (rows) × outputs (columns): the recommended strategy × evaluator, its median (IQR)
    and most-selected backbone (:func:`_rec_cell`, which says why a cell has none)."""
    budgets: dict[float, str] = {}
    for o in outputs:
        for r in o["summary"].get("recommendation") or []:
            budgets.setdefault(float(r["budget_s"]), r.get("label") or format_duration(r["budget_s"]))
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    rows = []
    for t in sorted(budgets):
        cells = [_rec_cell(o, t) for o in outputs]
        rows.append(f"<tr><td>{html.escape(budgets[t])}</td>{''.join(cells)}</tr>")
    if not rows:
        return "<p>No output has a recommendation (written by a simulate before it had one).</p>"
    return (f"<table id='recommendations'><tr><th>budget</th>{head}</tr>{''.join(rows)}</table>")


def summary_table(outputs: list[dict], labels: list[str]) -> str:
    rows = []
    for o, label in zip(outputs, labels):
        s = o["summary"]
        best = s["best_possible"]["true_score"]
        for r in s.get("strategies", []):
            beat = r.get("time_to_beat_baseline_s")
            rows.append(f"<tr><td>{html.escape(label)}</td><td>{html.escape(r['strategy'])}</td>"
                        f"<td>{html.escape(r['evaluator'])}</td><td>{_fmt(r.get('score_1h'))}</td>"
                        f"<td>{_fmt(r.get('score_1d'))}</td><td>{format_duration(beat) if beat else '—'}</td>"
                        f"<td>{_fmt(r.get('auc_log'))}</td><td>{_fmt(best)}</td></tr>")
    return ("<table id='summaries'><tr><th>output</th><th>strategy π</th><th>evaluator ε̃</th><th>score at 1 h</th>"
            "<th>score at 1 day</th><th>time to beat baseline</th><th>AUC (log time)</th><th>best possible</th></tr>"
            + "".join(rows) + "</table>")


_JS = """
<script>
(function () {
  var gd = document.getElementById('compare-plot');
  // what the legend shows of each curve and baseline: true (drawn) or 'legendonly' (a click away);
  // the check boxes hide whole groups (visible false), the bands follow their curve
  var shown = gd.data.map(function (tr) { return tr.visible === undefined ? true : tr.visible; });
  function checked(name) {
    return Array.from(document.querySelectorAll('input[data-group="' + name + '"]'))
      .filter(function (b) { return b.checked; }).map(function (b) { return b.value; });
  }
  function setTop() {
    var top = document.getElementById('top').value, n = top === 'all' ? Infinity : Number(top);
    gd.data.forEach(function (tr, i) {
      if (tr.meta.role === 'median') { shown[i] = tr.meta.rank < n ? true : 'legendonly'; }
    });
  }
  function apply() {
    var outs = checked('outs'), st = checked('strategies'), ev = checked('evaluators');
    var y = document.getElementById('ymode').value, bands = document.getElementById('bands').checked;
    var vis = [], ys = [];
    gd.data.forEach(function (tr, i) {
      var m = tr.meta, on = outs.indexOf(String(m.out)) >= 0;
      if (m.role !== 'baseline') { on = on && st.indexOf(m.strategy) >= 0 && ev.indexOf(m.evaluator) >= 0; }
      if (!on) { vis.push(false); }
      else if (m.role === 'median' || m.role === 'baseline') { vis.push(shown[i]); }
      else { vis.push(bands && shown[m.median] === true); }
      ys.push(m[y]);
    });
    Plotly.restyle(gd, {visible: vis, y: ys});
    Plotly.relayout(gd, {'yaxis.title.text': y === 'raw' ? 'true score of the selected backbone ε(b̂)'
                                                         : 'regret: best possible − ε(b̂) (0 = best)'});
    document.body.setAttribute('data-y', y);
    document.body.setAttribute('data-visible', vis.filter(function (v) { return v === true; }).length);
    document.body.setAttribute('data-curves', gd.data.filter(function (tr, i) {
      return tr.meta.role === 'median' && vis[i] === true; }).length);
  }
  gd.on('plotly_legendclick', function (ev) {  // one curve in or out, its band with it
    var i = ev.curveNumber;
    shown[i] = shown[i] === true ? 'legendonly' : true;
    apply();
    return false;
  });
  gd.on('plotly_legenddoubleclick', function (ev) {  // that curve alone (again: the best per output)
    var i = ev.curveNumber, alone = shown.every(function (v, j) {
      return j === i || gd.data[j].meta.role !== 'median' || v !== true; });
    if (alone && shown[i] === true) { setTop(); }
    else {
      gd.data.forEach(function (tr, j) {
        if (tr.meta.role === 'median') { shown[j] = j === i ? true : 'legendonly'; }
      });
    }
    apply();
    return false;
  });
  function fromHash() {
    var h = new URLSearchParams(window.location.hash.replace(/^#/, ''));
    if (h.get('y')) { document.getElementById('ymode').value = h.get('y'); }
    if (h.get('bands')) { document.getElementById('bands').checked = h.get('bands') !== '0'; }
    if (h.get('top')) { document.getElementById('top').value = h.get('top'); setTop(); }
    ['outs', 'strategies', 'evaluators'].forEach(function (g) {
      if (!h.has(g)) { return; }
      var keep = h.get(g).split(',');
      document.querySelectorAll('input[data-group="' + g + '"]').forEach(function (b) {
        b.checked = keep.indexOf(b.value) >= 0;
      });
    });
  }
  document.querySelectorAll('#controls input, #controls select').forEach(function (c) {
    c.addEventListener('change', function () { if (c.id === 'top') { setTop(); } apply(); });
  });
  fromHash();
  apply();
})();
</script>"""


def _swatch(color: str = "#444", dash: str = "solid", symbol: str | None = None) -> str:
    """A small SVG sample of a line style for the check boxes (colour, dash, marker)."""
    pattern = _DASH_SVG.get(dash, dash.replace("px", ""))
    mark = ""
    if symbol is not None:
        shapes = {"circle": "<circle cx='14' cy='5' r='3.5'/>",
                  "square": "<rect x='10.5' y='1.5' width='7' height='7'/>",
                  "diamond": "<path d='M14 0.5 L18.5 5 L14 9.5 L9.5 5Z'/>",
                  "triangle-up": "<path d='M14 1 L18 9 L10 9Z'/>"}
        mark = shapes.get(symbol, "<text x='10' y='9' font-size='10'>" + html.escape(symbol[:1]) + "</text>")
    return (f"<svg width='34' height='10' style='vertical-align:middle;margin-right:3px'><line x1='0' y1='5' "
            f"x2='34' y2='5' "
            f"stroke='{color}' stroke-width='2.2'" + (f" stroke-dasharray='{pattern}'" if pattern else "")
            + f"/><g fill='{color}'>{mark}</g></svg>")


def _fact(o: dict, name: str) -> str:
    s = o["summary"]
    best = s["best_possible"]
    weights = s.get("weights", "pretrained")
    return (f"<li><b>{html.escape(name)}</b>: {html.escape(str(o['folder']))} — oracle "
            f"{html.escape(str(s.get('dataset')))}, {s.get('pool_size')} backbones, {s.get('n_runs')} runs, best "
            f"possible {html.escape(str(best['backbone']))} ({_fmt(best['true_score'])})"
            + (f", weights {html.escape(str(weights))} (scores say nothing about pretrained backbones)"
               if weights != "pretrained" else "") + "</li>")


def write_compare(folders, path: str | Path, labels: tuple[str, ...] = (), title: str | None = None,
                  top: int | None = TOP) -> Path:
    """The comparison report of the simulate outputs in ``folders`` -> ``path`` (HTML); the ``top``
    best strategy × evaluator pairs of each output drawn (None: all), the others a legend click away."""
    if not folders:
        raise VibesError("compare needs at least one output folder of `simulate --out`")
    if top is not None and top < 1:
        raise VibesError(f"--top must be a positive number of curves per output (or all); got {top}")
    outputs = [load_output(f) for f in folders]
    names = _labels(outputs, tuple(labels))
    fig = compare_figure(outputs, names, top)
    strategies, evaluators = _first_seen(outputs, "strategy"), _first_seen(outputs, "evaluator")
    several = len(outputs) > 1

    def boxes(group, values, shown, swatches):
        return "".join(f"<label><input type='checkbox' data-group='{group}' value='{html.escape(str(v))}' checked> "
                       f"{sw}{html.escape(str(t))}</label> " for v, t, sw in zip(values, shown, swatches))

    facts = "".join(_fact(o, n) for o, n in zip(outputs, names))
    div = pio.to_html(fig, full_html=False, include_plotlyjs=True, div_id="compare-plot",
                      config={"displaylogo": False, "responsive": True})
    n_pairs = sum(o["curves"].select("strategy", "evaluator").unique().height for o in outputs)
    choices = sorted({*TOP_CHOICES, *([top] if top is not None else [])})
    options = "".join(f"<option value='{n}'{' selected' if n == top else ''}>best {n}</option>" for n in choices)
    options += f"<option value='all'{' selected' if top is None else ''}>all</option>"
    drawn = "every" if top is None else f"the {top} best"
    out_marks = [_swatch(symbol=SYMBOLS[i % len(SYMBOLS)]) if several else "" for i in range(len(names))]
    colours = [_swatch(PALETTE[k % len(PALETTE)]) for k in range(len(strategies))]
    dashes = [_swatch(dash=DASHES[k % len(DASHES)]) for k in range(len(evaluators))]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title or 'VIBES — comparison of simulate outputs')}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:16px auto;padding:0 16px}"
        "h1{font-size:1.5em;margin:8px 0}ul{margin:4px 0}"
        "table{border-collapse:collapse;margin:8px 0}td,th{padding:4px 10px;border-bottom:1px solid #ddd;"
        "text-align:left;vertical-align:top}#controls{font-size:14px}"
        "#controls fieldset{display:inline-block;margin:2px;padding:2px 8px;border:1px solid #ccc}"
        "td.none{color:#777;font-style:italic}"
        "label{white-space:nowrap;margin-right:6px}.note{color:#444;margin:4px 0;font-size:14px}</style></head><body>",
        f"<h1>{html.escape(title or 'VIBES — BSECs of several simulate outputs')}</h1>",
        f"<ul>{facts}</ul>",
        "<div id='controls'>",
        "<fieldset><legend>y axis</legend><select id='ymode'><option value='raw'>true score ε(b̂)</option>"
        "<option value='regret'>regret to each oracle's best possible</option></select> "
        "<label><input type='checkbox' id='bands' checked> IQR bands</label></fieldset>",
        f"<fieldset><legend>drawn per output</legend><select id='top'>{options}</select> pairs, by area under "
        "the BSEC</fieldset>",
        f"<fieldset><legend>outputs{' (marker)' if several else ''}</legend>"
        f"{boxes('outs', range(len(names)), names, out_marks)}</fieldset>",
        f"<fieldset><legend>strategies π (colour)</legend>{boxes('strategies', strategies, strategies, colours)}"
        "</fieldset>",
        f"<fieldset><legend>evaluators ε̃ (line style)</legend>{boxes('evaluators', evaluators, evaluators, dashes)}"
        "</fieldset>",
        "</div>",
        f"<p class='note'>Drawn: {drawn} strategy × evaluator pairs of each output ({n_pairs} in all), by area "
        "under the BSEC on log time, with their IQR bands; the others are greyed in the legend below the plot: "
        "click one to draw it, double-click to draw it alone.</p>",
        f"<div class='fig'>{div}</div>",
        "<p>Each curve: the median over runs of the true score of the selected backbone (band: 25–75 %); "
        "the regret view subtracts it from the best true score of that output's pool.</p>",
        "<h2>Recommendations side by side</h2>",
        "<p class='note'>Each output recommends at budgets from its own oracle's time scale: <i>no row at this "
        "budget</i> means that output gives its answer at other budgets, not that it has none.</p>",
        recommendation_table(outputs, names),
        "<h2>Summaries</h2>", summary_table(outputs, names),
        _JS, "</body></html>",
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts), encoding="utf-8")
    return path


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("out_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="HTML file to write; default: out/compare/<date-time>.html.")
@click.option("--label", "labels", multiple=True, help="Name of each OUT_DIR, in order (repeatable); "
              "default: dataset · folder name.")
@click.option("--title", default=None, help="Title of the report.")
@click.option("--top", default=str(TOP), show_default=True,
              help="Strategy × evaluator pairs drawn per output, the best by area under the BSEC (a number, or "
                   "all); the others are a click away in the legend.")
def compare(out_dirs, out, labels, title, top):
    """Overlay the BSECs of several `simulate --out` folders in one interactive report.

    OUT_DIRS may come from different oracles, datasets and strategy sets.
    """
    if top.strip().lower() == "all":
        n = None
    else:
        try:
            n = int(top)
        except ValueError:
            raise VibesError(f"--top must be a positive number of curves per output, or all; got {top!r}") from None
    path = Path(out) if out else Path("out/compare") / f"{datetime.now():%Y%m%d-%H%M%S}.html"
    write_compare(out_dirs, path, labels, title, top=n)
    click.echo(f"compared {len(out_dirs)} output(s): {path}")
