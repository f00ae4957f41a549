"""``precompute pool``, ``run`` and ``merge``: the pool table, the (sharded, resumable) sweep, the oracle."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
import polars as pl

from precompute import parts as P
from precompute import pool as pool_mod
from precompute import weights as W
from precompute.datasets import dataset_names
from precompute.inputs import SweepConfig, check_dataset_name, check_evaluators, check_truth, parse_floats, parse_names
from precompute.parts import write_frame
from precompute.pool import (
    _TOP1_NOTE,
    build_pool,
    drop_excluded,
    filter_pool,
    left_out_test_models,
    match_names,
    pool_names,
    pretrained_names,
    read_names_file,
    read_pool_file,
    test_models_note,
)
from precompute.slurm import slurm_options
from shared.durations import parse_duration
from shared.errors import VibesError, unknown
from shared.help_sections import SectionedCommand, sections
from shared.limit_options import limit_options, limits_of
from shared.protocol import DEFAULT_EVALUATORS, DEFAULT_SEEDS, EVALUATOR_NAMES, HEADS, TRUTH, fractions_text

from .config import config_option, resolved_config
from .options import stderr_echo

DATASET_HELP = (f"One of {', '.join(dataset_names())} (folder:PATH: an ImageFolder tree; synthetic:N@SIZE: "
                f"N random images at SIZE px, for timing).")
TRUTH_HELP = (f"The evaluator whose score at fraction 1.0 is the truth (the oracle metadata's `truth`); default "
              f"{TRUTH} if it runs, else the only head of --evaluators ({', '.join(HEADS)}).")
EVALUATORS_HELP = (f"Comma-separated, of: {', '.join(EVALUATOR_NAMES)} (mlp, mlp-sklearn: heads trained on the "
                   f"features; the others score the frozen features; silhouette, logme, hscore need no test split).")
TEST_MODELS_HELP = ("Keep timm's toy test models (test_vit, test_resnet, ...: names starting with test_) in the "
                    "default pool and in globs that also match real backbones; named ones are always kept.")

POOL_EPILOG = """\b
Examples:
  precompute pool --out data/pool.parquet
  precompute pool --glob 'resnet*' --glob 'convnext_*' --max-gmacs 5 --out small.csv
  precompute pool --max-params 25 --max-latency-ms 2 --latency-device rtx4090 --out data/pool-fast.parquet \\
      --timm-results ../shared/timm-results   # timm's benchmark and results files, offline
"""

RUN_EPILOG = """\b
Examples:
  precompute run --dataset cifar10 --pool data/pool.parquet
  precompute run --dataset digits --pool 'resnet1*' --weights random --input-size 32
  precompute run --dataset gtsrb --shard 2/8                  # this machine: shard 2 of 8 (1-based)
  precompute run --dataset gtsrb --launcher slurm --shards 64 --partition gpu \\
      --gpus-per-job 1 --time-limit 4h --slurm-arg --account=myproj --no-wait
  precompute run --dataset gtsrb --retry-failed               # redo only failed backbones
  HF_HUB_OFFLINE=1 precompute run --dataset gtsrb --pool data/pool.parquet --evict-weights
Parts go to <parts-dir>/<dataset>/<backbone>.parquet; a rerun skips the ones done.
Every argument is checked before the pool is built or a model is loaded; offline
(HF_HUB_OFFLINE=1) backbones without cached weights are failed rows (`precompute fetch` first).
"""

MERGE_EPILOG = """\b
Examples:
  precompute merge --dataset gtsrb
  precompute merge --dataset gtsrb --format hdf5 --out oracles/
  precompute merge --dataset gtsrb --truth mlp-sklearn     # parts of a run without mlp
"""



@click.command("pool", epilog=POOL_EPILOG)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the pool table (.parquet or .csv); default: print a summary.")
@click.option("--glob", "globs", multiple=True, help="Keep names/architectures matching (repeatable).")
@click.option("--names-file", type=click.Path(), default=None, help="One backbone name per line.")
@limit_options
@click.option("--refresh", is_flag=True, help="Re-measure names already in the cache.")
@click.option("--include-excluded", is_flag=True,
              help="Keep backbones that cannot run in the pipeline (their 'excluded' column says why).")
@click.option("--include-test-models", is_flag=True, help=TEST_MODELS_HELP)
@click.option("--timm-results", type=click.Path(), envvar="VIBES_TIMM_RESULTS", default=None,
              help="Folder with timm's results-imagenet.csv for the imagenet_top1 column "
                   "(or $VIBES_TIMM_RESULTS; default: the cached download).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def pool_cmd(out, globs, names_file, max_params, max_gmacs, max_latency_ms, latency_device, max_memory_mb,
             refresh, include_excluded, include_test_models, timm_results, no_progress) -> None:
    """Measure every pretrained timm backbone (params, GMACs, feature dim, pretraining facts;
    published ImageNet top-1 joined from timm's results files)."""

    if out is not None and Path(out).suffix.lower() not in (".parquet", ".csv"):
        raise VibesError(f"--out must end in .parquet or .csv; got {out!r}")
    limits, latency = limits_of(max_params, max_gmacs, max_latency_ms, latency_device, max_memory_mb,
                                timm_results)
    all_names = pretrained_names()  # timm's list; from the shipped table without importing torch
    names = None
    if globs or names_file:
        wanted = match_names(globs, all_names, include_test_models) if globs else []
        if names_file:
            listed = read_names_file(names_file)
            for n in listed:
                if n not in set(all_names):
                    raise unknown("backbone", n, all_names)
            wanted = [n for n in wanted if n in set(listed)] if globs else listed
        names = wanted
    pool = build_pool(names, refresh=refresh, progress=not no_progress, timm_results=timm_results,
                      include_test_models=include_test_models)
    notes = list(_TOP1_NOTE)  # said once the pool is made (an error before it says only itself)
    left_out = [] if names_file else left_out_test_models(globs, include_test_models)
    if left_out:
        notes.append(test_models_note(left_out).removeprefix("pool: "))
    if not include_excluded:
        pool = drop_excluded(pool, echo=stderr_echo)
    pool = filter_pool(pool, globs=globs, names_file=names_file, limits=limits, latency=latency)
    if out:
        write_frame(pool, out)
        click.echo(f"pool: {pool.height} backbones -> {out}")
    else:
        click.echo(f"pool: {pool.height} backbones "
                   f"({pool.filter(pl.col('error').is_not_null()).height} failed to build)")
    for note in notes:
        click.echo(f"note: {note}", err=True)


@sections(("Common", ("--config", "--dataset", "--pool", "--include-test-models", "--out", "--parts-dir", "--format",
                       "--no-progress", "--help")),
          ("Evaluation", ("--fractions", "--seeds", "--evaluators", "--truth", "--keep-features", "--retry-failed")),
          ("Data", ("--weights", "--pretrained-file", "--input-size", "--batch-size", "--data-root", "--download",
                    "--cache-dir", "--evict-weights")),
          ("Devices and shards", ("--device", "--shard", "--launcher", "--shards")),
          ("Cluster", ("--partition", "--time-limit", "--cpus-per-job", "--mem-gb", "--gpus-per-job", "--slurm-arg",
                       "--array-parallelism", "--wait", "--wait-timeout")))
@click.command("run", cls=SectionedCommand, epilog=RUN_EPILOG)
@config_option
@click.option("--dataset", required=True, help=DATASET_HELP)
@click.option("--pool", "pools", multiple=True,
              help="Pool file (.parquet/.csv from `precompute pool`, .txt names) or a name glob; "
                   "repeatable. Default: all pretrained timm backbones (but timm's toy test_* models).")
@click.option("--include-test-models", is_flag=True, help=TEST_MODELS_HELP)
@click.option("--fractions", default=fractions_text(), show_default=True,
              help="Shares of the train and test splits, comma-separated; a fraction that leaves a class "
                   "without a test image is refused while an evaluator scores on the test split.")
@click.option("--seeds", type=int, default=DEFAULT_SEEDS, show_default=True, help="Replicates 0..N-1.")
@click.option("--evaluators", default=",".join(DEFAULT_EVALUATORS), show_default=True, help=EVALUATORS_HELP)
@click.option("--truth", default=None, help=TRUTH_HELP)
@click.option("--weights", type=click.Choice(["pretrained", "random"]), default="pretrained", show_default=True)
@click.option("--pretrained-file", type=click.Path(), default=None, help="Local weights for a single backbone.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--input-size", type=int, default=None, help="Override the input resolution.")
@click.option("--data-root", default="data/datasets", show_default=True)
@click.option("--download", is_flag=True, help="Download the dataset if missing.")
@click.option("--cache-dir", default="data/cache", show_default=True)
@click.option("--out", default="data/oracles", show_default=True, help="Folder for the merged oracle.")
@click.option("--parts-dir", default="data/parts", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["parquet", "hdf5"]), default="parquet", show_default=True)
@click.option("--keep-features", is_flag=True, help="Keep float16 features per backbone (h5).")
@click.option("--shard", default=None, help="I/N, 1-based: run only shard I of N (balanced by GMACs).")
@click.option("--retry-failed", is_flag=True, help="Redo only backbones whose part has failed rows.")
@click.option("--evict-weights", is_flag=True,
              help="Delete each backbone's downloaded weights after its evaluation (kept if cached before).")
@click.option("--launcher", type=click.Choice(["none", "local", "slurm"]), default="none", show_default=True)
@click.option("--shards", type=int, default=None,
              help="Tasks (local: one per GPU, default all GPUs or 2 on a CPU; slurm: array size, default 1).")
@slurm_options
@click.option("--array-parallelism", type=int, default=32, show_default=True,
              help="Slurm: tasks of the array running at once.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the jobs, then merge.")
@click.option("--wait-timeout", default="7d", show_default=True,
              help="--wait: give up waiting after this long (the jobs go on; merge when they finish).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def run_cmd(dataset, pools, include_test_models, fractions, seeds, evaluators, truth, weights, pretrained_file, device,
            batch_size, input_size, data_root, download, cache_dir, out, parts_dir, fmt,
            keep_features, shard, retry_failed, evict_weights, launcher, shards, slurm, array_parallelism,
            wait, wait_timeout, no_progress) -> None:
    """Evaluate every backbone of the pool on DATASET; write parts, then merge the oracle."""
    cfg = SweepConfig(dataset=dataset, fractions=parse_floats(fractions, "fractions"),
                      seeds=seeds, evaluators=parse_names(evaluators, "evaluators"),
                      weights=weights, pretrained_file=pretrained_file, device=device,
                      batch_size=batch_size, input_size=input_size, data_root=data_root,
                      download=download, cache_dir=cache_dir, parts_dir=parts_dir,
                      keep_features=keep_features, retry_failed=retry_failed,
                      evict_weights=evict_weights, truth=truth, command_config=resolved_config())
    the_shard = _check_run_args(cfg, pools, shard, launcher, shards, include_test_models)
    wait_s = parse_duration(wait_timeout, "--wait-timeout")
    notes: list[str] = []  # the pool's notes, said once the run went ahead (a refusal says only itself)
    pool = pool_mod.resolve_pool(pools, progress=not no_progress, echo=notes.append,
                                 include_test_models=include_test_models)
    oracle_path = P.default_oracle_path(cfg.dataset, out, fmt)
    merge_hint = (f"precompute merge --dataset {dataset} --parts-dir {parts_dir} --out {out} --format {fmt}"
                  + (f" --truth {truth}" if truth else ""))

    if launcher == "none":
        from precompute.sweep import run_sweep  # lazy: torch and timm load once the arguments are checked

        run_sweep(cfg, pool, the_shard, show_progress=not no_progress, echo=click.echo)
        _say(notes)
        if the_shard is not None:
            click.echo(f"shard {the_shard[0] + 1}/{the_shard[1]} done; when all shards are, "
                       f"run: {merge_hint}")
            return
    else:
        from precompute.launch import local_gpus, submit_shards, wait_jobs  # lazy: submitit only for a launcher

        n = shards if shards is not None else (1 if launcher == "slurm" else (len(local_gpus()) or 2))
        if launcher == "local":  # this machine's tasks would each refuse the data: say it once, before them
            from precompute.sweep import check_data  # lazy: the command's domain code

            check_data(cfg)
        jobs = submit_shards(cfg, pool, launcher, n, replace(slurm, job_name="vibes-precompute"),
                             array_parallelism=array_parallelism)
        _say(notes)
        click.echo(f"submitted {len(jobs)} {launcher} task(s): job ids "
                   f"{', '.join(str(j.job_id) for j in jobs)}")
        if not wait:
            click.echo(f"when they finish, run: {merge_hint}")
            return
        wait_jobs(jobs, echo=click.echo, timeout_s=wait_s, merge_hint=merge_hint)
    report = P.merge(cfg.dataset, parts_dir, oracle_path, fmt,
                     expected=pool.get_column("backbone").to_list(), truth=truth)
    _echo_report(report)


@click.command("merge", epilog=MERGE_EPILOG)
@click.option("--dataset", required=True, help=DATASET_HELP)
@click.option("--parts-dir", default="data/parts", show_default=True)
@click.option("--out", default="data/oracles", show_default=True, help="Oracle file or folder.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "hdf5"]), default="parquet", show_default=True)
@click.option("--pool", "pools", multiple=True, help="Expected pool (files or globs); default: the run's manifest.")
@click.option("--truth", default=None,
              help="The evaluator whose score at fraction 1.0 is the truth; default: the one the parts record "
                   "(`precompute run --truth`, or inferred from its evaluators).")
def merge_cmd(dataset, parts_dir, out, fmt, pools, truth) -> None:
    """Merge the part files of DATASET into one validated oracle; report missing/failed."""

    expected = None
    if pools:
        files = [Path(p) for p in pools if Path(p).is_file()]
        globs = [p for p in pools if not Path(p).is_file()]
        expected = [n for f in files for n in read_pool_file(f).get_column("backbone").to_list()]
        if globs:
            expected += match_names(globs, pretrained_names())
    _echo_report(P.merge(dataset, parts_dir, out, fmt, expected=expected, truth=truth))


def _check_run_args(cfg, pools, shard, launcher, shards, include_test_models=False) -> tuple[int, int] | None:
    """Every cheap check of ``run``, before the pool is built or a model loaded (torch is imported only
    once the arguments are checked: for whether this machine has the device); returns the shard."""
    import shutil

    check_evaluators(cfg.evaluators)
    check_truth(cfg)  # a run without truth rows would write parts no oracle can be merged from
    cfg.dataset = check_dataset_name(cfg.dataset)  # unknown -> the valid ones; folder must exist
    the_shard = P.parse_shard(shard)
    if launcher != "none" and the_shard is not None:
        raise VibesError("--shard is for one worker (--launcher none); with a launcher use "
                         "--shards N and every task takes its own shard")
    if launcher == "none" and shards is not None:
        raise VibesError("--shards needs --launcher local or slurm; for one worker use --shard I/N")
    if shards is not None and shards < 1:
        raise VibesError(f"--shards must be a positive integer; got {shards}")
    if launcher == "slurm":
        if shutil.which("srun") is None:
            raise VibesError("--launcher slurm needs a Slurm cluster (srun and sbatch on PATH): "
                             "srun not found")
    if launcher == "local":
        from precompute.launch import check_local_shards  # lazy: submitit only for --launcher local

        if shards is not None:
            check_local_shards(shards)
    if cfg.pretrained_file is not None and not Path(cfg.pretrained_file).is_file():
        raise VibesError(f"pretrained weights file {cfg.pretrained_file!r} not found; "
                         f"expected a .safetensors/.pth state dict")
    names = pool_names(pools, include_test_models)  # an unknown name or glob: said before torch loads
    if launcher != "slurm":  # the device is this machine's (slurm: the compute node's, checked there)
        from precompute.backbone import resolve_device  # lazy: torch and timm load for this check only

        resolve_device(cfg.device)
    if cfg.weights == "pretrained" and cfg.pretrained_file is None and W.is_offline():
        missing = [n for n in names if not W.is_cached(n)]
        if missing and len(missing) == len(names):
            raise VibesError(f"HF_HUB_OFFLINE=1 and none of the {len(names)} backbones' weights are "
                             f"cached (e.g. {missing[0]}); run `precompute fetch` with the same --pool "
                             f"on a machine with internet first")
        if missing:
            click.echo(f"warning: HF_HUB_OFFLINE=1 and {len(missing)} of {len(names)} backbones have no "
                       f"cached weights (e.g. {missing[0]}); they become failed rows; run `precompute "
                       f"fetch` with the same --pool first, then --retry-failed", err=True)
    return the_shard


def _say(notes: list[str]) -> None:
    for note in notes:
        stderr_echo(note)


def _echo_report(report) -> None:
    click.echo(report.summary())
    for row in report.failed.iter_rows(named=True):
        click.echo(f"  failed: {row['backbone']}: {row['error']}")
