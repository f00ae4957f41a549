"""``simulate import``: a published results table (CSV or Parquet) -> schema-v1 oracles, one per dataset.

A *long* table has one row per (backbone, dataset[, evaluator]) with the score in one column
(``--dataset-col``, ``--score-col``, optional ``--evaluator-col`` or a fixed ``--evaluator``); a
*wide* table has one row per backbone and one score column per dataset (``--datasets COL,COL`` or
``--datasets all``: every numeric column the other options do not name, less ``--exclude``).
Each dataset becomes ``DIR/<slug>.parquet``, the slug being the dataset name in lower case with
every run of other characters than ``a-z0-9`` turned into ``-`` (``"Oxford Flowers-102"`` ->
``oxford-flowers-102``); two datasets with one slug are refused.

Rules (every refusal is one line, exit status 2, and nothing is written):

* Scores (``--score-scale``): ``percent`` divides by 100 (values must lie in [0, 100]);
  ``fraction`` takes the scores as they are (any higher-is-better number, e.g. a proxy); ``auto``
  (default) decides per *score series* — a wide table's dataset column, a long table's score column
  per evaluator: all values in [0, 1] -> fraction; values in [0, 100] with none in (0, 1] and some
  above 1 -> percent; a value outside [0, 100] -> refused (say ``fraction`` to take them as they
  are); values both in (0, 1] and in (1, 100] -> refused as ambiguous (say which).
* A blank cell (or NaN) is no result: that backbone is absent for that dataset (counted).  An
  unnamed index column (``""``, ``"Unnamed: 0"``, ``"__index_level_0__"``) is ignored.
* Duplicate rows of one (backbone, dataset, evaluator) are averaged (score and seconds) and
  counted; ``--on-duplicate error`` refuses them.
* Costs: a measured ``--seconds-col`` (every value > 0), or a declared model — ``--cost-model
  gflops:COL --images N [--rate GFLOPS]`` (seconds = COL × N ÷ rate) or ``--cost-model constant:S``
  (every evaluation S, a duration).  The oracle metadata says ``costs`` = measured / modelled and,
  for a model, ``cost_model`` = ``"modelled: ..."``, which every summary and report repeats.
  A backbone without a cost (blank seconds or GFLOPs) is left out (counted).
* A dataset with fewer than two backbones with a truth score is skipped (a note); when no dataset
  has two, the import is refused.
* Backbone metadata: ``--params-col`` (-> params_m), ``--gflops-col`` (-> gmacs; the metadata
  says the column holds the table's GFLOPs), ``--pretrain-col`` (-> pretrain_dataset, and
  pretrain_images where the name is one of shared/pretrain_datasets.csv), ``--pretrain-method``
  (one method for every backbone).  What the table does not give comes from the shipped timm pool
  (``precompute/data/pool/pool-timm-*.parquet``, read as a file: params, GMACs, input size,
  feature width; pretraining facts from the tag via :mod:`shared.pretrain`) by exact name, by a
  user's ``--names FILE`` (a CSV with a header; its first two columns: table name, timm name), or
  by alias: a leading ``timm/``, ``hf-hub:timm/`` or ``hf_hub:timm/`` is stripped.  The table's
  own values win over the pool's.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import click
import polars as pl

from shared.durations import parse_duration
from shared.errors import VibesError, unknown
from shared.oracle import Oracle
from shared.pretrain import METHODS, pretrain_datasets, pretrain_frame
from shared.timm_results import ENV_DIR, imagenet_top1

SCALES = ("auto", "percent", "fraction")
ON_DUPLICATE = ("average", "error")
DEFAULT_EVALUATOR = "published"
DEFAULT_RATE_GFLOPS = 100_000.0
INDEX_COLUMN = re.compile(r"^(|Unnamed: \d+|__index_level_\d+__)$")
ALIAS = r"^(?:hf[-_]hub:)?timm/"
_SET = "__vibes_set__:"  # a wide table's score columns while they are unpivoted
POOL_DIR = Path(__file__).resolve().parents[1] / "precompute" / "data" / "pool"
#: per-backbone metadata of an oracle, as the importer fills it
PER_BACKBONE = ["architecture", "params_m", "gmacs", "input_size", "feature_dim", "pretrain_dataset",
                "pretrain_images", "pretrain_method", "imagenet_top1"]
#: the table's own per-backbone columns, by their internal names
TABLE_META = {"params_col": "params_m", "gflops_col": "gflops", "pretrain_col": "pretrain_dataset"}


@dataclass(frozen=True)
class ImportSpec:
    """What ``simulate import`` was told about a table (the CLI options, one field each)."""

    backbone_col: str = "backbone"
    dataset_col: str | None = None
    score_col: str | None = None
    datasets: tuple[str, ...] | None = None  # wide; ("all",) = every numeric column not named
    exclude: tuple[str, ...] = ()
    evaluator_col: str | None = None
    evaluator: str | None = None
    truth: str | None = None
    seconds_col: str | None = None
    cost_model: str | None = None  # "gflops:COL" or "constant:S"
    images: int | None = None
    rate: float = DEFAULT_RATE_GFLOPS
    score_scale: str = "auto"
    on_duplicate: str = "average"
    params_col: str | None = None
    gflops_col: str | None = None
    pretrain_col: str | None = None
    pretrain_method: str | None = None
    names_file: str | None = None
    join_pool: bool = True
    timm_results: str | None = None
    gflops_label: str | None = None  # how cost_model names the GFLOPs (default: the column)
    images_are_n_test: bool = True  # --images is the test set (n_test); False: only the cost model's count


@dataclass
class Imported:
    """The import's result: oracles by dataset name (with their file slugs), notes, the match line."""

    oracles: dict[str, Oracle] = field(default_factory=dict)
    slugs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    matched: str | None = None


def slugify(name: str) -> str:
    """``"Oxford Flowers-102"`` -> ``"oxford-flowers-102"``: lower case, other runs -> ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")


def read_table(path: str | os.PathLike) -> pl.DataFrame:
    """A CSV (``.csv``, ``.tsv``) or Parquet (``.parquet``, ``.pq``) table, without unnamed index columns."""
    p = Path(path)
    if not p.is_file():
        raise VibesError(f"table {str(p)!r} does not exist or is not a file")
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".tsv", ".parquet", ".pq"):
        raise VibesError(f"table {str(p)!r}: expected a .csv, .tsv or .parquet file")
    try:
        if suffix in (".parquet", ".pq"):
            frame = pl.read_parquet(p)
        else:
            frame = pl.read_csv(p, infer_schema_length=None, separator="\t" if suffix == ".tsv" else ",")
    except Exception as exc:  # corrupt, truncated, not that format
        raise VibesError(f"cannot read table {str(p)!r}: {type(exc).__name__}: {exc}") from None
    return frame.drop([c for c in frame.columns if INDEX_COLUMN.match(c)])


def _require(frame: pl.DataFrame, cols, what: str = "table") -> None:
    missing = [c for c in dict.fromkeys(cols) if c and c not in frame.columns]
    if missing:
        raise VibesError(f"{what} has no column(s) {', '.join(map(repr, missing))}; its columns: "
                         f"{', '.join(map(repr, frame.columns))}")


def _numeric(frame: pl.DataFrame, cols, what: str) -> None:
    for c in cols:
        if not (frame.schema[c].is_numeric() or frame.schema[c] == pl.Null):
            bad = frame.get_column(c).drop_nulls().cast(pl.String)
            bad = bad.filter(bad.cast(pl.Float64, strict=False).is_null())
            raise VibesError(f"{what} column {c!r} is not numeric (e.g. {bad[0] if len(bad) else '?'!r})")


def _cost_column(spec: ImportSpec) -> str | None:
    kind, _, arg = (spec.cost_model or "").partition(":")
    return arg if kind == "gflops" else None


def _meta_exprs(frame: pl.DataFrame, spec: ImportSpec) -> list[pl.Expr]:
    """The table's per-backbone columns under internal names (absent: null)."""
    exprs = [pl.concat_str([pl.col(c).cast(pl.String) for c in backbone_cols(spec)], separator=".")
             .alias("backbone")]
    seconds = [(spec.seconds_col, "seconds"), (_cost_column(spec), "cost_gflops")]
    for col, name in [*[(getattr(spec, k), v) for k, v in TABLE_META.items()], *seconds]:
        if col is None:
            exprs.append(pl.lit(None, dtype=pl.String if name == "pretrain_dataset" else pl.Float64).alias(name))
        elif name == "pretrain_dataset":
            exprs.append(pl.col(col).cast(pl.String).alias(name))
        else:
            exprs.append(pl.col(col).cast(pl.Float64).fill_nan(None).alias(name))
    return exprs


def backbone_cols(spec: ImportSpec) -> tuple[str, ...]:
    """``--backbone-col name`` or ``name,tag`` (joined with a dot, timm's ``arch.tag``)."""
    return tuple(c.strip() for c in spec.backbone_col.split(",") if c.strip())


def _named(spec: ImportSpec) -> list[str]:
    cols = [*backbone_cols(spec), spec.seconds_col, _cost_column(spec), *[getattr(spec, k) for k in TABLE_META]]
    return [c for c in cols if c]


def long_rows(frame: pl.DataFrame, spec: ImportSpec) -> pl.DataFrame:
    """One row per (backbone, dataset, evaluator) cell: backbone, dataset, evaluator, score (raw),
    series (which score column, for the scale rule), and the per-backbone columns."""
    wide = spec.datasets is not None
    if wide == bool(spec.dataset_col or spec.score_col):
        raise VibesError("say the table's shape: a long table with --dataset-col and --score-col, or a wide "
                         "table with --datasets COL,COL,... or --datasets all (not both)")
    if spec.evaluator_col and spec.evaluator:
        raise VibesError("--evaluator-col and --evaluator exclude each other (a column of evaluators, or one name)")
    if wide and spec.evaluator_col:
        raise VibesError("a wide table has one evaluator: give --evaluator NAME, not --evaluator-col")
    _require(frame, _named(spec))
    _numeric(frame, [c for c in _named(spec) if c not in (*backbone_cols(spec), spec.pretrain_col)], "table")
    return _wide(frame, spec) if wide else _long(frame, spec)


def _wide(frame: pl.DataFrame, spec: ImportSpec) -> pl.DataFrame:
    skip = set(_named(spec)) | set(spec.exclude)
    if spec.datasets == ("all",):
        sets = [c for c in frame.columns if c not in skip and frame.schema[c].is_numeric()]
        if not sets:
            raise VibesError(f"--datasets all: the table has no numeric column besides the named ones; its "
                             f"columns: {', '.join(map(repr, frame.columns))}")
    else:
        sets = list(dict.fromkeys(spec.datasets))
        _require(frame, sets)
    _numeric(frame, sets, "score")
    base = frame.select(*_meta_exprs(frame, spec), *[pl.col(c).cast(pl.Float64).alias(_SET + c) for c in sets])
    long = base.unpivot(on=[_SET + c for c in sets], index=[c for c in base.columns if not c.startswith(_SET)],
                        variable_name="dataset", value_name="score")
    return long.with_columns(pl.col("dataset").str.strip_prefix(_SET),
                             pl.lit(spec.evaluator or DEFAULT_EVALUATOR).alias("evaluator"),
                             pl.col("score").fill_nan(None)).with_columns(
        pl.format("column '{}'", pl.col("dataset")).alias("series"))


def _long(frame: pl.DataFrame, spec: ImportSpec) -> pl.DataFrame:
    _require(frame, [spec.dataset_col, spec.score_col, spec.evaluator_col])
    _numeric(frame, [spec.score_col], "score")
    evaluator = (pl.col(spec.evaluator_col).cast(pl.String) if spec.evaluator_col
                 else pl.lit(spec.evaluator or DEFAULT_EVALUATOR))
    return frame.select(
        *_meta_exprs(frame, spec),
        pl.col(spec.dataset_col).cast(pl.String).alias("dataset"),
        evaluator.alias("evaluator"),
        pl.col(spec.score_col).cast(pl.Float64).fill_nan(None).alias("score"),
    ).with_columns(pl.format(f"column {spec.score_col!r} (evaluator '{{}}')", pl.col("evaluator")).alias("series"))


def drop_blanks(long: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Rows without a backbone, dataset, evaluator or score are no result; counted per dataset."""
    notes = []
    unnamed = long.filter(pl.any_horizontal(pl.col("backbone", "dataset", "evaluator").is_null()))
    if unnamed.height:
        notes.append(f"{unnamed.height} row(s) without a backbone, dataset or evaluator name are left out")
    long = long.filter(pl.all_horizontal(pl.col("backbone", "dataset", "evaluator").is_not_null()))
    blank = (long.filter(pl.col("score").is_null()).group_by("dataset", "evaluator", maintain_order=True)
             .agg(pl.col("backbone").n_unique().alias("n")))
    notes += [f"{r['dataset']}: {r['n']} backbone(s) have no {r['evaluator']} result (blank cell) and are "
              f"absent there" for r in blank.iter_rows(named=True)]
    ev = long.get_column("evaluator").unique().to_list()
    if bad := [e for e in ev if "@" in e or not e.strip()]:
        raise VibesError(f"evaluator name {bad[0]!r}: a name may not be empty or contain '@' "
                         f"(evaluator specs are <evaluator>[@<fraction>])")
    return long.filter(pl.col("score").is_not_null()), notes


def scale_scores(long: pl.DataFrame, how: str) -> tuple[pl.DataFrame, str]:
    """Scores as fractions by the ``--score-scale`` rule (module doc); also says what it did."""
    if how not in SCALES:
        raise VibesError(f"--score-scale {how!r}: expected one of {', '.join(SCALES)}")
    if how == "fraction" or long.height == 0:
        return long, "scores taken as they are (--score-scale fraction)"
    s = pl.col("score")
    stats = long.group_by("series", maintain_order=True).agg(
        s.min().alias("lo"), s.max().alias("hi"), ((s > 0) & (s <= 1)).any().alias("small"),
        (s > 1).any().alias("big"), s.filter((s > 0) & (s <= 1)).first().alias("small_v"),
        s.filter(s > 1).first().alias("big_v"))
    outside = stats.filter((pl.col("lo") < 0) | (pl.col("hi") > 100))
    if outside.height:
        r = outside.row(0, named=True)
        raise VibesError(f"scores of {r['series']} run from {r['lo']:g} to {r['hi']:g}, outside [0, 100]: neither "
                         f"a fraction nor a percentage; give --score-scale fraction to take them as they are")
    if how == "percent":
        return long.with_columns(s / 100), "scores in percent, divided by 100 (--score-scale percent)"
    mixed = stats.filter(pl.col("small") & pl.col("big"))
    if mixed.height:
        r = mixed.row(0, named=True)
        raise VibesError(f"scores of {r['series']} mix values in (0, 1] (a fraction? e.g. {r['small_v']:g}) and "
                         f"above 1 (a percentage? e.g. {r['big_v']:g}); say which with --score-scale percent "
                         f"or --score-scale fraction")
    pct = stats.filter(pl.col("big")).get_column("series").to_list()
    out = long.with_columns(pl.when(pl.col("series").is_in(pct)).then(s / 100).otherwise(s).alias("score"))
    said = (f"scores of {', '.join(pct)} in percent (values above 1), divided by 100; the others are fractions"
            if pct else "scores are fractions (every value in [0, 1])")
    return out, said


def collapse_duplicates(long: pl.DataFrame, on_duplicate: str) -> tuple[pl.DataFrame, list[str]]:
    """One row per (backbone, dataset, evaluator): duplicates averaged (score, seconds) or refused."""
    if on_duplicate not in ON_DUPLICATE:
        raise VibesError(f"--on-duplicate {on_duplicate!r}: expected one of {', '.join(ON_DUPLICATE)}")
    key = ["backbone", "dataset", "evaluator"]
    dups = long.group_by(key, maintain_order=True).len().filter(pl.col("len") > 1)
    if not dups.height:
        return long, []
    r = dups.row(0, named=True)
    example = f"e.g. {r['backbone']} / {r['dataset']} / {r['evaluator']} appears {r['len']} times"
    if on_duplicate == "error":
        raise VibesError(f"the table has {dups.height} duplicate (backbone, dataset, evaluator) key(s), {example}; "
                         f"--on-duplicate average averages them")
    rest = [c for c in long.columns if c not in key and c not in ("score", "seconds")]
    out = long.group_by(key, maintain_order=True).agg(
        pl.col("score").mean(), pl.col("seconds").mean(), *[pl.col(c).drop_nulls().first() for c in rest])
    extra = int(dups.get_column("len").sum()) - dups.height
    return out, [f"{extra} duplicate row(s) of {dups.height} (backbone, dataset, evaluator) key(s) averaged "
                 f"({example})"]


def add_costs(long: pl.DataFrame, spec: ImportSpec) -> tuple[pl.DataFrame, dict, list[str]]:
    """``seconds`` per row, measured or modelled; the metadata saying which; notes."""
    kind, _, arg = (spec.cost_model or "").partition(":")
    if spec.seconds_col and spec.cost_model:
        raise VibesError("--seconds-col and --cost-model exclude each other (measured or modelled costs)")
    if spec.seconds_col:
        meta = {"costs": "measured", "cost_source": f"column {spec.seconds_col!r}, seconds per evaluation"}
    elif kind == "gflops" and arg:
        if not spec.images or spec.images < 1:
            raise VibesError("--cost-model gflops:COL needs --images N (the images one evaluation runs through)")
        if not spec.rate > 0:
            raise VibesError(f"--rate {spec.rate:g}: expected a positive GFLOP/s")
        label = spec.gflops_label or f"GFLOPs (column {arg!r})"
        meta = {"costs": "modelled", "cost_model": f"modelled: {label} × {spec.images:,} images ÷ "
                                                   f"{spec.rate:,g} GFLOP/s (not measured)"}
        long = long.with_columns((pl.col("cost_gflops") * spec.images / spec.rate).alias("seconds"))
    elif kind == "constant" and arg:
        s = parse_duration(arg, "--cost-model constant:S")
        meta = {"costs": "modelled", "cost_model": f"modelled: every evaluation {s:g} s (a constant, not measured)"}
        long = long.with_columns(pl.lit(s).alias("seconds"))
    elif spec.cost_model:
        raise VibesError(f"--cost-model {spec.cost_model!r}: expected gflops:COL or constant:S (e.g. constant:60s)")
    else:
        raise VibesError("an oracle needs costs: give --seconds-col COL (measured), or a declared model: "
                         "--cost-model gflops:COL --images N [--rate GFLOPS], or --cost-model constant:S")
    bad = long.filter(pl.col("seconds") <= 0)
    if bad.height:
        r = bad.row(0, named=True)
        raise VibesError(f"{bad.height} row(s) have zero or negative seconds, e.g. {r['backbone']} on {r['dataset']} "
                         f"({r['seconds']:g} s); an evaluation costs time")
    none = long.filter(pl.col("seconds").is_null()).get_column("backbone").unique(maintain_order=True)
    notes = [f"{len(none)} backbone(s) have no cost (blank seconds or GFLOPs) and are left out, e.g. {none[0]}"
             ] if len(none) else []
    return long.filter(pl.col("seconds").is_not_null()), meta, notes


def timm_pool() -> pl.DataFrame:
    """The shipped timm pool table (measured params, GMACs, input size, feature width per pretrained
    name), read as a file: simulate never imports precompute.  Empty when not shipped."""
    cols = {"backbone": pl.String, "architecture": pl.String, "params_m": pl.Float64, "gmacs": pl.Float64,
            "input_size": pl.Int32, "feature_dim": pl.Int32}
    files = sorted(POOL_DIR.glob("pool-timm-*.parquet"))
    if not files:
        return pl.DataFrame(schema=cols)
    return pl.read_parquet(files[-1], columns=list(cols)).select([pl.col(c).cast(t) for c, t in cols.items()])


def _names_map(path: str | None) -> pl.DataFrame:
    """``--names FILE``: a CSV with a header; its first two columns are table name, timm name."""
    schema = {"backbone": pl.String, "by_names": pl.String}
    if path is None:
        return pl.DataFrame(schema=schema)
    frame = read_table(path)
    if frame.width < 2:
        raise VibesError(f"--names {path!r}: expected two columns (table name, timm name); it has "
                         f"{', '.join(map(repr, frame.columns))}")
    return (frame.select(pl.nth(0).cast(pl.String).alias("backbone"), pl.nth(1).cast(pl.String).alias("by_names"))
            .drop_nulls().unique("backbone", keep="first", maintain_order=True))


def _timm_names(per: pl.DataFrame, spec: ImportSpec) -> tuple[pl.DataFrame, str]:
    """backbone -> timm_name (or null) and how it matched; the line that counts them."""
    pool_names = timm_pool().get_column("backbone").implode()
    alias = pl.col("backbone").str.replace(ALIAS, "")
    named = per.select("backbone").join(_names_map(spec.names_file), on="backbone", how="left")
    out = named.with_columns(
        pl.when(pl.col("backbone").is_in(pool_names)).then(pl.lit("exact"))
        .when(pl.col("by_names").is_in(pool_names)).then(pl.lit("names"))
        .when(alias.is_in(pool_names)).then(pl.lit("alias")).alias("how"))
    out = out.with_columns(pl.when(pl.col("how") == "exact").then(pl.col("backbone"))
                           .when(pl.col("how") == "names").then(pl.col("by_names"))
                           .when(pl.col("how") == "alias").then(alias).alias("timm_name"))
    n = lambda how: out.filter(pl.col("how") == how).height  # noqa: E731
    line = (f"metadata: {out.get_column('how').is_not_null().sum()} of {out.height} backbones matched the timm "
            f"pool ({n('alias')} by alias, {n('names')} by --names)")
    return out.select("backbone", "timm_name"), line


def _pool_meta(names: pl.DataFrame, spec: ImportSpec) -> tuple[pl.DataFrame, list[str]]:
    """Per backbone, the timm pool's metadata of its matched timm name (null where unmatched)."""
    matched = names.filter(pl.col("timm_name").is_not_null())
    pre = pretrain_frame(matched.get_column("timm_name").to_list()).select(
        pl.col("backbone").alias("timm_name"), "pretrain_dataset", "pretrain_images", "pretrain_method")
    out = (names.join(timm_pool().rename({"backbone": "timm_name"}), on="timm_name", how="left")
           .join(pre.unique("timm_name"), on="timm_name", how="left"))
    notes = []
    try:
        if not (spec.timm_results or os.environ.get(ENV_DIR)):
            raise VibesError(f"no local timm results folder (--timm-results DIR or ${ENV_DIR}); nothing is downloaded")
        top1 = imagenet_top1(spec.timm_results).rename({"backbone": "timm_name"})
        out = out.join(top1, on="timm_name", how="left")
    except VibesError as exc:
        if matched.height:
            notes.append(f"imagenet_top1 left null ({exc})")
        out = out.with_columns(pl.lit(None, dtype=pl.Float64).alias("imagenet_top1"))
    return out.drop("timm_name"), notes


def backbone_metadata(long: pl.DataFrame, spec: ImportSpec) -> tuple[pl.DataFrame, str | None, list[str]]:
    """One row per backbone: the oracle's metadata columns (:data:`PER_BACKBONE`); the table's own
    values win over the timm pool's."""
    if spec.pretrain_method is not None and spec.pretrain_method not in METHODS:
        raise unknown("pretraining method", spec.pretrain_method, METHODS)
    per = long.group_by("backbone", maintain_order=True).agg(
        [pl.col(c).drop_nulls().first() for c in ("params_m", "gflops", "pretrain_dataset")])
    images = pretrain_datasets().select(pl.col("dataset").alias("pretrain_dataset"),
                                        pl.col("images").alias("table_images"))
    per = per.join(images, on="pretrain_dataset", how="left")
    line, notes = None, []
    if spec.join_pool:
        names, line = _timm_names(per, spec)
        pool, notes = _pool_meta(names, spec)
    else:
        pool = per.select("backbone", *[pl.lit(None).alias(c) for c in PER_BACKBONE])
    pool = pool.rename({c: f"pool_{c}" for c in pool.columns if c != "backbone"})
    per = per.join(pool, on="backbone", how="left")
    table = pl.col("pretrain_dataset").is_not_null()
    return per.select(
        "backbone",
        pl.coalesce("pool_architecture", pl.col("backbone").str.split(".").list.first()).alias("architecture"),
        pl.coalesce("params_m", "pool_params_m").cast(pl.Float64).alias("params_m"),
        # the table's GFLOPs and the pool's GMACs are different units: never mixed in one column
        (pl.col("gflops") if spec.gflops_col else pl.col("pool_gmacs")).cast(pl.Float64).alias("gmacs"),
        pl.col("pool_input_size").cast(pl.Int32).alias("input_size"),
        pl.col("pool_feature_dim").cast(pl.Int32).alias("feature_dim"),
        pl.coalesce("pretrain_dataset", "pool_pretrain_dataset").cast(pl.String).alias("pretrain_dataset"),
        pl.when(table).then(pl.col("table_images")).otherwise(pl.col("pool_pretrain_images"))
        .cast(pl.Float64).alias("pretrain_images"),
        pl.coalesce(pl.lit(spec.pretrain_method, dtype=pl.String), pl.col("pool_pretrain_method").cast(pl.String))
        .alias("pretrain_method"),
        pl.col("pool_imagenet_top1").cast(pl.Float64).alias("imagenet_top1"),
    ), line, notes


def _truth(long: pl.DataFrame, spec: ImportSpec) -> str:
    evaluators = long.get_column("evaluator").unique(maintain_order=True).to_list()
    if spec.truth is None:
        return evaluators[0]
    if spec.truth not in evaluators:
        raise unknown("--truth evaluator", spec.truth, evaluators)
    return spec.truth


def _protocol(spec: ImportSpec, scale: str, truth: str, evaluators: list[str]) -> dict:
    meta = {"truth": truth, "evaluators": evaluators, "score_scale": scale, "weights": "pretrained",
            "protocol": "published results imported by simulate import: one row per (backbone, evaluator), "
                        "fraction 1.0, seed 0; duplicates averaged"}
    if spec.gflops_col:
        meta["gmacs"] = f"the gmacs column holds the table's GFLOPs (column {spec.gflops_col!r}), not GMACs"
    if spec.pretrain_col:
        meta["pretrain"] = (f"pretrain_dataset from column {spec.pretrain_col!r}; pretrain_images where the "
                            f"name is in shared/pretrain_datasets.csv, else null")
    return meta


def build_oracles(long: pl.DataFrame, per: pl.DataFrame, meta: dict, spec: ImportSpec) -> Imported:
    """One validated oracle per dataset with >= 2 backbones scored by the truth evaluator."""
    truth = meta["truth"]
    n_test = spec.images if spec.images_are_n_test else None
    rows = long.select("dataset", "backbone", "evaluator", "score", "seconds")  # the table's own meta is in per
    frame = rows.join(per, on="backbone", how="left").select(
        "dataset", "backbone", "evaluator", pl.lit(1.0).alias("fraction"), pl.lit(0, dtype=pl.Int32).alias("seed"),
        "score", "seconds", pl.lit(n_test, dtype=pl.Int64).alias("n_test"), pl.lit("ok").alias("status"),
        *PER_BACKBONE)
    counts = (frame.filter(pl.col("evaluator") == truth).group_by("dataset", maintain_order=True)
              .agg(pl.col("backbone").n_unique().alias("n")))
    counts = frame.select("dataset").unique(maintain_order=True).join(counts, on="dataset", how="left")
    small = counts.filter(pl.col("n").fill_null(0) < 2)
    result = Imported()
    result.notes += [f"{r['dataset']}: {r['n'] or 0} backbone(s) with a {truth} score; skipped (an oracle needs 2)"
                     for r in small.iter_rows(named=True)]
    keep = counts.filter(pl.col("n") >= 2).get_column("dataset").to_list()
    if not keep:
        raise VibesError(f"no dataset has two backbones with a {truth} score ({counts.height} dataset(s) in the "
                         f"table); nothing to import")
    slugs = {name: slugify(name) for name in keep}
    if bad := [n for n, s in slugs.items() if not s]:
        raise VibesError(f"dataset name {bad[0]!r} gives no file name (no letter or digit)")
    if len(set(slugs.values())) < len(slugs):
        clash = sorted(slugs, key=slugs.get)
        clash = next(a for a, b in zip(clash, clash[1:]) if slugs[a] == slugs[b])
        raise VibesError(f"two datasets share the file name {slugs[clash]}.parquet (e.g. {clash!r}); rename one")
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for name in keep:  # one oracle per dataset (a few dozen), not a loop over rows
        m = {**meta, "dataset": name, "created": created, **({"n_test": n_test} if n_test else {})}
        result.oracles[name] = Oracle(frame.filter(pl.col("dataset") == name), m).validate()
    result.slugs = slugs
    return result


def import_frame(frame: pl.DataFrame, spec: ImportSpec, source: str) -> Imported:
    """A table already read -> oracles (nothing written): the whole import but the reading and writing."""
    if spec.score_scale not in SCALES:
        raise VibesError(f"--score-scale {spec.score_scale!r}: expected one of {', '.join(SCALES)}")
    long = long_rows(frame, spec)
    long, notes = drop_blanks(long)
    if long.height == 0:
        raise VibesError("the table has no score at all (every score cell is blank)")
    long, scale = scale_scores(long, spec.score_scale)
    long, dup_notes = collapse_duplicates(long, spec.on_duplicate)
    long, cost_meta, cost_notes = add_costs(long, spec)
    if long.height == 0:
        raise VibesError("no row has a cost; nothing to import")
    truth = _truth(long, spec)
    per, line, meta_notes = backbone_metadata(long, spec)
    meta = {**_protocol(spec, scale, truth, long.get_column("evaluator").unique(maintain_order=True).to_list()),
            **cost_meta, "source": f"{source} (imported by simulate import)"}
    if line:
        meta["metadata_match"] = line
    result = build_oracles(long, per, meta, spec)
    result.notes = notes + dup_notes + cost_notes + meta_notes + result.notes
    result.matched = line
    return result


def import_table(path: str | os.PathLike, spec: ImportSpec) -> Imported:
    """Read ``path`` and import it (nothing written)."""
    return import_frame(read_table(path), spec, str(path))


def write_oracles(result: Imported, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Each oracle to ``out_dir/<slug>.parquet`` (atomically: a temporary file renamed into place)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise VibesError(f"--out {str(out)!r} is a file; expected a folder")
    return {name: o.write(out / f"{result.slugs[name]}.parquet") for name, o in result.oracles.items()}


IMPORT_EPILOG = """\b
Examples:
  simulate import results.csv --out oracles/ --dataset-col dataset --score-col top1 \\
           --seconds-col seconds
  simulate import probes.parquet --out oracles/ --dataset-col task --score-col acc \\
           --evaluator-col probe --truth linear --cost-model gflops:gflops --images 10000
  simulate import wide.csv --out oracles/ --backbone-col model --datasets all --exclude year \\
           --params-col params --gflops-col gflops --cost-model constant:60s
"""


def _split(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(t.strip() for t in text.split(",") if t.strip())


@click.command("import", epilog=IMPORT_EPILOG, context_settings={"help_option_names": ["-h", "--help"],
                                                                 "max_content_width": 100})
@click.argument("table", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the oracles, one DIR/<dataset slug>.parquet per dataset.")
@click.option("--backbone-col", default="backbone", show_default=True,
              help="Column of backbone names; COL,COL joins several with a dot (e.g. name,pretrained -> "
                   "ViT-B-32.openai, as timm's arch.tag).")
@click.option("--dataset-col", default=None, help="Long table: column of dataset names.")
@click.option("--score-col", default=None, help="Long table: column of scores.")
@click.option("--datasets", default=None, metavar="COL,COL,...|all",
              help="Wide table: the score columns, one per dataset; 'all' = every numeric column not named.")
@click.option("--exclude", default=None, metavar="COL,COL,...", help="Wide table with --datasets all: not these.")
@click.option("--evaluator-col", default=None, help="Column of evaluator names (several evaluators in one table).")
@click.option("--evaluator", default=None, help=f"The one evaluator's name [default: {DEFAULT_EVALUATOR}].")
@click.option("--truth", default=None, metavar="NAME",
              help="The truth evaluator; default: the only one, else the first in table order.")
@click.option("--score-scale", type=click.Choice(SCALES), default="auto", show_default=True,
              help="auto: per score column, all in [0,1] = fraction, in [0,100] with values above 1 and none "
                   "in (0,1] = percent (÷100), anything else refused; fraction: taken as they are.")
@click.option("--on-duplicate", type=click.Choice(ON_DUPLICATE), default="average", show_default=True,
              help="Duplicate (backbone, dataset, evaluator) rows: average them (counted) or refuse.")
@click.option("--seconds-col", default=None, help="Measured seconds per evaluation.")
@click.option("--cost-model", default=None, metavar="gflops:COL|constant:S",
              help="Declared cost model: seconds = COL × --images ÷ --rate, or S per evaluation.")
@click.option("--images", type=int, default=None, help="Images one evaluation runs through (n_test).")
@click.option("--rate", type=float, default=DEFAULT_RATE_GFLOPS, show_default=True,
              help="GFLOP/s of the modelled device (--cost-model gflops:COL).")
@click.option("--params-col", default=None, help="Parameters in millions.")
@click.option("--gflops-col", default=None, help="GFLOPs (kept in the gmacs column; the metadata says so).")
@click.option("--pretrain-col", default=None, help="Pretraining dataset name.")
@click.option("--pretrain-method", default=None, help=f"One method for every backbone: {', '.join(METHODS)}.")
@click.option("--names", "names_file", default=None, type=click.Path(dir_okay=False),
              help="CSV (with a header): table name, timm name; for metadata from the timm pool.")
@click.option("--timm-results", type=click.Path(), envvar="VIBES_TIMM_RESULTS",
              help="Local timm results folder for imagenet_top1 (never downloaded here).")
def import_command(table, out_dir, backbone_col, dataset_col, score_col, datasets, exclude, evaluator_col,
                   evaluator, truth, score_scale, on_duplicate, seconds_col, cost_model, images, rate,
                   params_col, gflops_col, pretrain_col, pretrain_method, names_file, timm_results):
    """Turn a published results table (CSV or Parquet) into schema-v1 oracles, one per dataset."""
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise VibesError(f"--out {out_dir!r} is a file; expected a folder")
    spec = ImportSpec(backbone_col=backbone_col, dataset_col=dataset_col, score_col=score_col,
                      datasets=_split(datasets), exclude=_split(exclude) or (), evaluator_col=evaluator_col,
                      evaluator=evaluator, truth=truth, seconds_col=seconds_col, cost_model=cost_model,
                      images=images, rate=rate, score_scale=score_scale, on_duplicate=on_duplicate,
                      params_col=params_col, gflops_col=gflops_col, pretrain_col=pretrain_col,
                      pretrain_method=pretrain_method, names_file=names_file, timm_results=timm_results)
    result = import_table(table, spec)
    paths = write_oracles(result, out_dir)
    first = next(iter(result.oracles.values()))
    click.echo(f"imported {table}: {len(paths)} oracle(s), truth {first.truth}, evaluators "
               f"{', '.join(first.meta['evaluators'])}; {first.meta['score_scale']}; "
               + (f"costs {first.meta['cost_model']}" if "cost_model" in first.meta else
                  f"costs measured ({first.meta['cost_source']})"))
    for name, path in paths.items():
        click.echo(f"  {name} -> {path} ({result.oracles[name].true_scores().height} backbones)")
    if result.matched:
        click.echo(result.matched)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


__all__ = ["ImportSpec", "Imported", "SCALES", "slugify", "read_table", "import_frame", "import_table",
           "write_oracles", "import_command", "timm_pool"]
