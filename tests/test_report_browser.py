"""report.html opens in a real browser: headless Chromium runs Plotly and the figures draw."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from simulate.cli import main
from tests.conftest import random_oracle

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000"]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None,
                    reason="headless Chromium is not installed (Debian package 'chromium'; .ci/run installs it)")
def test_report_draws_in_headless_chromium(tmp_path):
    random_oracle(n_backbones=20).write(tmp_path / "o.parquet")
    out = tmp_path / "out"
    assert main(["--oracle", str(tmp_path / "o.parquet"), "--evaluator", "mlp", "--evaluator", "silhouette",
                 "--strategy", "random", "--strategy", "cycling", "--runs", "30", "--baseline",
                 "arch003.tag0", "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "https://" not in re.sub(r'"[^"]*https://[^"]*"', "", html.split("<script")[0])  # no remote assets
    p = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                        (out / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    dom, _, quality_dom = p.stdout.partition('<h2 id="quality">')  # the BSECs, then the quality section
    assert p.returncode == 0, p.stderr[-2000:]
    dom, _, deployment_dom = dom.partition('<h2 id="deployment">')  # the Pareto view between them
    # the Pareto scatter (every backbone and the front) and the BSEC under each params limit, drawn
    assert deployment_dom.count('class="plot-container plotly"') == 2
    pareto = deployment_dom.split('id="pareto"')[1].split('id="limits-bsec"')[0]
    assert pareto.count('<path class="point') >= 20 and "Pareto front" in pareto
    # 2 evaluator figures + 2 strategy figures, each drawn by Plotly into an SVG with its traces
    n_figs = 4
    assert dom.count('class="plot-container plotly"') == n_figs
    assert dom.count('class="main-svg"') >= n_figs
    assert dom.count('class="scatterlayer') == n_figs
    lines = re.findall(r'class="js-line" d="M[^"]+"', dom)
    assert len(lines) >= n_figs * 3  # median lines + baseline
    fills = re.findall(r'class="js-fill" d="M[^"]+"', dom)
    assert len(fills) >= n_figs * 2  # the IQR bands
    for label in ("1 min", "cycling", "silhouette", "baseline: arch003.tag0"):
        assert label in dom
    # the quality section: one table row per spec, one drawn scatter per spec but the noise ceiling
    # (4 evaluator specs, 3 static baselines with values — the toy oracle has no imagenet_top1)
    specs = ["mlp", "mlp@0.1", "silhouette", "silhouette@0.1", "params_m", "gmacs", "feature_dim"]
    rows = re.findall(r'<tr class="qrow" data-kind="([^"]+)"><td data-v="([^"]*)"', quality_dom)
    assert [spec for _, spec in rows] == specs + ["mlp seed 0 vs seed 1"]
    assert [kind for kind, _ in rows] == ["truth"] + ["evaluator"] * 3 + ["static"] * 3 + ["noise ceiling"]
    figures = re.split(r'id="quality-\d+"', quality_dom)[1:]
    assert len(figures) == len(specs)
    for spec, fig in zip(specs, figures):
        assert 'class="plot-container plotly"' in fig and f"{spec}: τ-b" in fig
        assert fig.count('class="point"') >= 20  # every backbone drawn (plus the ringed pick)
    # clicking the τ-b heading sorts the rows by τ-b, ascending, nulls last (feature_dim: all 64)
    clicked = out / "clicked.html"
    clicked.write_text(html.replace("</body>", "<script>document.querySelectorAll('#quality-table th')[2]"
                                               ".click();</script></body>"))
    p = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                        clicked.as_uri()], capture_output=True, text=True, timeout=120)
    sorted_rows = re.findall(r'<tr class="qrow" data-kind="[^"]+"><td data-v="([^"]*)">[^<]*</td><td[^>]*>[^<]*'
                             r'</td><td data-v="([^"]*)"', p.stdout)
    values = [float(v) for _, v in sorted_rows if v]
    assert len(sorted_rows) == len(specs) + 1 and values == sorted(values) and len(values) == len(specs)
    assert sorted_rows[-1] == ("feature_dim", "")


# the report's own page (its head and style) around a recommendation of hand-written rows with the longest
# names the demo and timm:sketch give; a script measures the laid-out table into the DOM
MEASURE = """<script>
(function () {
  var de = document.documentElement, t = document.getElementById('recommendation-table');
  var rows = Array.from(t.rows).slice(1).filter(function (r) { return r.className !== 'tied'; });
  function lines(cell) {  // line boxes of a cell: the distinct tops of its laid-out fragments
    var g = document.createRange(), tops = {};
    g.selectNodeContents(cell);
    Array.from(g.getClientRects()).forEach(function (q) { if (q.width > 0) { tops[Math.round(q.top)] = 1; } });
    return Object.keys(tops).length;
  }
  document.body.setAttribute('data-measure', JSON.stringify({viewport: de.clientWidth, page: de.scrollWidth,
    picks: rows.map(function (r) { return r.cells[r.cells.length - 1].getBoundingClientRect().right; }),
    choice_lines: rows.map(function (r) { return lines(r.cells[1]); })}));
})();
</script>"""


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None,
                    reason="headless Chromium is not installed (Debian package 'chromium'; .ci/run installs it)")
def test_the_recommendation_fits_a_laptop_window(tmp_path):
    """At 1,000 px the backbone (the answer) is in view without scrolling sideways, and a strategy ×
    evaluator with its 'stop at' takes three lines at most (issue 24 item 2: it took five, the backbone
    cut off at the window's edge)."""
    import json

    from simulate.report import recommendation_html
    from tests.test_recommend import rec_row

    random_oracle(n_backbones=12).write(tmp_path / "o.parquet")
    out = tmp_path / "out"
    assert main(["--oracle", str(tmp_path / "o.parquet"), "--strategy", "random", "--runs", "5", "--out",
                 str(out)]) == 0
    head = (out / "report.html").read_text().split("<body>")[0]
    long = "convnext_base.clip_laion2b_augreg_ft_in12k_in1k_384"
    rows = [dict(rec_row("1 s", 1.0, "complexity-down", median=0.1003, stop_s=0.673, stop_label="0.673 s"),
                 q25=None, q75=0.1003, backbone=long),  # the long "a quarter of the runs ... select nothing yet"
            dict(rec_row("2.75 s", 2.75, "dataset-size-down", median=0.915, tied=[("cycling", "mlp@0.03", 0.915)]),
                 backbone=long),
            dict(rec_row("5 s", 5.0, "dataset-size-down", median=0.915), stop_s=2.75, stop_label="2.75 s",
                 backbone=long)]
    page = tmp_path / "page.html"
    page.write_text(head + "<body>" + recommendation_html(rows) + MEASURE + "</body></html>")
    p = subprocess.run([CHROMIUM, *FLAGS, "--window-size=1000,2600", f"--user-data-dir={tmp_path / 'profile'}",
                        "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(re.search(r'data-measure="([^"]*)"', p.stdout).group(1).replace("&quot;", '"'))
    assert got["viewport"] == 1000 and got["page"] <= got["viewport"], got  # no sideways scrolling
    assert all(right <= got["viewport"] for right in got["picks"]), got  # every backbone in view
    assert all(n <= 3 for n in got["choice_lines"]), got
