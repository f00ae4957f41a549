"""``simulate league``: every strategy × evaluator × K workers over many oracles (:mod:`simulate.league`)."""
from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import click

from shared.durations import format_duration
from shared.errors import VibesError
from shared.limit_options import limit_options, limits_of
from shared.successive_halving import SHConfig
from simulate.options import replay_options, source_options
from simulate.oracles import load_oracle
from simulate.recommend import stop_text
from simulate.workers import check_workers

EPILOG = """\b
Examples:
  simulate league --oracle 'openclip:*' --workers 1,4 --runs 1000 --out out/league
  simulate league --oracle 'openclip:cifar*' --oracle openclip:gtsrb --strategy random --strategy meta
  simulate league --oracle 'data/oracles/*.parquet' --evaluator mlp --evaluator logme --runs 200
  simulate league --oracle 'timm:*' --timm-results ../shared/timm-results --max-params 50
(Quote globs so the shell leaves them to the command.)
"""


def load_league_oracles(specs, timm_results, timm_benchmark) -> list[tuple[str, object]]:
    """The ``--oracle`` specs, globs expanded (files, ``timm:*``, ``openclip:*``), loaded in order."""
    from simulate.openclip_oracle import expand_oracle_specs  # lazy: polars (`--help` answers without it)

    names = expand_oracle_specs(specs)
    if not names:
        raise VibesError("the league is empty: give --oracle PATH|GLOB|timm:SET|openclip:SET (repeatable)")
    return [(name, load_oracle(name, timm_results, timm_benchmark)) for name in names]


def answer_lines(league) -> list[str]:
    """The answer, per K and budget: the strategy × evaluator with the lowest median regret across the
    oracles, how often it beats each oracle's benchmark pick, and the benchmark pick's own regret."""
    rows = league.answer
    if not rows:
        return []
    n = len(league.table.get_column("oracle").unique())
    bench = rows[0]["benchmark_median_regret"]
    lines = [f"league of {n} oracles: per budget, the strategy × evaluator with the lowest median regret "
             f"(best possible − median true score of its selection) across the oracles; the benchmark pick "
             f"(each oracle's best backbone by the other oracles, no search) has median regret {bench:.4f}"]
    width = max(len(format_duration(r["budget_s"])) for r in rows)
    for r in rows:
        k = f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}, " if len(league.settings["workers"]) > 1 else ""
        beat = "—" if r["p_beat_benchmark"] is None else f"{100 * r['p_beat_benchmark']:.0f}%"
        verdict = "beats" if r["median_regret"] < bench else "does not beat"
        lines.append(f"  {k}{format_duration(r['budget_s']):>{width}}: {r['strategy']} × {r['evaluator']}"
                     f"{stop_text(r)}  "
                     f"median regret {r['median_regret']:.4f} ({verdict} the benchmark pick's {bench:.4f}); "
                     f"beats the benchmark pick in {beat} of runs"
                     + ("" if r["n_oracles"] == n else f" (on the {r['n_oracles']} oracles it can run on)"))
    return lines


def quality_lines(league) -> list[str]:
    """How well each evaluator spec and static baseline ranks the pools like the truth, as medians over
    the oracles (weighted τ: swaps near the top count most)."""
    q = league.quality_summary()
    if q is None or q.height == 0:
        return []
    lines = ["ranking quality across the oracles (medians: Kendall τ-b, weighted τ, top-1 regret; the meta prior "
             "leave-one-out):"]
    f = lambda x, fmt="+.3f": "—" if x is None else format(x, fmt)  # noqa: E731
    for r in [r for r in q.to_dicts() if r["kind"] != "truth"]:  # a handful of specs
        lines.append(f"  {r['spec']:<16} {r['kind']:<10} τ-b {f(r['kendall_tau_b'])}  τw {f(r['weighted_tau'])}  "
                     f"regret {f(r['top1_regret'], '.4f')}  ({r['n_oracles']} oracles)")
    return lines


def write_outputs(league, out_dir: Path, report: bool) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    league.table.write_parquet(out_dir / "league.parquet")
    if league.quality is not None:
        league.quality.write_parquet(out_dir / "league_quality.parquet")
    doc = {"oracles": league.oracles, "settings": league.settings, "answer": league.answer,
           "benchmarks": league.benchmarks().to_dicts(), "notes": league.notes,
           "budgets": {"n": int(league.budgets.size), "min_s": float(league.budgets[0]),
                       "max_s": float(league.budgets[-1])},
           "cost_models": league.cost_models,
           "quality": None if league.quality is None else league.quality_summary().to_dicts(),
           "engine_seconds": round(league.engine_seconds, 4)}
    (out_dir / "league.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    if report:
        from simulate.league_report import write_league_report  # lazy: plotly only when a report is drawn

        write_league_report(league, out_dir / "league.html")


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--oracle", "oracle_specs", multiple=True, required=True, metavar="PATH|GLOB|timm:SET|openclip:SET",
              help="An oracle of the league (repeatable; globs such as 'openclip:*' or 'oracles/*.parquet').")
@source_options
@replay_options("the paper's five and meta (leave-one-out)")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (league.parquet, league.json, league.html); default: out/league/<time>.")
@click.option("--no-report", is_flag=True, help="Skip league.html.")
@limit_options
def league(oracle_specs, timm_results, timm_benchmark, strategies, evaluators, runs, budgets, seed, workers,
           eta, sh_chunk, promotion_cost, out, no_report, max_params, max_gmacs, max_latency_ms, latency_device,
           max_memory_mb):
    """Replay every strategy × evaluator × K workers on every oracle of a league, and answer which strategy
    to use on a dataset not seen: the one with the lowest median regret across the oracles, and how often
    it beats the benchmark pick (each oracle's best backbone by the others, taken without a search).

    Writes league.parquet (per oracle, strategy, evaluator, workers, budget: median, q25, q75,
    best_possible, regret, benchmark_backbone, benchmark_score, p_beat_benchmark), league.json and
    league.html, and prints the answer.
    """
    # lazy: numpy, polars and plotly stay out of `simulate league --help`
    from simulate.league import run_league
    from simulate.simulation import parse_budgets

    t0 = time.perf_counter()
    ks = check_workers(str(workers).split(",")) if workers is not None else (1,)
    grid = parse_budgets(budgets)
    limits, latency = limits_of(max_params, max_gmacs, max_latency_ms, latency_device, max_memory_mb, timm_results)
    oracles = load_league_oracles(oracle_specs, timm_results, timm_benchmark)
    result = run_league(oracles, strategies or None, evaluators or None, runs, grid, seed, ks,
                        sh=SHConfig(eta, sh_chunk, promotion_cost), limits=limits, latency=latency)
    out_dir = Path(out) if out else Path("out/league") / datetime.now().strftime("%Y%m%d-%H%M%S")
    write_outputs(result, out_dir, not no_report)
    for model in result.cost_models:
        click.echo(f"costs {model}")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    for line in answer_lines(result) + quality_lines(result):
        click.echo(line)
    click.echo(f"engine {result.engine_seconds:.2f} s, total {time.perf_counter() - t0:.2f} s; outputs in {out_dir}")


__all__ = ["league", "load_league_oracles", "answer_lines", "write_outputs"]
