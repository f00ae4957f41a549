"""``simulate``: replay VIBES strategies against an oracle and draw BSECs (CPU only, no torch)."""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

import click

from shared.console import run_group
from shared.durations import format_duration
from shared.errors import VibesError
from shared.help_sections import SectionedGroup, sections
from shared.limit_options import limit_options, limits_of
from shared.successive_halving import SHConfig
from simulate.league_cli import league
from simulate.options import replay_options, source_options
from simulate.oracles import load_oracle, with_imagenet_top1
from simulate.recommend import (
    choices_of,
    iqr_text,
    kept_note,
    lead_changes,
    previous_row,
    row_label,
    stop_text,
    tie_summary,
)
from simulate.workers import check_workers

EPILOG = """\b
Examples:
  simulate --timm-results ../shared/timm-results --strategy cycling --runs 10
  simulate --oracle timm:imagenet --timm-results ../shared/timm-results --runs 1000 --budgets 60:86400:50
  simulate --oracle data/oracles/digits.parquet --evaluator mlp --evaluator mlp@0.1 \\
           --evaluator silhouette --baseline resnet18.a1_in1k --out out/digits
  simulate --oracle data/oracles/digits.parquet --list
  simulate --oracle data/oracles/digits.parquet --quality-only
  simulate --oracle data/oracles/resnet18/digits.parquet --truth mlp-sklearn --out out/digits-sk
  simulate --oracle data/oracles/digits.parquet --strategy sh:random --strategy random \\
           --evaluator mlp --evaluator mlp@0.1 --eta 3 --promotion-cost incremental
  simulate --oracle timm:sketch --timm-results ../shared/timm-results --strategy imagenet-top1 --strategy meta \\
           --prior-oracle timm:imagenet-r --prior-oracle timm:imagenetv2-matched-frequency
  simulate compare out/digits out/digits-sk --out out/compare.html
  simulate --oracle openclip:cifar-10 --strategy cycling --runs 100   # $VIBES_OPENCLIP_RESULTS or ../shared
  simulate import results.csv --out oracles/ --dataset-col dataset --score-col top1 --seconds-col seconds
  simulate import --help
  simulate --oracle timm:sketch --timm-results ../shared/timm-results --max-params 25 --max-latency-ms 1 \\
           --latency-device rtx4090
  simulate --oracle data/oracles/digits.parquet --costs-from my-gpu.csv   # precompute estimate --out my-gpu.csv
(data/oracles/resnet18/digits.parquet: the README's `precompute run --dataset digits --pool 'resnet18.*' ...`,
which runs mlp-sklearn too.)
"""


def _list(oracle) -> None:
    from shared.samplers import SAMPLERS  # lazy: `simulate --help` answers without polars and plotly

    ev = oracle.evaluators()
    pool = oracle.true_scores()
    click.echo(f"oracle {oracle.dataset}: {pool.height} backbones in the pool "
               f"({oracle.failed_backbones().height} failed / excluded), truth = {oracle.truth}, "
               f"weights = {oracle.meta.get('weights', 'pretrained')}")
    left = [f"{oracle.meta[k]} {what}" for k, what in (("models_without_benchmark", "models with no benchmark row"),
                                                      ("toy_test_models_left_out", "toy test_* models"))
            if oracle.meta.get(k)]
    if left:
        click.echo(f"left out of the published results: {', '.join(left)}")
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
    click.echo(f"  {'sh:<sampler>':<20} successive halving over the evaluator's fractions, walking "
               f"<sampler>'s order (--eta, --sh-chunk, --promotion-cost)")


def _print_summary(sim, out: Path, timing: dict) -> None:
    s = sim.summary
    click.echo(f"{s['dataset']}: pool {s['pool_size']}, {s['n_runs']} runs, {s['budgets']['n']} budgets "
               f"{format_duration(s['budgets']['min_s'])} … {format_duration(s['budgets']['max_s'])}; best possible "
               f"{s['best_possible']['true_score']:.4f}; baseline "
               + (f"{s['baseline']['true_score']:.4f}" if s['baseline']['true_score'] is not None else "—"))
    if s.get("cost_model"):  # an oracle whose costs are a declared model says so wherever it is used
        click.echo(f"costs {s['cost_model']}")
    k = "workers" in s
    head = (f"{'strategy':<18} {'evaluator':<14} " + (f"{'workers':>7} " if k else "")
            + f"{'@1h':>7} {'@1day':>7} {'beat base':>10} {'AUC':>7}")
    click.echo(head)
    for r in s["strategies"]:
        beat = ("—" if s["baseline"]["true_score"] is None else  # no baseline: nothing to beat
                format_duration(r["time_to_beat_baseline_s"]) if r["time_to_beat_baseline_s"] else "never")
        f = lambda x: "—" if x is None else f"{x:.4f}"  # noqa: E731
        click.echo(f"{r['strategy']:<18} {r['evaluator']:<14} " + (f"{r['workers']:>7} " if k else "")
                   + f"{f(r['score_1h']):>7} {f(r['score_1d']):>7} {beat:>10} {f(r['auc_log']):>7}")
    for note in s["notes"]:
        click.echo(f"note: {note}", err=True)
    click.echo(f"engine {timing['engine_seconds']:.2f} s, total {timing['total_seconds']:.2f} s; "
               f"outputs in {out}")


def _compare_command():
    from simulate.compare import compare  # lazy: `simulate --help` answers without polars and plotly

    return compare


def _import_command():
    from simulate.importer import import_command  # lazy: `simulate --help` answers without polars

    return import_command


def _league_command():
    return league


#: the subcommands: name -> (the click command, imported when run; its line in `simulate --help`)
SUBCOMMANDS = {
    "compare": (_compare_command, "Overlay the BSECs of several `simulate --out` folders in one report."),
    "import": (_import_command, "Turn a table of published results (CSV/Parquet) into oracles, one per dataset."),
    "league": (_league_command, "Replay every strategy on several oracles: which to use on an unseen dataset."),
}


class SimulateGroup(SectionedGroup):
    """``simulate [OPTIONS]`` replays strategies (the group's own options and callback); ``simulate
    COMMAND ...`` runs a subcommand of :data:`SUBCOMMANDS` instead, imported only then."""

    def list_commands(self, ctx):
        return list(SUBCOMMANDS)

    def get_command(self, ctx, name):
        if name not in SUBCOMMANDS:
            return None
        if ctx.meta.get(_HELP_ONLY):  # `simulate --help`: the registry's line; no subcommand is imported
            return click.Command(name, short_help=SUBCOMMANDS[name][1])
        return SUBCOMMANDS[name][0]()

    def resolve_command(self, ctx, args):
        if args and args[0] not in SUBCOMMANDS:
            ctx.fail(f"no command {args[0]!r}: simulate takes options, or a command first ({', '.join(SUBCOMMANDS)})")
        return super().resolve_command(ctx, args)

    def format_usage(self, ctx, formatter):  # two forms, one under the other
        from rich.padding import Padding  # lazy: rich loads only when a help is drawn
        from rich.text import Text

        path = ctx.command_path
        formatter.write(Padding(Text(f"Usage: {path} [OPTIONS]\n       {path} COMMAND [ARGS]..."),
                                formatter.config.padding_usage))

    def format_options(self, ctx, formatter):  # the subcommands first (commands_before_options), then the sections
        ctx.meta[_HELP_ONLY] = True
        try:
            super().format_options(ctx, formatter)
        finally:
            del ctx.meta[_HELP_ONLY]


_HELP_ONLY = "vibes_help_only"  # ctx.meta: the commands are listed for --help, not run


@sections(("Common", ("--oracle", "--out", "--list", "--quality-only", "--no-report", "--help")),
          ("Budget and strategy", ("--strategy", "--evaluator", "--runs", "--budgets", "--seed", "--workers", "--eta",
                                   "--sh-chunk", "--promotion-cost", "--baseline", "--recommend-at",
                                   "--prior-oracle")),
          ("Oracle", ("--timm-results", "--timm-benchmark", "--truth")),
          ("Costs on your hardware", ("--costs-from",)),
          ("Deployment limits", ("--max-params", "--max-gmacs", "--max-latency-ms", "--latency-device",
                                 "--max-memory-mb")),
          commands_panel_title="Commands (`simulate COMMAND --help` for each)",
          padding_helptext_first_line=(0, 0, 1, 0))  # a blank line between the docstring's paragraphs
@click.group(cls=SimulateGroup, invoke_without_command=True, epilog=EPILOG,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--oracle", "oracle_spec", default="timm:sketch", show_default=True,
              help="Oracle file (.parquet/.h5) or timm:<set> built from timm's published results.")
@source_options
@replay_options("the five paper strategies")
@click.option("--baseline", default="convnext_base.fb_in22k_ft_in1k", show_default=True,
              help="Backbone drawn as a flat line (the Battle-of-the-Backbones pick).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder; default: a new folder under out/simulate/.")
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@click.option("--list", "list_only", is_flag=True,
              help="Print the oracle's pool size, evaluators, fractions, seeds and the strategies.")
@click.option("--truth", default=None, metavar="NAME",
              help="Take evaluator NAME at fraction 1.0 as the truth (e.g. mlp-sklearn); default: the "
                   "oracle's own. True scores, BSECs and the quality table all follow it.")
@click.option("--quality-only", is_flag=True,
              help="Print how well each evaluator spec ranks backbones against the truth (τ-b, ρ, "
                   "regret, top 5, cost) and stop; writes quality.parquet when --out is given.")
@click.option("--prior-oracle", "prior_oracles", multiple=True, metavar="PATH|timm:SET",
              help="Reference oracle of another dataset for the meta strategy (repeatable).")
@limit_options
@click.option("--costs-from", "costs_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Replay with costs for your hardware: FILE holds backbone, seconds timed on the target device "
                   "for a sample (`precompute estimate --out FILE`); every backbone's cost there is predicted "
                   "from the oracle's own and its metadata (costs.parquet; the fit's leave-one-out error in "
                   "summary.json).")
@click.option("--recommend-at", default=None, metavar="DURATIONS",
              help="More budgets for the recommendation, e.g. 10min,1h30m,4h (plain numbers are seconds); "
                   "it always has round budgets between the cheapest evaluation and the exhaustive time and "
                   "the budgets where the best choice changes.")
@click.pass_context
def simulate(ctx, **options):
    """Replay VIBES strategies (sampler π × evaluator ε̃ × budget t_max) against an oracle.

    Writes runs.parquet, bsec.parquet, summary.json and report.html, and prints a summary.
    """
    if ctx.invoked_subcommand is None:
        _replay(**options)
        return
    given = [p.opts[0] for p in ctx.command.params if ctx.get_parameter_source(p.name) in
             (click.core.ParameterSource.COMMANDLINE,)]
    if given:
        raise VibesError(f"{', '.join(given)} before `{ctx.invoked_subcommand}`: options of a subcommand go after "
                         f"its name (`simulate {ctx.invoked_subcommand} --help` lists them)")


def _replay(oracle_spec, timm_results, timm_benchmark, strategies, evaluators, runs, budgets,
            baseline, seed, out, no_report, list_only, truth, quality_only, eta, sh_chunk,
            promotion_cost, prior_oracles, workers, max_params, max_gmacs, max_latency_ms, latency_device,
            max_memory_mb, costs_file, recommend_at):
    """``simulate`` without a subcommand: replay, write the outputs, print the summary and the answer."""
    t_start = time.perf_counter()
    oracle = load_oracle(oracle_spec, timm_results, timm_benchmark)
    top1_note = None
    if any(s.split(":")[-1] == "imagenet-top1" for s in strategies):  # its key, from timm's results if empty
        oracle, top1_note = with_imagenet_top1(oracle, timm_results)
    from simulate import quality  # lazy: `simulate --help` answers without polars and plotly

    oracle = quality.with_truth(oracle, truth)
    fit = None
    if costs_file is not None:
        from simulate.costs import costs_from  # lazy: `simulate --help` answers without polars and plotly

        oracle, fit = costs_from(oracle, costs_file)
    if list_only:
        _list(oracle)
        return
    if quality_only:
        _quality_only(oracle, out, _load_priors(oracle_spec, prior_oracles, timm_results, timm_benchmark))
        return
    from shared.samplers import sampler_of  # lazy: `simulate --help` answers without polars and plotly
    from simulate.simulation import asked_budgets, parse_budgets, run_simulation

    for s in strategies:
        sampler_of(s)
    if runs < 1:
        raise VibesError(f"--runs must be >= 1, got {runs}")
    grid = parse_budgets(budgets)
    sh = SHConfig(eta, sh_chunk, promotion_cost)
    ks = None if workers is None else check_workers(str(workers).split(","))
    limits, latency = limits_of(max_params, max_gmacs, max_latency_ms, latency_device, max_memory_mb, timm_results)
    rec_at = asked_budgets(budgets, recommend_at)
    priors = _load_priors(oracle_spec, prior_oracles, timm_results, timm_benchmark)
    out_dir = Path(out) if out else _new_out_dir()
    from tqdm import tqdm

    n_pairs = (len(strategies) or 5) * (len(evaluators) or 1) * len(ks or (1,))
    with tqdm(total=runs * n_pairs, unit="run", disable=runs * n_pairs < 5000 or None,
              desc="simulating", leave=False) as bar:
        sim = run_simulation(oracle, strategies or None, evaluators or None, runs, grid, seed,
                             baseline, progress=bar.update, sh=sh, priors=priors, recommend_at=rec_at,
                             runs_path=out_dir / "runs.parquet",  # streamed: memory ~ runs x budgets
                             workers=ks, limits=limits, latency=latency)
    if fit is not None:
        sim.summary["costs"] = fit.as_dict()
    if top1_note:
        sim.summary["notes"].append(top1_note)
    if "oracle_truth" in oracle.meta:
        sim.summary["notes"].append(f"truth: {oracle.truth} (chosen with --truth; the oracle's own "
                                    f"truth is {oracle.meta['oracle_truth']})")
    _write_outputs(sim, oracle, quality.evaluate(oracle, [o for _, o in priors] or None), out_dir, fit,
                   None if no_report else (latency, limits, sh))
    timing = {"engine_seconds": round(sim.engine_seconds, 4),
              "total_seconds": round(time.perf_counter() - t_start, 4)}
    summary = dict(sim.summary, timing=timing)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_summary(sim, out_dir, timing)
    _print_recommendation(sim.summary.get("recommendation", []), choices_of(sim.summary))


def _write_outputs(sim, oracle, qual, out_dir: Path, fit, report) -> None:
    """runs.parquet (unless streamed there already), bsec.parquet, quality.parquet, costs.parquet with
    --costs-from, and report.html unless ``report`` is None (else: the latency table, limits, SH settings)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    import pyarrow.parquet as pq

    if sim.runs is not None:
        pq.write_table(sim.runs, out_dir / "runs.parquet", compression="zstd")
    sim.bsec.write_parquet(out_dir / "bsec.parquet")
    qual.table.write_parquet(out_dir / "quality.parquet")
    if fit is not None:
        from simulate.costs import write_costs  # lazy: `simulate --help` answers without polars and plotly

        write_costs(fit, out_dir / "costs.parquet")
        click.echo(fit.describe(), err=True)
    if report is not None:
        from simulate.pareto import deployment_view  # lazy: `simulate --help` answers without polars and plotly
        from simulate.report import write_report  # lazy: `simulate --help` answers without polars and plotly

        dep = deployment_view(sim, oracle, *report)
        write_report(sim, out_dir / "report.html", quality=qual, deployment=dep)


def _load_priors(study: str, specs, timm_results, timm_benchmark) -> list:
    """The --prior-oracle references as (label, Oracle); the oracle under study is refused (same
    spec or same file here; same dataset name in run_simulation)."""
    import os

    out = []
    for spec in specs:
        same = spec == study or (not spec.startswith("timm:") and not study.startswith("timm:")
                                 and os.path.exists(spec) and os.path.exists(study)
                                 and os.path.samefile(spec, study))
        if same:
            raise VibesError(f"--prior-oracle {spec}: it is the oracle under study; a prior must come "
                             f"from other datasets")
        out.append((spec, load_oracle(spec, timm_results, timm_benchmark)))
    return out


def _print_recommendation(rows, choices=None) -> None:
    for line in recommendation_lines(rows, choices):
        click.echo(line)


def recommendation_lines(rows, choices=None) -> list[str]:
    """The answer: per budget the strategy × evaluator to run (``any sampler × e`` where every strategy
    replayed with that evaluator ties: ``choices``, every strategy × evaluator replayed), its median (IQR),
    its most frequent pick, the choices tied with it within the noise, and ← where the row leads with
    another choice than the row before."""
    if not rows:
        return []
    f = lambda x: "—" if x is None else f"{x:.4f}"  # noqa: E731
    n = next((r["n_runs"] for r in rows if r.get("n_runs")), None)
    lines = [f"recommendation (what to run at each budget: median true score of its selection over {n} runs, "
             f"IQR; ties within the noise listed; ← the best choice changes; 'stop at': the search is at its best "
             f"by then, stop it there):"]
    width = max(len(row_label(r)) for r in rows)
    for i, r in enumerate(rows):
        label, before = row_label(r), previous_row(rows, i)
        mark = " ← " if lead_changes(r, before) else "   "  # a space before the widest label too
        if r["strategy"] is None:
            lines.append(f"{mark}{label:>{width}}: none — {r.get('reason', 'no selection')}")
            continue
        head, rest, broad = tie_summary(r, choices)
        own = f"{r['strategy']} × {r['evaluator']}"
        kept = None if broad else kept_note(r, before)
        tie = ("; tied: " + ", ".join(rest[:3]) + (f" and {len(rest) - 3} more" if len(rest) > 3 else "")) \
            if rest else ""
        lines.append(f"{mark}{label:>{width}}: {head}{f' (figures of {own})' if head != own else ''}{stop_text(r)}  "
                     f"median {f(r['median'])} "
                     f"({iqr_text(r['q25'], r['q75'])}), selects {r['backbone']} most often "
                     f"({100 * r['backbone_share']:.0f}% of runs){'; ' + kept if kept else ''}{tie}")
    return lines


def _quality_only(oracle, out, priors=()) -> None:
    from simulate.quality import evaluate, format_table  # lazy: `simulate --help` answers without polars and plotly

    qual = evaluate(oracle, [o for _, o in priors] or None)  # with --prior-oracle: the meta prior as a baseline
    pool = oracle.true_scores().height
    click.echo(f"{oracle.dataset}: how well each evaluator spec ranks the pool ({pool} backbones) like the "
               f"truth {oracle.truth} (means over seeds at fraction 1.0)")
    click.echo(format_table(qual))
    for note in qual.notes:
        click.echo(f"note: {note}", err=True)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        qual.table.write_parquet(Path(out) / "quality.parquet")
        click.echo(f"wrote {Path(out) / 'quality.parquet'}")


def _new_out_dir() -> Path:
    base = Path("out/simulate") / datetime.now().strftime("%Y%m%d-%H%M%S")
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def main(argv=None) -> int:
    """Console entry point (:func:`shared.console.run_group`)."""
    return run_group(simulate, argv, "simulate")


if __name__ == "__main__":
    sys.exit(main())
