"""What a live search writes and prints: ``search.json`` (the document), ``report.html`` (the
incumbent's ε̃ against the budget spent, every evaluation as a point) and the closing lines."""
from __future__ import annotations

import html
import json
import re
import statistics
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from precompute import parts as P
from shared.durations import format_duration

PROMOTION_TEXT = {"incremental": "keep the lower fraction's features", "cold": "evaluated cold"}
SEARCH_JSON = "search.json"
REPORT_HTML = "report.html"
STALE_KEY = "stale"  # search.json's first key while a later search in its folder has not written its own
STALE_MARK = "<!-- vibes: stale -->"  # report.html's banner line, likewise


def wall_ratio(trace: list[dict]) -> float | None:
    """Median over evaluations of ``wall_seconds / seconds`` (those with both, seconds > 0)."""
    r = [e["wall_seconds"] / e["seconds"] for e in trace
         if e.get("wall_seconds") is not None and e.get("seconds")]
    return statistics.median(r) if r else None


def write_outputs(out: Path, doc: dict) -> bool:
    """Write ``search.json`` and ``report.html`` unless they already hold exactly this; True when they
    did not (a stale mark, :func:`mark_stale`, is removed either way, and is not a change)."""
    changed = False
    text = json.dumps(doc, indent=1, default=_json_default) + "\n"
    html = report_html(doc)
    for path, content in ((out / SEARCH_JSON, text), (out / REPORT_HTML, html)):
        try:
            old = path.read_text(encoding="utf-8")
        except OSError:
            old = None
        if old != content:
            with P.atomic_path(path) as tmp:
                tmp.write_text(content, encoding="utf-8")
            changed = changed or old is None or _unmarked(old) != content
    return changed


def mark_stale(out: Path, started: str) -> dict[Path, str]:
    """At a search's start, the outputs an earlier run left in ``out`` say they are not this search's:
    ``search.json`` gains a first key ``"stale"`` (its other keys, which a resumed search reads, are
    kept), ``report.html`` a banner under its title.  :func:`write_outputs` replaces both when this
    search ends (its budget, the whole pool, or Ctrl-C after an evaluation counted).  Returns each
    file marked with its text before (for :func:`put_back`)."""
    note = (f"a search started in this folder at {started} and has not written its own outputs yet "
            f"(still running, interrupted before any evaluation counted, or refused); this describes an "
            f"earlier search")
    marked: dict[Path, str] = {}
    doc_path, html_path = out / SEARCH_JSON, out / REPORT_HTML
    try:
        old = doc_path.read_text(encoding="utf-8")
        doc = json.loads(old)
    except (OSError, ValueError):
        doc = None
    if isinstance(doc, dict):
        doc.pop(STALE_KEY, None)
        with P.atomic_path(doc_path) as tmp:
            tmp.write_text(json.dumps({STALE_KEY: note, **doc}, indent=1) + "\n", encoding="utf-8")
        marked[doc_path] = old
    try:
        old = html_path.read_text(encoding="utf-8")
    except OSError:
        old = None
    if old is not None and "<body>" in old:
        banner = f"{STALE_MARK}<p class='warn'><b>Stale:</b> {html.escape(note)}.</p>\n"
        with P.atomic_path(html_path) as tmp:
            tmp.write_text(_unmarked(old).replace("<body>", "<body>" + banner, 1), encoding="utf-8")
        marked[html_path] = old
    return marked


def put_back(marked: dict[Path, str]) -> None:
    """The files :func:`mark_stale` marked, as they were (a search refused before it counted anything)."""
    for path, text in marked.items():
        with P.atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")


def _unmarked(text: str) -> str:
    """An output as :func:`write_outputs` wrote it: without the stale mark :func:`mark_stale` added."""
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            return text
        if isinstance(doc, dict) and STALE_KEY in doc:
            doc.pop(STALE_KEY)
            return json.dumps(doc, indent=1) + "\n"
        return text
    return re.sub(re.escape(STALE_MARK) + r"[^\n]*\n", "", text)


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    return str(x)


def _at(e: dict) -> float:
    """When an evaluation ended on the search's timeline (one worker: the budget spent by then)."""
    return e.get("end_s", e["cumulative_seconds"])


def ranked_trace(trace: list[dict]) -> list[dict]:
    """The successful evaluations best first: by fraction (successive halving's level), then ε̃,
    then the earlier evaluated -- the incumbent rule's order."""
    ok = [(e["fraction"], e["score"], -i, e) for i, e in enumerate(trace) if e["score"] is not None]
    return [t[-1] for t in sorted(ok, key=lambda t: t[:3], reverse=True)]


def summary_lines(doc: dict, resumed: int = 0, new: int = 0, top: int = 10, loop_wall: float | None = None,
                  changed: bool = True) -> list[str]:
    """The closing table: what was done, the top evaluations, the incumbent and the final score."""
    lines = []
    sh = doc.get("sh")
    evals = (f"{doc['n_evaluated']} evaluations of {doc['n_backbones']} of {doc['pool_size']} backbones at "
             f"fractions {', '.join(f'{f:g}' for f in doc['fidelities'])}" if sh else
             f"{doc['n_evaluated']} of {doc['pool_size']} backbones evaluated")
    head = (f"search {doc['strategy']} x {doc['evaluator']} on {doc['dataset']}, "
            f"budget {format_duration(doc['budget_s'])}: {evals} ({doc['n_failed']} failed), "
            + (f"{doc['spent_s']:.1f} s spent" if doc.get("workers", 1) == 1 else
               f"{doc['workers']} workers, {max((_at(e) for e in doc['trace']), default=0.0):.1f} s of search time, "
               f"{doc['spent_s']:.1f} s of compute"))
    if resumed and not new:
        head += f"; nothing new (all {resumed} from the parts)"
    elif resumed:
        head += f"; {resumed} from the parts, {new} new"
    lines.append(head)
    lim = doc.get("limits")
    if lim:
        lines.append(f"deployment limits {lim['described']}: {lim['pool_within']} of {lim['pool_before']} "
                     f"backbones within, the other {lim['pool_before'] - lim['pool_within']} never evaluated")
    lines += _end_lines(doc)
    for r, e in enumerate(ranked_trace(doc["trace"])[:top], 1):
        if r == 1:
            w = max(len("backbone"), *(len(x["backbone"]) for x in doc["trace"]))
            lines.append(f"{'rank':>4}  {'backbone':<{w}}  " + ("fraction  " if sh else "")
                         + f"{'ε̃':>7}  {'seconds':>8}  {'at (s)':>8}")
        lines.append(f"{r:>4}  {e['backbone']:<{w}}  " + (f"{e['fraction']:>8g}  " if sh else "")
                     + f"{e['score']:>7.4f}  {e['seconds']:>8.2f}  {_at(e):>8.1f}")
    inc = doc.get("incumbent")
    lines.append(f"incumbent: {inc['backbone']} (ε̃ {doc['evaluator']} = {inc['score']:.4f})" if inc
                 else "incumbent: none (no evaluation succeeded)")
    fin = doc.get("final")
    if fin and fin.get("backbone"):
        if fin.get("status") == "ok":
            lines.append(f"final: {fin['evaluator']} at fraction 1.0 on {fin['backbone']} = {fin['score']:.4f} "
                         f"({fin['seconds']:.1f} s, outside the budget; from {fin['source']})")
        else:
            lines.append(f"final: {fin['evaluator']} on {fin['backbone']} failed: {fin.get('error')}")
    elif fin:
        lines.append(f"final: skipped ({fin.get('error')})")
    if loop_wall:
        lines.append(f"this run: {new} new evaluation(s), {loop_wall:.1f} s of wall time evaluating "
                     f"(the budget counts measured seconds; start-up and writing parts are outside it)")
    ratio = wall_ratio(doc["trace"])
    if ratio is not None:
        lines.append(f"wall / measured seconds per evaluation: median {ratio:.3f}")
    folder = Path(doc["parts_dir"]).parent
    lines.append(f"{'wrote' if changed else 'unchanged:'} {folder / SEARCH_JSON} and {folder / REPORT_HTML}")
    return lines


def _trace_figure(doc: dict) -> str:
    """The report's figure (a Plotly div holding its own script): the incumbent's step line, the
    evaluations by fraction, the failed ones as crosses, the budget as a dashed line."""
    trace = doc["trace"]
    budget = doc["budget_s"]
    fig = go.Figure()
    ok = [e for e in trace if e["score"] is not None]
    bad = [e for e in trace if e["score"] is None]
    if ok:
        xs, ys, names = [], [], []
        for e in sorted(trace, key=_at):  # the incumbent changes when an evaluation ends
            if e["incumbent_score"] is not None:
                xs.append(_at(e))
                ys.append(e["incumbent_score"])
                names.append(e["incumbent"])
        xs.append(max(budget, xs[-1]))
        ys.append(ys[-1])
        names.append(names[-1])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(shape="hv", color="#1f77b4", width=2.5),
                                 name="incumbent b̂", customdata=names,
                                 hovertemplate="incumbent %{customdata}<br>ε̃ %{y:.4f} at %{x:.1f} s<extra></extra>"))
        colors = ["#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]
        fractions = doc.get("fidelities") or [None]
        for k, f in enumerate(fractions):
            at = [(i, e) for i, e in enumerate(trace) if e["score"] is not None and (f is None or e["fraction"] == f)]
            fig.add_trace(go.Scatter(
                x=[_at(e) for _, e in at], y=[e["score"] for _, e in at], mode="markers",
                marker=dict(size=9, color=colors[k % len(colors)]),
                name="evaluations" if len(fractions) == 1 else f"evaluations at fraction {f:g}",
                customdata=[[e["backbone"], e["seconds"], i + 1, e["fraction"]] for i, e in at],
                hovertemplate=("<b>%{customdata[0]}</b> at fraction %{customdata[3]}<br>ε̃ %{y:.4f}<br>took "
                               "%{customdata[1]:.2f} s, done at %{x:.1f} s<br>evaluation #%{customdata[2]}"
                               "<extra></extra>")))
    if bad:
        floor = min([e["score"] for e in ok], default=0.0)
        fig.add_trace(go.Scatter(
            x=[_at(e) for e in bad], y=[floor] * len(bad), mode="markers",
            marker=dict(size=10, symbol="x", color="#7f7f7f"), name="failed",
            customdata=[[e["backbone"], (e.get("error") or "")[:120]] for e in bad],
            hovertemplate="<b>%{customdata[0]}</b> failed<br>%{customdata[1]}<extra></extra>"))
    fig.add_vline(x=budget, line=dict(color="black", dash="dash", width=1))
    fig.add_annotation(x=budget, y=1, yref="paper", text=f"budget {format_duration(budget)}", showarrow=False,
                       xanchor="right", yanchor="bottom")
    fig.update_layout(title=f"Live search: {doc['strategy']} x {doc['evaluator']} on {doc['dataset']}",
                      template="plotly_white", height=480, hovermode="closest",
                      margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h", y=-0.2),
                      xaxis=dict(title="search time (measured evaluation seconds on the workers' timelines)",
                                 range=[0, budget * 1.02]),
                      yaxis=dict(title=f"ε̃ = {doc['evaluator']}"))
    div = pio.to_html(fig, full_html=False, include_plotlyjs=True, div_id="search-trace",
                      config={"displaylogo": False, "responsive": True})
    return div


def _end_lines(doc: dict) -> list[str]:
    """How the search ended: the evaluation that did not count, the whole pool, or Ctrl-C."""
    lines = []
    st = doc.get("stopped")
    if st:
        how = (f"stopped when its measured seconds reached {st['measured_s']:.2f} s, past the "
               f"{st['remaining_s']:.2f} s left (at {st.get('point')}, {st['latency_s']:.2f} s late)"
               if st["reason"] == "budget"
               else f"needs {st['seconds']:.2f} s, more than the {st['remaining_s']:.2f} s left")
        at = f" at fraction {st['fraction']:g}" if doc.get("sh") and "fraction" in st else ""
        lines.append(f"not counted: {st['backbone']}{at} {how}")
    elif doc["finished"] == "pool":
        lines.append("every backbone of the pool was evaluated")
    if doc["finished"] == "interrupted":
        lines.append("interrupted (Ctrl-C) before the budget: rerun the same command to resume")
    return lines


def report_html(doc: dict) -> str:
    """``report.html``: the incumbent's ε̃ against the budget spent (a step line) and every
    evaluation as a point (hover: backbone, ε̃, seconds); self-contained Plotly, no network."""
    div = _trace_figure(doc)
    budget, trace = doc["budget_s"], doc["trace"]
    esc = html.escape
    inc = doc.get("incumbent")
    rows = "".join(f"<tr><td>{r}</td><td>{esc(e['backbone'])}</td><td>{e['fraction']:g}</td>"
                   f"<td>{e['score']:.4f}</td><td>{e['seconds']:.2f}</td>"
                   f"<td>{'—' if e.get('wall_seconds') is None else format(e['wall_seconds'], '.2f')}</td>"
                   f"<td>{_at(e):.1f}</td></tr>"
                   for r, e in enumerate(ranked_trace(trace)[:20], 1))
    fin = doc.get("final") or {}
    final_p = (f"<p>Final: <code>{esc(str(fin['evaluator']))}</code> at fraction 1.0 on "
               f"<b>{esc(fin['backbone'])}</b> = <b>{fin['score']:.4f}</b> ({fin['seconds']:.1f} s, outside "
               f"the budget).</p>" if fin.get("status") == "ok" else "")
    st = doc.get("stopped")
    stop_p = (f"<p>Not counted: {esc(st['backbone'])} ({esc(st['reason'])}).</p>" if st else "")
    if doc.get("finished") == "interrupted":
        stop_p += (f"<p class='warn'><b>Interrupted</b> (Ctrl-C) after {doc['n_evaluated']} counted evaluations: "
                   f"the search did not reach its budget; rerun the same command to resume it.</p>")
    warn = (f"<p class='warn'>Backbone weights: <b>{esc(str(doc['weights']))}</b> (an offline demo): the "
            f"scores say nothing about real pretrained backbones.</p>" if doc.get("weights") != "pretrained" else "")
    return "".join([
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>VIBES live search</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px}"
        "table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}"
        ".warn{background:#fff3cd;border:1px solid #e0c36b;padding:8px}</style></head><body>",
        f"<h1>Live search on {esc(str(doc['dataset']))}</h1>", warn,
        f"<p>Strategy <b>{esc(doc['strategy'])}</b>, evaluator <code>{esc(doc['evaluator'])}</code>, seed "
        f"{doc['seed']}, budget {format_duration(budget)}: {doc['n_evaluated']} evaluations of {doc['n_backbones']} of "
        f"{doc['pool_size']} backbones ({doc['n_failed']} failed) in {doc['spent_s']:.1f} s"
        + (f" of compute on {doc['workers']} workers" if doc.get("workers", 1) > 1 else "")
        + (f", successive halving over fractions {', '.join(f'{f:g}' for f in doc['fidelities'])} "
           f"(η = {doc['sh']['eta']}, chunks of {doc['sh']['chunk']}, promotions "
           f"{PROMOTION_TEXT[doc['sh'].get('promotion_cost', 'cold')]})"
           if doc.get("sh") else "") + ". Incumbent: "
        + (f"<b>{esc(inc['backbone'])}</b> (ε̃ {inc['score']:.4f})" if inc else "none") + ".</p>",
        (f"<p>Deployment limits <b>{esc(doc['limits']['described'])}</b>: {doc['limits']['pool_within']} of "
         f"{doc['limits']['pool_before']} backbones within; the others were never evaluated.</p>"
         if doc.get("limits") else ""),
        stop_p, final_p, f"<div class='fig'>{div}</div>",
        "<table><tr><th>rank</th><th>backbone</th><th>fraction</th><th>ε̃</th><th>seconds</th><th>wall (s)</th>"
        "<th>at (s)</th></tr>",
        rows,
        "</table></body></html>"])


__all__ = ["SEARCH_JSON", "REPORT_HTML", "write_outputs", "mark_stale", "put_back", "ranked_trace", "summary_lines",
           "report_html", "wall_ratio"]
