"""``simulate compare OUT_DIR...``: one interactive report from several ``simulate`` outputs.

Each OUT_DIR is a folder ``simulate --out`` wrote (``summary.json`` and ``bsec.parquet``); they may
come from different oracles, datasets and strategy sets.  The report (one self-contained HTML
file, Plotly, no network needed) overlays their BSECs in one figure — a colour per strategy ×
evaluator, a line style per output — with check boxes per output, per strategy and per
evaluator, a switch between the raw true score ε(b̂) and the regret to each output's best
possible backbone (``best_possible`` of its summary: ε* − ε(b̂), 0 = the exhaustive search's
answer), IQR bands on or off, and a log time axis labelled in seconds … days.  Below it: the
recommendations side by side (budget × output), and the summary rows of every output.

The figure's state can be set from the URL fragment, e.g. ``compare.html#y=regret&outs=1&bands=0``
(keys ``y`` = raw|regret, ``outs`` = output indices, ``strategies``, ``evaluators``, ``bands``),
which is how the headless-browser test drives it.
"""
from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path

import click
import plotly.graph_objects as go
import plotly.io as pio
import polars as pl

from shared.durations import format_duration
from shared.errors import VibesError
from simulate.report import PALETTE, _fmt, time_ticks

DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
EPILOG = """\b
Examples:
  simulate compare out/digits out/digits-sk
  simulate compare out/sketch out/imagenet-r --label sketch --label imagenet-r --out out/compare.html
"""


def load_output(folder: str | Path) -> dict:
    """``summary.json`` and ``bsec.parquet`` of one simulate output, checked; a one-line error."""
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


def compare_figure(outputs: list[dict], labels: list[str]) -> go.Figure:
    pairs = []  # (strategy, evaluator) in first-seen order: one colour each
    for o in outputs:
        for s, e in o["curves"].select("strategy", "evaluator").unique(maintain_order=True).iter_rows():
            if (s, e) not in pairs:
                pairs.append((s, e))
    fig = go.Figure()
    lo, hi = float("inf"), 0.0
    for i, (o, label) in enumerate(zip(outputs, labels)):
        best = float(o["summary"]["best_possible"]["true_score"])
        dash = DASHES[i % len(DASHES)]
        for (s, e), part in o["curves"].group_by("strategy", "evaluator", maintain_order=True):
            part = part.sort("budget_s")
            x = part.get_column("budget_s").to_list()
            lo, hi = min(lo, x[0]), max(hi, x[-1])
            color = PALETTE[pairs.index((s, e)) % len(PALETTE)]
            col = {q: part.get_column(q).to_list() for q in ("median", "q25", "q75")}
            regret = {q: [None if v is None else best - v for v in col[q]] for q in col}

            def meta(role, raw, reg, i=i, s=s, e=e):
                return {"out": i, "strategy": s, "evaluator": e, "role": role, "raw": raw, "regret": reg}

            group = dict(legendgroup=f"out{i}", legendgrouptitle_text=label)  # on every trace: any may be hidden
            fig.add_trace(go.Scatter(x=x, y=col["q75"], mode="lines", line=dict(width=0), hoverinfo="skip",
                                     showlegend=False, meta=meta("band-hi", col["q75"], regret["q25"]),
                                     **group))
            fig.add_trace(go.Scatter(x=x, y=col["q25"], mode="lines", line=dict(width=0), fill="tonexty",
                                     fillcolor=_rgba(color, 0.12), hoverinfo="skip", showlegend=False,
                                     meta=meta("band-lo", col["q25"], regret["q75"]), **group))
            mode = part.get_column("mode_backbone").fill_null("— none —").to_list() \
                if "mode_backbone" in part.columns else ["?"] * len(x)
            fig.add_trace(go.Scatter(
                x=x, y=col["median"], mode="lines", name=f"{s} × {e}", line=dict(color=color, width=2, dash=dash),
                customdata=[[format_duration(v), m] for v, m in zip(x, mode)], meta=meta("median", col["median"],
                                                                                   regret["median"]),
                hovertemplate=(f"<b>{html.escape(label)}</b><br>{html.escape(s)} × {html.escape(e)}<br>"
                               "budget %{customdata[0]}<br>%{y:.4f}<br>selected most often: %{customdata[1]}"
                               "<extra></extra>"), **group))
        base = o["summary"].get("baseline") or {}
        if base.get("true_score") is not None:
            b = float(base["true_score"])
            fig.add_trace(go.Scatter(
                x=[lo, hi], y=[b, b], mode="lines", name=f"baseline {base.get('backbone')}",
                line=dict(color="black", width=1, dash=dash), legendgroup=f"out{i}", legendgrouptitle_text=label,
                meta={"out": i, "strategy": None, "evaluator": None, "role": "baseline", "raw": [b, b],
                      "regret": [best - b, best - b]},
                hovertemplate=f"{html.escape(label)}: baseline {html.escape(str(base.get('backbone')))} "
                              f"%{{y:.4f}}<extra></extra>"))
    tickvals, ticktext = time_ticks(lo, hi) if hi > 0 else ([], [])
    fig.update_layout(
        template="plotly_white", height=560, hovermode="closest", margin=dict(l=60, r=20, t=30, b=50),
        legend=dict(groupclick="toggleitem"),
        xaxis=dict(type="log", title="search budget t_max", tickvals=tickvals, ticktext=ticktext),
        yaxis=dict(title="true score of the selected backbone ε(b̂)"))
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def recommendation_table(outputs: list[dict], labels: list[str]) -> str:
    """Budgets (rows) × outputs (columns): the recommended strategy × evaluator, its median (IQR)
    and most-selected backbone; '—' where an output has none (or predates the recommendation)."""
    budgets: dict[float, str] = {}
    for o in outputs:
        for r in o["summary"].get("recommendation") or []:
            budgets.setdefault(float(r["budget_s"]), r.get("label") or format_duration(r["budget_s"]))
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    rows = []
    for t in sorted(budgets):
        cells = []
        for o in outputs:
            r = next((x for x in o["summary"].get("recommendation") or [] if float(x["budget_s"]) == t), None)
            if r is None or r.get("strategy") is None:
                cells.append("<td>—</td>")
                continue
            cells.append(f"<td><b>{html.escape(r['strategy'])} × {html.escape(r['evaluator'])}</b><br>"
                         f"{_fmt(r['median'])} ({_fmt(r['q25'])}–{_fmt(r['q75'])})<br>"
                         f"{html.escape(str(r['backbone']))} ({100 * r['backbone_share']:.0f}%)</td>")
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
  function checked(name) {
    return Array.from(document.querySelectorAll('input[data-group="' + name + '"]'))
      .filter(function (b) { return b.checked; }).map(function (b) { return b.value; });
  }
  function apply() {
    var outs = checked('outs'), st = checked('strategies'), ev = checked('evaluators');
    var y = document.getElementById('ymode').value, bands = document.getElementById('bands').checked;
    var vis = [], ys = [];
    gd.data.forEach(function (tr) {
      var m = tr.meta, on = outs.indexOf(String(m.out)) >= 0;
      if (m.role !== 'baseline') {
        on = on && st.indexOf(m.strategy) >= 0 && ev.indexOf(m.evaluator) >= 0;
        if (m.role !== 'median') { on = on && bands; }
      }
      vis.push(on); ys.push(m[y]);
    });
    Plotly.restyle(gd, {visible: vis, y: ys});
    Plotly.relayout(gd, {'yaxis.title.text': y === 'raw' ? 'true score of the selected backbone ε(b̂)'
                                                         : 'regret: best possible − ε(b̂) (0 = best)'});
    document.body.setAttribute('data-y', y);
    document.body.setAttribute('data-visible', vis.filter(function (v) { return v; }).length);
  }
  function fromHash() {
    var h = new URLSearchParams(window.location.hash.replace(/^#/, ''));
    if (h.get('y')) { document.getElementById('ymode').value = h.get('y'); }
    if (h.get('bands')) { document.getElementById('bands').checked = h.get('bands') !== '0'; }
    ['outs', 'strategies', 'evaluators'].forEach(function (g) {
      if (!h.has(g)) { return; }
      var keep = h.get(g).split(',');
      document.querySelectorAll('input[data-group="' + g + '"]').forEach(function (b) {
        b.checked = keep.indexOf(b.value) >= 0;
      });
    });
  }
  document.querySelectorAll('#controls input, #controls select').forEach(function (c) {
    c.addEventListener('change', apply);
  });
  fromHash();
  apply();
})();
</script>"""


def _fact(o: dict, name: str) -> str:
    s = o["summary"]
    best = s["best_possible"]
    weights = s.get("weights", "pretrained")
    return (f"<li><b>{html.escape(name)}</b>: {html.escape(str(o['folder']))} — oracle "
            f"{html.escape(str(s.get('dataset')))}, {s.get('pool_size')} backbones, {s.get('n_runs')} runs, best "
            f"possible {html.escape(str(best['backbone']))} ({_fmt(best['true_score'])})"
            + (f", weights {html.escape(str(weights))} (scores say nothing about pretrained backbones)"
               if weights != "pretrained" else "") + "</li>")


def write_compare(folders, path: str | Path, labels: tuple[str, ...] = (), title: str | None = None) -> Path:
    """The comparison report of the simulate outputs in ``folders`` -> ``path`` (HTML)."""
    if not folders:
        raise VibesError("compare needs at least one output folder of `simulate --out`")
    outputs = [load_output(f) for f in folders]
    names = _labels(outputs, tuple(labels))
    fig = compare_figure(outputs, names)
    strategies, evaluators = [], []
    for o in outputs:
        for s in o["curves"].get_column("strategy").unique(maintain_order=True).to_list():
            strategies += [s] if s not in strategies else []
        for e in o["curves"].get_column("evaluator").unique(maintain_order=True).to_list():
            evaluators += [e] if e not in evaluators else []

    def boxes(group, values, shown):
        return "".join(f"<label><input type='checkbox' data-group='{group}' value='{html.escape(str(v))}' checked> "
                       f"{html.escape(str(t))}</label> " for v, t in zip(values, shown))

    facts = "".join(_fact(o, n) for o, n in zip(outputs, names))
    div = pio.to_html(fig, full_html=False, include_plotlyjs=True, div_id="compare-plot",
                      config={"displaylogo": False, "responsive": True})
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title or 'VIBES — comparison of simulate outputs')}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:24px auto;padding:0 16px}"
        "table{border-collapse:collapse;margin:8px 0}td,th{padding:4px 10px;border-bottom:1px solid #ddd;"
        "text-align:left;vertical-align:top}#controls fieldset{display:inline-block;margin:4px;border:1px solid #ccc}"
        "label{white-space:nowrap}</style></head><body>",
        f"<h1>{html.escape(title or 'VIBES — BSECs of several simulate outputs')}</h1>",
        f"<ul>{facts}</ul>",
        "<div id='controls'>",
        "<fieldset><legend>y axis</legend><select id='ymode'><option value='raw'>true score ε(b̂)</option>"
        "<option value='regret'>regret to each oracle's best possible</option></select> "
        "<label><input type='checkbox' id='bands' checked> IQR bands</label></fieldset>",
        f"<fieldset><legend>outputs (line style)</legend>{boxes('outs', range(len(names)), names)}</fieldset>",
        f"<fieldset><legend>strategies π</legend>{boxes('strategies', strategies, strategies)}</fieldset>",
        f"<fieldset><legend>evaluators ε̃</legend>{boxes('evaluators', evaluators, evaluators)}</fieldset>",
        "</div>",
        f"<div class='fig'>{div}</div>",
        "<p>Each curve: the median over runs of the true score of the selected backbone (band: 25–75 %); "
        "the regret view subtracts it from the best true score of that output's pool.</p>",
        "<h2>Recommendations side by side</h2>", recommendation_table(outputs, names),
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
def compare(out_dirs, out, labels, title):
    """Overlay the BSECs of several `simulate --out` folders in one interactive report.

    OUT_DIRS may come from different oracles, datasets and strategy sets.
    """
    path = Path(out) if out else Path("out/compare") / f"{datetime.now():%Y%m%d-%H%M%S}.html"
    write_compare(out_dirs, path, labels, title)
    click.echo(f"compared {len(out_dirs)} output(s): {path}")
