"""``precompute search``: run one strategy for real on a dataset under a time budget."""
from __future__ import annotations

from dataclasses import replace

import click

import precompute.search as live  # run_search loads torch on first use (precompute/search/__init__.py)
from precompute import pool as pool_mod  # called through the module: tests stub it there
from precompute.inputs import parse_floats
from precompute.search.config import SearchConfig
from precompute.slurm import slurm_options
from shared.help_sections import SectionedCommand, sections
from shared.limit_options import limit_options, limits_of
from shared.protocol import DEFAULT_FRACTIONS, EVALUATOR_NAMES, fractions_text
from shared.samplers import SAMPLERS
from shared.successive_halving import DEFAULT_ETA, DEFAULT_PROMOTION_COST, PROMOTION_COSTS

from .config import config_option, resolved_config
from .options import stderr_echo
from .sweep import DATASET_HELP

SEARCH_EPILOG = """\b
Examples:
  precompute search --dataset digits --weights random --input-size 32 --budget 90s \\
      --strategy cycling --evaluator mlp@0.1 --pool data/pool-5m.parquet --out out/search-demo
  precompute search --dataset folder:/data/my_images --pool data/pool.parquet --budget 2h \\
      --strategy cycling --evaluator mlp@0.1 --final mlp --out out/my-search
  precompute search --dataset digits --weights random --input-size 32 --budget 5m \\
      --strategy sh:cycling --evaluator mlp --eta 3 --sh-fractions 0.03,0.1,1.0 --pool 'resnet18*' \\
      --pool 'lcnet*' --out out/search-sh   # digits cannot give 1 %: rungs 0.03, 0.1, 1.0
  precompute search --dataset digits --weights random --input-size 32 --budget 60s --workers 2 \\
      --device cpu --strategy cycling --evaluator mlp@0.1 --pool data/pool-5m.parquet --out out/search-k2
  precompute search --dataset digits --weights random --input-size 32 --budget 40s --workers 2 \\
      --device cpu --strategy asha:cycling --evaluator mlp@0.1 --sh-fractions 0.03,0.1,1.0 \\
      --pool data/pool-5m.parquet --out out/search-asha   # asynchronous successive halving
  VIBES_TIMM_RESULTS=../shared/timm-results precompute search --dataset folder:/data/my_images --budget 1h \\
      --strategy cycling --evaluator mlp@0.1 --max-params 25 --max-latency-ms 2 --latency-device rtx4090 \\
      --out out/my-search-deploy
(data/pool-5m.parquet: `precompute pool --max-params 5 --out data/pool-5m.parquet`.  On a CPU
give a small pool: the whole pool's order can start with a 0.8 B-parameter ViT.)
Budgets: 90s, 45m, 10min, 2h, 1d, 1h30m, 1.5h or plain seconds; the budget is a hard deadline on
the summed charges, each what the oracle charges for that evaluation (its measured seconds; for an
incremental promotion load + the added images' extraction + fit); an evaluation is stopped as
soon as its measured seconds pass what is left.  Rerun the same command to resume (time already
spent is counted from the part files); a larger --budget continues the same search.  search.json and
report.html describe the last search in --out: an earlier one's are marked stale when a search starts,
and replaced at its budget, at the end of the pool, or at Ctrl-C (what counted so far).
"""


@sections(("Common", ("--config", "--dataset", "--pool", "--include-test-models", "--out", "--seed", "--top",
                       "--no-progress", "--help")),
          ("Budget and strategy", ("--budget", "--strategy", "--evaluator", "--final", "--eta", "--sh-chunk",
                                   "--sh-fractions", "--promotion-cost")),
          ("Data", ("--weights", "--input-size", "--batch-size", "--data-root", "--download", "--cache-dir")),
          ("Devices", ("--device", "--workers", "--threads")),
          ("Cluster", ("--cluster", "--partition", "--time-limit", "--cpus-per-job", "--mem-gb", "--gpus-per-job",
                       "--slurm-arg", "--wait-timeout")),
          ("Deployment limits", ("--max-params", "--max-gmacs", "--max-latency-ms", "--latency-device",
                                 "--max-memory-mb")))
@click.command("search", cls=SectionedCommand, epilog=SEARCH_EPILOG)
@config_option
@click.option("--dataset", required=True, help=DATASET_HELP)
@click.option("--budget", required=True, help="Time budget t_max, e.g. 90s, 10min, 2h, 1h30m (plain numbers: seconds).")
@click.option("--strategy", required=True,
              help=f"Sampler π, one of {', '.join(SAMPLERS)}; or sh:<sampler> (successive halving) or "
                   f"asha:<sampler> (asynchronous successive halving), e.g. sh:cycling.")
@click.option("--evaluator", required=True,
              help=f"Evaluator spec ε̃: <evaluator>[@<fraction>], e.g. mlp@0.1; of {', '.join(EVALUATOR_NAMES)}.")
@click.option("--pool", "pools", multiple=True,
              help="Pool file (.parquet/.csv from `precompute pool`, .txt names) or a name glob; repeatable. "
                   "Default: all pretrained timm backbones.")
@click.option("--include-test-models", is_flag=True,
              help="Keep timm's toy test models (test_*) in the default pool and in globs that also match real "
                   "backbones; named ones are always kept.")
@limit_options
@click.option("--weights", type=click.Choice(["pretrained", "random"]), default="pretrained", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the sampler's order (as simulate --seed).")
@click.option("--out", default="out/search", show_default=True, help="Folder for parts, search.json and report.html.")
@click.option("--final", default=None,
              help="After the budget, evaluate the incumbent with this evaluator at fraction 1.0.")
@click.option("--input-size", type=int, default=None, help="Override the input resolution.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--data-root", default="data/datasets", show_default=True)
@click.option("--download", is_flag=True, help="Download the dataset if missing.")
@click.option("--cache-dir", default="data/cache", show_default=True)
@click.option("--eta", type=int, default=DEFAULT_ETA, show_default=True,
              help="sh:/asha:<sampler>: keep the top 1/eta per rung.")
@click.option("--sh-chunk", type=int, default=None, help="sh:<sampler>: backbones per chunk (default eta^(L-1)).")
@click.option("--sh-fractions", default=fractions_text(sorted(DEFAULT_FRACTIONS)), show_default=True,
              help="sh:/asha:<sampler>: rung fractions; those below the evaluator's fraction, then it.")
@click.option("--promotion-cost", type=click.Choice(PROMOTION_COSTS), default=DEFAULT_PROMOTION_COST,
              show_default=True,
              help="sh:/asha:<sampler>: a promotion keeps the lower fraction's features (load + Δextract + fit) "
                   "or is a cold evaluation; the same default as simulate --promotion-cost.")
@click.option("--workers", type=int, default=1, show_default=True,
              help="K workers (Dask): on CUDA one process per GPU, its own, from --device's on (--device cuda:1 "
                   "--workers 2: GPUs 1 and 2; more workers than GPUs is refused; dask-cuda's cluster where "
                   "installed); on a CPU K processes with one torch thread each; with --cluster slurm one Slurm "
                   "job each.  The budget is the K-worker search's time, each evaluation's measured seconds laid "
                   "on its worker's timeline.  A failed evaluation frees its worker; one whose worker dies is "
                   "run once more on another.")
@click.option("--threads", type=int, default=None,
              help="torch threads per worker (default: torch's with one worker or on a GPU, 1 per CPU worker).")
@click.option("--cluster", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
              help="slurm: one Slurm job per worker (dask-jobqueue), with the Slurm options below, the same as "
                   "`precompute run --launcher slurm` takes.")
@slurm_options
@click.option("--wait-timeout", default="15m", show_default=True,
              help="The longest the search waits on its workers: for them to start, and for an evaluation to come "
                   "back past what its budget allows.")
@click.option("--top", type=int, default=10, show_default=True, help="Rows of the closing table.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def search_cmd(dataset, budget, strategy, evaluator, pools, include_test_models, max_params, max_gmacs,
               max_latency_ms, latency_device, max_memory_mb, weights, device, seed, out, final,
               input_size, batch_size, data_root, download, cache_dir, eta, sh_chunk, sh_fractions, promotion_cost,
               workers, threads, cluster, slurm, wait_timeout, top, no_progress) -> None:
    """Find a backbone for DATASET: run one strategy for real under a time budget."""

    # every cheap check, once, before the pool is built (SearchConfig validates when it is made)
    limits, latency = limits_of(max_params, max_gmacs, max_latency_ms, latency_device, max_memory_mb)
    cfg = SearchConfig(dataset=dataset, budget=budget, strategy=strategy, evaluator=evaluator, out=out,
                       seed=seed, weights=weights, device=device, batch_size=batch_size, input_size=input_size,
                       data_root=data_root, download=download, cache_dir=cache_dir, final=final, eta=eta,
                       sh_chunk=sh_chunk, sh_fractions=parse_floats(sh_fractions, "sh-fractions", "0.01,0.1,1.0"),
                       promotion_cost=promotion_cost, workers=workers, threads=threads, cluster=cluster,
                       slurm=replace(slurm, job_name="vibes-search") if cluster == "slurm" else None,
                       wait_timeout=wait_timeout, limits=limits, command_config=resolved_config())
    pool = pool_mod.resolve_pool(pools, progress=not no_progress, echo=stderr_echo,
                                 include_test_models=include_test_models)
    res = live.run_search(cfg, pool, show_progress=not no_progress, echo=None, latency=latency)
    for line in live.summary_lines(res.doc, res.resumed, res.new_evaluations, top=top,
                              loop_wall=res.evaluation_wall_seconds, changed=res.changed):
        click.echo(line)
