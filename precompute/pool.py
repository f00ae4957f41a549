"""The backbone pool: every pretrained timm name with its size and complexity, measured without weights.

``build_pool`` builds each model on the ``meta`` device (no memory is allocated for weights, no
initialisation runs on real data) and counts the FLOPs of one forward pass at the pretrained input
size with :class:`torch.utils.flop_counter.FlopCounterMode`; MACs = FLOPs / 2.  ``params_m`` and
``gmacs`` are those of the full model with its pretrained classifier, as timm publishes them (e.g.
resnet50: 25.6 M, 4.1 GMACs at 224); ``feature_dim`` is the width of the pooled pre-logits features
(``num_classes=0``), which is what the precompute phase extracts.

For timm 1.0.31 the measurements of every pretrained name are shipped as package data
(``precompute/data/pool/pool-timm-1.0.31.parquet``, :func:`shipped_path`), with what
``precompute check`` found (:data:`CHECKED`: ``check_status``; ``excluded``, the reason a backbone
cannot run in the pipeline; ``random_constant``, random-init features constant across images), so
building the pool takes seconds.  Names the shipped table lacks (another timm version) are measured
and cached as Parquet per timm version (incrementally, so an interrupted build resumes).  The
pretraining facts (``shared.pretrain.pretrain_frame``) are joined on every call, so they never go
stale in the shipped table or the cache; nothing derived from timm's published results is shipped.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from shared import timm_results as T
from shared.errors import VibesError, unknown
from shared.limits import Limits, mark
from shared.pretrain import pretrain_frame
from shared.toy_models import TEST_MODEL_PREFIX, is_test_model  # noqa: F401  (one definition, shared with timm:<set>)

if TYPE_CHECKING:
    import torch

# torch and timm are imported where a model is measured: with the shipped table, `precompute pool`
# reads Parquet and never pays for importing them


def _timm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("timm")
    except PackageNotFoundError:  # pragma: no cover - timm on sys.path without its metadata
        import timm

        return timm.__version__


TIMM_VERSION = _timm_version()
DEFAULT_CACHE = f"data/cache/pool-timm-{TIMM_VERSION}.parquet"

#: measured columns, in order (the cache holds exactly these; dtypes as in shared.oracle.COLUMNS)
MEASURED = {
    "backbone": pl.String,
    "architecture": pl.String,
    "params_m": pl.Float64,
    "gmacs": pl.Float64,
    "input_size": pl.Int32,
    "feature_dim": pl.Int32,
    "license": pl.String,
    "error": pl.String,
    "measure_seconds": pl.Float64,
}
#: what ``precompute check`` found per backbone (random weights, native input size), shipped with the
#: measurements: ``check_status`` ok / failed / timeout / skipped (null: not checked); ``excluded`` the
#: reason it cannot run in the pipeline (null: it can, or it was not checked; a CPU timeout or this
#: machine's memory guard never excludes); ``random_constant``: with random weights its features are
#: constant across images (a head on them scores at chance; pretrained weights are not affected)
CHECKED = {"check_status": pl.String, "excluded": pl.String, "random_constant": pl.Boolean}
PRETRAIN = {"pretrain_dataset": pl.String, "pretrain_images": pl.Float64, "pretrain_method": pl.String}
#: published ImageNet-1k top-1 (percent) at the default input size: joined at run time from timm's
#: results files (third-party data, never shipped), null where they cannot be had
PUBLISHED = {"imagenet_top1": pl.Float64}
POOL_COLUMNS = [*[c for c in MEASURED if c != "measure_seconds"], *CHECKED, *PRETRAIN, *PUBLISHED]
SHIPPED_DIR = Path(__file__).resolve().parent / "data" / "pool"


def shipped_path(version: str = TIMM_VERSION) -> Path:
    """Where the measured pool table of timm ``version`` is shipped (it may not exist)."""
    return SHIPPED_DIR / f"pool-timm-{version}.parquet"


def shipped_table(version: str = TIMM_VERSION) -> pl.DataFrame:
    """The shipped measured pool table of timm ``version`` (measured and checked columns), or an
    empty frame when none is shipped for that version."""
    path = shipped_path(version)
    if not path.is_file():
        return pl.DataFrame(schema={**MEASURED, **CHECKED})
    return pl.read_parquet(path).select([pl.col(c).cast(t) for c, t in {**MEASURED, **CHECKED}.items()])


def pretrained_names() -> list[str]:
    """``timm.list_models(pretrained=True)``, in its order; read from the shipped table of the installed
    timm version when there is one (it holds exactly those names, in that order), without importing timm."""
    path = shipped_path()
    if path.is_file():
        return pl.read_parquet(path, columns=["backbone"])["backbone"].to_list()
    import timm

    return timm.list_models(pretrained=True)


def default_names(include_test_models: bool = False) -> list[str]:
    """The default pool's names: every pretrained timm name, less timm's toy test models unless asked."""
    names = pretrained_names()
    return names if include_test_models else [n for n in names if not is_test_model(n)]


def left_out_test_models(patterns: Sequence[str] | None, include_test_models: bool = False) -> list[str]:
    """timm's toy test models the default pool (``patterns`` None or empty) or these globs leave out."""
    if include_test_models:
        return []
    all_names = pretrained_names()
    if not patterns:
        return [n for n in all_names if is_test_model(n)]
    kept = set(match_names(patterns, all_names, False))
    return [n for n in match_names(patterns, all_names, True) if n not in kept]


def test_models_note(left_out: Sequence[str]) -> str:
    """One line saying which toy test models left the pool and how to keep them."""
    return (f"pool: timm's {len(left_out)} toy test model(s) left out ({', '.join(left_out[:3])}"
            f"{', ...' if len(left_out) > 3 else ''}); --include-test-models keeps them")


def make_shipped_table(measured: pl.DataFrame, check: pl.DataFrame | None = None) -> pl.DataFrame:
    """Measured rows (:data:`MEASURED`) joined with a ``precompute check`` table: a backbone is
    ``excluded`` only when its check ``failed`` (a timeout or the memory guard is the checking
    machine's limit, not the backbone's)."""
    out = measured.select([pl.col(c).cast(t) for c, t in MEASURED.items()])
    if check is None:
        return out.with_columns([pl.lit(None, t).alias(c) for c, t in CHECKED.items()])
    flags = check.select(
        "backbone",
        pl.col("status").alias("check_status"),
        pl.when(pl.col("status") == "failed").then(pl.col("reason")).alias("excluded"),
        pl.col("constant_features").alias("random_constant"),
    )
    out = out.join(flags, on="backbone", how="left", maintain_order="left")
    return out.select([pl.col(c).cast(t) for c, t in {**MEASURED, **CHECKED}.items()])


def _forward_meta(model: torch.nn.Module, size: tuple[int, ...]) -> tuple[int, int | None, torch.Tensor]:
    """One meta-device forward at ``size`` (C, H, W) counting FLOPs; returns (FLOPs, the width of the
    classifier's input = the pre-logits features or None when no classifier input was seen, output)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    # frozen: a module returning a parameter as is (cls tokens, attention-pool latents) would
    # otherwise trip FlopCounterMode's module tracker ("Expected gradient function to be set")
    model.requires_grad_(False)
    seen: list[int] = []
    heads = model.get_classifier() if hasattr(model, "get_classifier") else None
    heads = [h for h in (heads if isinstance(heads, (tuple, list)) else [heads]) if isinstance(h, torch.nn.Module)]
    def pre_hook(module, args):
        # only a (B, D) classifier input is the pooled width; attention-pool or conv heads take other shapes
        seen.append(int(args[0].shape[1]) if torch.is_tensor(args[0]) and args[0].ndim == 2 else -1)

    hooks = [h.register_forward_pre_hook(pre_hook) for h in heads[:1]]
    x = torch.empty((1, *size), device="meta")
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return counter.get_total_flops(), (seen[0] if len(set(seen)) == 1 and seen[0] > 0 else None), out


def measure_backbone(name: str) -> dict:
    """Measure one pretrained timm name on the meta device; never raises (errors go to ``error``)."""
    import timm
    import torch

    start = time.perf_counter()
    row: dict = {c: None for c in MEASURED}
    row["backbone"] = name
    row["architecture"] = name.split(".", 1)[0]
    try:
        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is None:
            raise ValueError("no pretrained config")
        size = tuple(cfg.input_size)
        row["input_size"] = int(size[-1])
        row["license"] = cfg.license
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
        model.eval()
        try:
            flops, width, out = _forward_meta(model, size)
        except Exception:
            # some fixed-size archs (ViTs) default to another resolution than the pretrained tag
            with torch.device("meta"):
                model = timm.create_model(name, pretrained=False, img_size=size[-1])
            model.eval()
            flops, width, out = _forward_meta(model, size)
        row["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
        row["gmacs"] = flops / 2e9
        if width is None:  # no single classifier input seen: ask the model itself
            f = out
            if hasattr(model, "reset_classifier"):
                model.reset_classifier(0)
                with torch.no_grad():
                    f = model(torch.empty((1, *size), device="meta"))
            # (1, T, D) tokens are mean-pooled by the extraction (precompute.extract): width D
            if not torch.is_tensor(f) or f.ndim not in (2, 3):
                shape = tuple(f.shape) if torch.is_tensor(f) else type(f).__name__
                raise ValueError(f"no pooled features: the model returns {shape}, expected (1, D) or (1, T, D)")
            width = int(f.shape[-1])
        row["feature_dim"] = width
        if not flops:
            raise ValueError("no FLOPs counted")
    except Exception as e:  # noqa: BLE001 - the reason is recorded, the name stays in the pool
        row["error"] = f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]
    row["measure_seconds"] = time.perf_counter() - start
    return row


def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=MEASURED, orient="row") if rows else pl.DataFrame(schema=MEASURED)


def write_table(frame: pl.DataFrame, path: Path) -> None:
    """Atomic write: a temporary file unique to this process and call, then a rename, so two
    processes caching the pool at once never write into one temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{os.getpid()}.tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.write_parquet(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is readable like any other file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def known_measurements(cache: str | Path | None = DEFAULT_CACHE) -> pl.DataFrame:
    """The measured rows available without measuring anything: the shipped table, then the cache."""
    frames = [shipped_table().select(list(MEASURED))]
    path = Path(cache) if cache is not None else None
    if path is not None and path.exists():
        frames.append(pl.read_parquet(path).select(list(MEASURED)).cast(MEASURED))
    return pl.concat(frames).unique("backbone", keep="first", maintain_order=True)


def _pretrain(names: list[str]) -> pl.DataFrame:
    """Pretraining facts per backbone (:mod:`shared.pretrain`)."""
    frame = pretrain_frame(names)
    return frame.select("backbone", *[pl.col(c).cast(t) for c, t in PRETRAIN.items()])


_TOP1_NOTE: list[str] = []  # why the last lookup found no published top-1 (empty: it did)


def with_imagenet_top1(pool: pl.DataFrame, timm_results: str | os.PathLike | None = None) -> pl.DataFrame:
    """``pool`` with its ``imagenet_top1`` column (re)filled from timm's published
    ``results-imagenet.csv`` (:func:`shared.timm_results.imagenet_top1`: ``timm_results``, else
    ``$VIBES_TIMM_RESULTS``, else the cached download, else a download).  Where none can be had
    (offline, no copy) the column is null and :data:`_TOP1_NOTE` says why (``precompute pool`` prints
    it; the ``imagenet-top1`` sampler refuses an all-null column with a one-line error): nothing else
    needs it.  With ``HF_HUB_OFFLINE=1`` and nothing local, no download is tried (a firewalled compute
    node would wait for the timeout)."""
    _TOP1_NOTE.clear()
    try:
        local = timm_results or os.environ.get(T.ENV_DIR) or (T.cache_dir() / T.IMAGENET_RESULTS).is_file()
        if not local and os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
            raise VibesError(f"offline (HF_HUB_OFFLINE) and no local copy of {T.IMAGENET_RESULTS}; give "
                             f"--timm-results DIR or ${T.ENV_DIR}")
        top1 = T.imagenet_top1(timm_results)
    except VibesError as exc:
        _TOP1_NOTE.append(f"no published ImageNet top-1 (the imagenet-top1 sampler needs it): {exc}")
        top1 = pl.DataFrame(schema={"backbone": pl.String, "imagenet_top1": pl.Float64})
    return T.fill_imagenet_top1(pool, top1)


def build_pool(
    names: Sequence[str] | None = None,
    cache: str | Path | None = DEFAULT_CACHE,
    refresh: bool = False,
    progress: bool = True,
    workers: int = 1,
    flush_every: int = 64,
    shipped: bool = True,
    timm_results: str | os.PathLike | None = None,
    include_test_models: bool = False,
) -> pl.DataFrame:
    """The pool table (one row per name, in the given order; by default all pretrained timm names but
    timm's toy test models, :func:`default_names`: ``include_test_models`` keeps them).

    Names in the shipped table of this timm version (unless ``shipped=False``) or already in
    ``cache`` are read from them, the shipped rows first, unless ``refresh``; the others are measured
    (over ``workers`` processes) and appended to the cache every ``flush_every`` names.  The
    :data:`CHECKED` columns come from the shipped table (null for other names).
    """
    all_names = pretrained_names()
    if names is None:
        names = default_names(include_test_models)
    names = list(dict.fromkeys(names))
    valid = set(all_names)
    for n in names:
        if n not in valid:
            raise unknown("backbone", n, all_names)
    path = Path(cache) if cache is not None else None
    cached = pl.read_parquet(path) if path is not None and path.exists() and not refresh else _frame([])
    if path is not None and refresh and path.exists():
        cached = pl.read_parquet(path).filter(~pl.col("backbone").is_in(names))
    cached = cached.select(list(MEASURED)).cast(MEASURED)
    ship = shipped_table() if shipped and not refresh else shipped_table("none")
    ship = ship.filter(pl.col("backbone").is_in(names))
    known = set(cached["backbone"].to_list()) | set(ship["backbone"].to_list())
    todo = [n for n in names if n not in known]

    new_rows: list[dict] = []
    if todo:
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="pool", unit="model")

        def flush() -> None:
            if path is not None and new_rows:
                write_table(pl.concat([cached, _frame(new_rows)]), path)

        def done(row: dict) -> None:
            new_rows.append(row)
            if bar is not None:
                bar.update(1)
            if len(new_rows) % flush_every == 0:
                flush()

        if workers > 1:
            import multiprocessing as mp

            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
                chunk = max(1, min(16, math.ceil(len(todo) / (4 * workers))))
                for row in ex.map(measure_backbone, todo, chunksize=chunk):
                    done(row)
        else:
            for n in todo:
                done(measure_backbone(n))
        flush()
        if bar is not None:
            bar.close()

    fresh = pl.concat([cached, _frame(new_rows)]).unique("backbone", keep="last")
    # the shipped rows win over a cache that may predate them; refresh ignores both
    measured = pl.concat([ship.select(list(MEASURED)), fresh]).unique("backbone", keep="first")
    order = pl.DataFrame({"backbone": names}).with_row_index("_order")
    pool = (order.join(measured, on="backbone", how="left")
            .join(ship.select("backbone", *CHECKED), on="backbone", how="left")
            .join(_pretrain(names), on="backbone", how="left"))
    pool = with_imagenet_top1(pool, timm_results)
    return pool.sort("_order").select(POOL_COLUMNS)


def without_excluded(pool: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the pool without the backbones that cannot run in the pipeline, those excluded rows)."""
    if "excluded" not in pool.columns:
        return pool, pool.clear()
    bad = pl.col("excluded").is_not_null()
    return pool.filter(~bad), pool.filter(bad)


def drop_excluded(pool: pl.DataFrame, echo=None) -> pl.DataFrame:
    """The pool without its excluded backbones; ``echo`` (e.g. ``click.echo``) is told how many and why."""
    kept, dropped = without_excluded(pool)
    if dropped.height and echo is not None:
        echo(f"pool: {dropped.height} backbone(s) excluded, they cannot run in the pipeline "
             f"(`precompute pool --include-excluded --out X` lists them with the reason): "
             f"{', '.join(dropped['backbone'].head(5).to_list())}{', ...' if dropped.height > 5 else ''}")
    return kept


def _glob_regex(glob: str) -> str:
    """fnmatch-style glob (``*``, ``?``, ``[seq]``) -> an anchored regex for polars."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and "]" in glob[i + 1 :]:
            j = glob.index("]", i + 1)
            body = glob[i + 1 : j]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "^" + "".join(out) + "$"


def read_names_file(path: str | Path) -> list[str]:
    """One backbone name per line; blank lines and ``#`` comments are ignored."""
    p = Path(path)
    if not p.is_file():
        raise VibesError(f"names file {str(p)!r} not found; expected a text file with one timm backbone name per line")
    names = [line.split("#", 1)[0].strip() for line in p.read_text().splitlines()]
    return [n for n in names if n]


def filter_pool(
    pool: pl.DataFrame,
    globs: Sequence[str] = (),
    names_file: str | None = None,
    max_params: float | None = None,
    max_gmacs: float | None = None,
    limits: Limits | None = None,
    latency: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Keep the backbones matching any glob (on the full name or the architecture), listed in
    ``names_file``, with at most ``max_params`` M parameters and ``max_gmacs`` GMACs (a name whose
    size could not be measured fails a size filter) -- or within ``limits``, the deployment limits
    of :mod:`shared.limits` (``latency``: its latency table)."""
    if isinstance(globs, str):
        globs = [globs]
    out = pool
    described = []
    if globs:
        expr = pl.lit(False)
        for g in globs:
            rx = _glob_regex(g)
            expr = expr | pl.col("backbone").str.contains(rx) | pl.col("architecture").str.contains(rx)
        out = out.filter(expr)
        described.append(f"globs={list(globs)}")
    if names_file is not None:
        wanted = read_names_file(names_file)
        missing = [n for n in wanted if n not in set(pool["backbone"].to_list())]
        if missing:
            raise unknown("backbone", missing[0], pool["backbone"].to_list())
        out = out.filter(pl.col("backbone").is_in(wanted))
        described.append(f"names_file={names_file!r}")
    if limits is None:
        limits = Limits(max_params_m=max_params, max_gmacs=max_gmacs)
    if limits.active:  # the deployment limits' one rule (shared.limits); an unknown value fails a limit
        marked = mark(out, limits, latency, "pool")
        out = marked.filter(pl.col("limit_reason").is_null()).drop("limit_reason")
        described.append(limits.describe())
    if out.height == 0:
        raise VibesError(
            f"pool is empty after filters ({', '.join(described) or 'none'}); {pool.height} backbones before filtering"
        )
    return out


# ------------------------------------------------------------------------ --pool values
def _has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def match_names(patterns: Sequence[str], all_names: Sequence[str], include_test_models: bool = False) -> list[str]:
    """Names matching any glob (on the full name or the architecture) or equal to a name.

    timm's toy test models (:func:`is_test_model`) a pattern matches beside real backbones leave
    (``'*'`` or ``'*vit*'`` mean real ones) unless ``include_test_models``; a pattern that matches
    only test models (``'test_*'``, ``test_vit.r160_in1k``) keeps them: whoever names them wants them."""
    import fnmatch

    out: dict[str, None] = {}
    for pat in patterns:
        hits = [n for n in all_names
                if fnmatch.fnmatchcase(n, pat) or fnmatch.fnmatchcase(n.split(".")[0], pat)]
        if not hits:
            if _has_glob(pat):
                raise VibesError(f"no pretrained timm backbone matches {pat!r}; try a broader "
                                 f"glob, e.g. 'resnet*'")
            raise unknown("backbone", pat, all_names)
        real = [n for n in hits if not is_test_model(n)]
        out.update(dict.fromkeys(hits if include_test_models or not real else real))
    return list(out)


def read_pool_file(path: Path) -> pl.DataFrame:
    """A pool table (``precompute pool --out``: .parquet or .csv) or a names file (.txt)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pl.read_parquet(path)
        elif suffix == ".csv":
            frame = pl.read_csv(path, infer_schema_length=None)
        else:
            return build_pool(read_names_file(path), progress=False)
    except VibesError:
        raise
    except Exception as exc:
        raise VibesError(f"cannot read pool file {str(path)!r}: {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}") from None
    if "backbone" not in frame.columns:
        raise VibesError(f"pool file {str(path)!r} has no 'backbone' column; expected a table "
                         f"written by `precompute pool --out`")
    if "imagenet_top1" not in frame.columns:  # an older or hand-made table: the published prior joins in
        frame = with_imagenet_top1(frame)
    return frame


def resolve_pool(specs: Sequence[str], progress: bool = True, echo=None,
                 include_test_models: bool = False) -> pl.DataFrame:
    """``--pool`` values (files or globs/names) -> one pool table, or the full pool if none (timm's
    toy test models out of it and of globs that match real backbones too, unless
    ``include_test_models``: :func:`match_names`; a pool file is taken as it is).
    Backbones the check found cannot run in the pipeline (``excluded``) leave, said via ``echo``."""
    patterns = [spec for spec in specs if not Path(spec).is_file()]
    left_out = left_out_test_models(patterns, include_test_models) if patterns or not specs else []
    if left_out and echo is not None:
        echo(test_models_note(left_out))
    if not specs:
        return drop_excluded(build_pool(progress=progress, include_test_models=include_test_models), echo=echo)
    frames = [read_pool_file(Path(spec)) for spec in specs if Path(spec).is_file()]
    if patterns:
        names = match_names(patterns, pretrained_names(), include_test_models)
        frames.append(build_pool(names, progress=progress))
    pool = pl.concat(frames, how="diagonal_relaxed").unique("backbone", keep="first",
                                                              maintain_order=True)
    if pool.height == 0:
        raise VibesError("the pool is empty after reading --pool; check the names/files given")
    # backbones that failed to build stay (the sweep records them as failed); those the check found
    # cannot run in the pipeline (the pool's `excluded` reason) leave
    pool = drop_excluded(pool, echo=echo)
    if pool.height == 0:
        raise VibesError("every backbone given to --pool is excluded (it cannot run in the pipeline); "
                         "`precompute pool --include-excluded` shows why")
    return pool


def pool_names(specs: Sequence[str], include_test_models: bool = False) -> list[str]:
    """Backbone names of ``--pool`` values (pool files, names files, globs or names; none = every
    pretrained timm name but timm's toy test models unless ``include_test_models``, as in
    :func:`resolve_pool`), without measuring anything."""
    all_names = pretrained_names()
    if not specs:
        return default_names(include_test_models)
    names: list[str] = []
    for spec in specs:
        p = Path(spec)
        if p.is_file():
            if p.suffix.lower() in (".parquet", ".csv"):
                names += read_pool_file(p).get_column("backbone").cast(pl.String).to_list()
            else:
                names += read_names_file(p)
        else:
            names += match_names([spec], all_names, include_test_models)
    return list(dict.fromkeys(names))
