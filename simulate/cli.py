"""``simulate``: replay VIBES strategies against an oracle and draw BSECs (CPU only, no torch)."""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

import click

from shared.errors import VibesError

EPILOG = """\b
Examples:
  simulate --timm-results ../shared/timm-results --strategy cycling --runs 10
  simulate --oracle timm:imagenet --runs 1000 --budgets 60:86400:50
  simulate --oracle data/oracles/digits.parquet --evaluator mlp --evaluator mlp@0.1 \\
           --evaluator silhouette --baseline resnet18.a1_in1k --out out/digits
  simulate --oracle data/oracles/digits.parquet --list
"""


def _load_oracle(spec: str, timm_results, timm_benchmark):
    from shared.oracle import read_oracle

    if spec.startswith("timm:"):
        from simulate.timm_oracle import timm_oracle

        return timm_oracle(spec.removeprefix("timm:"), timm_results, timm_benchmark)
    return read_oracle(spec)


def _list(oracle) -> None:
    from shared.samplers import SAMPLERS

    ev = oracle.evaluators()
    pool = oracle.true_scores()
    click.echo(f"oracle {oracle.dataset}: {pool.height} backbones in the pool "
               f"({oracle.failed_backbones().height} failed / excluded), truth = {oracle.truth}, "
               f"weights = {oracle.meta.get('weights', 'pretrained')}")
    click.echo("evaluators (spec: fractions, seeds, backbones, median seconds):")
    for name in ev.get_column("evaluator").unique(maintain_order=True).to_list():
        rows = ev.filter(ev["evaluator"] == name)
        for r in rows.iter_rows(named=True):
            spec = name if r["fraction"] == 1.0 else f"{name}@{r['fraction']:g}"
            click.echo(f"  {spec:<20} fraction {r['fraction']:g}  seeds {r['seeds']}  "
                       f"backbones {r['backbones']}  median {r['median_seconds']:.3g} s")
    click.echo("strategies:")
    for s in SAMPLERS.values():
        click.echo(f"  {s.name:<20} {s.description}")


def _print_summary(sim, out: Path, timing: dict) -> None:
    from simulate.report import human_time

    s = sim.summary
    click.echo(f"{s['dataset']}: pool {s['pool_size']}, {s['n_runs']} runs, {s['budgets']['n']} budgets "
               f"{human_time(s['budgets']['min_s'])} … {human_time(s['budgets']['max_s'])}; best possible "
               f"{s['best_possible']['true_score']:.4f}; baseline "
               + (f"{s['baseline']['true_score']:.4f}" if s['baseline']['true_score'] is not None else "—"))
    head = f"{'strategy':<18} {'evaluator':<14} {'@1h':>7} {'@1day':>7} {'beat base':>10} {'AUC':>7}"
    click.echo(head)
    for r in s["strategies"]:
        beat = human_time(r["time_to_beat_baseline_s"]) if r["time_to_beat_baseline_s"] else "never"
        f = lambda x: "—" if x is None else f"{x:.4f}"  # noqa: E731
        click.echo(f"{r['strategy']:<18} {r['evaluator']:<14} {f(r['score_1h']):>7} "
                   f"{f(r['score_1d']):>7} {beat:>10} {f(r['auc_log']):>7}")
    for note in s["notes"]:
        click.echo(f"note: {note}", err=True)
    click.echo(f"engine {timing['engine_seconds']:.2f} s, total {timing['total_seconds']:.2f} s; "
               f"outputs in {out}")


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"],
                                                "max_content_width": 100})
@click.option("--oracle", "oracle_spec", default="timm:sketch", show_default=True,
              help="Oracle file (.parquet/.h5) or timm:<set> built from timm's published results.")
@click.option("--timm-results", type=click.Path(), envvar="VIBES_TIMM_RESULTS",
              help="Folder with timm's results-*.csv and benchmark-*.csv (or $VIBES_TIMM_RESULTS).")
@click.option("--timm-benchmark", default="benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv",
              show_default=True, help="Benchmark file (in that folder) giving throughput and GMACs.")
@click.option("--strategy", "strategies", multiple=True,
              help="Sampler π (repeatable); default: the five paper strategies.")
@click.option("--evaluator", "evaluators", multiple=True,
              help="Evaluator ε̃ as <evaluator>[@<fraction>] (repeatable); default: the truth evaluator.")
@click.option("--runs", default=100, show_default=True, type=int, help="Runs per strategy × evaluator.")
@click.option("--budgets", default=None,
              help="LO:HI:N (N log-spaced seconds, ends included) or S1,S2,...; default: cheapest "
                   "evaluation … exhaustive time, 100 budgets.")
@click.option("--baseline", default="convnext_base.fb_in22k_ft_in1k", show_default=True,
              help="Backbone drawn as a flat line (the Battle-of-the-Backbones pick).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder; default: a new folder under out/simulate/.")
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@click.option("--list", "list_only", is_flag=True,
              help="Print the oracle's pool size, evaluators, fractions, seeds and the strategies.")
def simulate(oracle_spec, timm_results, timm_benchmark, strategies, evaluators, runs, budgets,
             baseline, seed, out, no_report, list_only):
    """Replay VIBES strategies (sampler π × evaluator ε̃ × budget t_max) against an oracle.

    Writes runs.parquet, bsec.parquet, summary.json and report.html, and prints a summary.
    """
    t_start = time.perf_counter()
    oracle = _load_oracle(oracle_spec, timm_results, timm_benchmark)
    if list_only:
        _list(oracle)
        return
    from shared.samplers import get_sampler
    from simulate.simulation import parse_budgets, run_simulation

    for s in strategies:
        get_sampler(s)
    if runs < 1:
        raise VibesError(f"--runs must be >= 1, got {runs}")
    grid = parse_budgets(budgets)
    out_dir = Path(out) if out else _new_out_dir()
    from tqdm import tqdm

    n_pairs = (len(strategies) or 5) * (len(evaluators) or 1)
    with tqdm(total=runs * n_pairs, unit="run", disable=runs * n_pairs < 5000 or None,
              desc="simulating", leave=False) as bar:
        sim = run_simulation(oracle, strategies or None, evaluators or None, runs, grid, seed,
                             baseline, progress=bar.update)
    out_dir.mkdir(parents=True, exist_ok=True)
    import pyarrow.parquet as pq

    pq.write_table(sim.runs, out_dir / "runs.parquet", compression="zstd")
    sim.bsec.write_parquet(out_dir / "bsec.parquet")
    if not no_report:
        from simulate.report import write_report

        write_report(sim, out_dir / "report.html")
    timing = {"engine_seconds": round(sim.engine_seconds, 4),
              "total_seconds": round(time.perf_counter() - t_start, 4)}
    summary = dict(sim.summary, timing=timing)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_summary(sim, out_dir, timing)


def _new_out_dir() -> Path:
    base = Path("out/simulate") / datetime.now().strftime("%Y%m%d-%H%M%S")
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def main(argv=None) -> int:
    try:
        simulate.main(args=argv, standalone_mode=False)
    except VibesError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
