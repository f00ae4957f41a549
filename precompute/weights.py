"""Pretrained weights for real machines and offline clusters: cache before the clock, fetch, evict.

Where timm reads a backbone's weights is timm's own decision (``timm.models._builder.
_resolve_pretrained_source`` on the backbone's pretrained cfg): the Hugging Face hub
(``hf_hub_id``, 1,807 of timm 1.0.31's 1,826 pretrained names; files ``model.safetensors`` then
``pytorch_model.bin`` unless the cfg names one) or a plain ``url`` (19 names, torch hub's
``<torch hub dir>/checkpoints/<file>``).  :func:`resolve_source` asks timm, :func:`ensure_weights`
makes sure the file is in that cache *before any clock starts* (downloading it when allowed), and
:func:`hub_offline` keeps the hub from making any HTTP request while the timed model creation reads
the cached file through timm's own pretrained path: ``load_seconds`` never holds a download or
even a metadata round trip.

Offline (``HF_HUB_OFFLINE=1``): nothing is downloaded; a backbone whose file is not cached raises
:class:`WeightsNotCachedError`, which the sweep records as a failed row naming ``precompute fetch``.

``precompute fetch --pool ...`` (:func:`fetch`) fills the caches beforehand: sizes first (one
metadata request per file, in parallel), then one progress bar over the total bytes, files
downloaded in parallel threads by ``hf_hub_download`` (which resumes a partial ``.incomplete``
file), and a summary with one line per failure.

Eviction (``--evict-weights``): :func:`evict` deletes exactly the paths that :func:`ensure_weights`
added to the cache for one backbone (the snapshot pointer, its blob, the repository folder when it
did not exist before, its ``.locks`` folder); a file that was already cached when it was asked for
is never touched.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import click

from shared.errors import VibesError

HF, URL, NONE = "hf-hub", "url", "none"
FETCH_HINT = "run `precompute fetch --pool {name}` on a machine with internet first"


class WeightsError(VibesError):
    """A backbone's pretrained weights cannot be made available."""

    download_seconds: float = 0.0  # time spent in download attempts before the failure


class WeightsNotCachedError(WeightsError):
    """Offline (``HF_HUB_OFFLINE=1``) and the weight file is not in the cache."""


# ---------------------------------------------------------------------------- where timm reads
@dataclass(frozen=True)
class WeightsSource:
    """Where timm's pretrained path reads ``name``'s weights.

    ``kind``: ``hf-hub`` (``repo_id`` at ``revision``; ``candidates`` in the order timm tries
    them), ``url`` (``url``, cached at ``path``) or ``none`` (no pretrained weights, or not a timm
    registry name: timm itself decides, nothing to fetch)."""

    name: str
    kind: str
    repo_id: str | None = None
    revision: str | None = None
    candidates: tuple[str, ...] = ()
    url: str | None = None
    path: Path | None = None  # url: the torch hub cache file


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache in effect (``HF_HUB_CACHE`` / ``HF_HOME``), read at call time."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def is_offline() -> bool:
    """``HF_HUB_OFFLINE=1`` as huggingface_hub reads it."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _torch_hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"  # timm's get_cache_dir() without creating it


def resolve_source(name: str) -> WeightsSource:
    """Ask timm where ``create_model(name, pretrained=True)`` reads the weights (no I/O)."""
    from timm.models import get_pretrained_cfg
    from timm.models._builder import _resolve_pretrained_source
    from timm.models._hub import HF_WEIGHTS_NAME, _get_safe_alternatives, hf_split

    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:  # an unknown tag: load_backbone names the valid ones
        cfg = None
    if cfg is None:
        return WeightsSource(name, NONE)
    d = cfg.to_dict()
    load_from, loc = _resolve_pretrained_source(d)
    if load_from == HF:
        if isinstance(loc, (tuple, list)):  # the cfg names the file
            loc, fname = loc
            if fname.endswith(".safetensors") or d.get("custom_load") == "hf":
                cands = (fname,)
            else:
                cands = (*_get_safe_alternatives(fname), fname)
        else:  # timm.models._hub.load_state_dict_from_hf(loc): safetensors first, then the .bin
            cands = (*_get_safe_alternatives(HF_WEIGHTS_NAME), HF_WEIGHTS_NAME)
        repo_id, revision = hf_split(loc)
        return WeightsSource(name, HF, repo_id, revision, tuple(cands))
    if load_from == URL:
        fname = os.path.basename(urlparse(loc).path)
        return WeightsSource(name, URL, url=loc, path=_torch_hub_checkpoints() / fname)
    return WeightsSource(name, NONE)


def repo_dir(src: WeightsSource) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return hub_cache_dir() / repo_folder_name(repo_id=src.repo_id, repo_type="model")


def cached_file(src: WeightsSource) -> Path | None:
    """The local file timm would read offline, or None (pure file-system look-up)."""
    if src.kind == URL:
        return src.path if src.path is not None and src.path.is_file() else None
    if src.kind != HF:
        return None
    from huggingface_hub import try_to_load_from_cache

    for fname in src.candidates:
        hit = try_to_load_from_cache(src.repo_id, fname, revision=src.revision)
        if isinstance(hit, str) and os.path.isfile(hit):
            return Path(hit)
    return None


def is_cached(name: str) -> bool:
    """True when ``name`` needs no download (cached, or nothing to fetch)."""
    src = resolve_source(name)
    return src.kind == NONE or cached_file(src) is not None


# --------------------------------------------------------------------- make sure, before the clock
@dataclass
class CachedWeights:
    """What :func:`ensure_weights` found or added for one backbone (for :func:`evict`)."""

    source: WeightsSource
    path: Path | None  # the file timm reads (None: kind none)
    was_cached: bool  # already in the cache when asked for: never evicted
    download_seconds: float = 0.0
    nbytes: int = 0
    added: list[Path] = field(default_factory=list)  # paths this call created in the cache
    containers: list[Path] = field(default_factory=list)  # cache folders it created (removed if empty)


def _snapshot(folder: Path) -> set[Path] | None:
    """Every path under ``folder`` (None when it does not exist)."""
    if not folder.exists():
        return None
    return set(folder.rglob("*"))


def hf_hub_download(*args, **kwargs):
    """``huggingface_hub.hf_hub_download`` as timm calls it (tests replace this one name)."""
    import timm
    from huggingface_hub import hf_hub_download as download

    kwargs.setdefault("library_name", "timm")
    kwargs.setdefault("library_version", timm.__version__)
    return download(*args, **kwargs)


def download_url(url: str, path: Path) -> None:
    """timm's url download (``timm.models._hub.download_cached_file``) into torch hub's cache."""
    from timm.models._hub import download_cached_file

    download_cached_file(url, check_hash=False, progress=False, cache_dir=str(path.parent))


def _not_cached(src: WeightsSource) -> WeightsNotCachedError:
    where = (f"{src.repo_id} ({' or '.join(src.candidates)}) in {hub_cache_dir()}" if src.kind == HF
             else f"{src.url} in {src.path}")
    return WeightsNotCachedError(f"weights of {src.name} are not cached ({where}) and HF_HUB_OFFLINE=1; "
                                 + FETCH_HINT.format(name=src.name))


def ensure_weights(name: str, offline: bool | None = None) -> CachedWeights:
    """Make sure ``name``'s weight file is cached where timm reads it; download it unless offline.

    Raises :class:`WeightsNotCachedError` offline when it is missing, :class:`WeightsError` when a
    download fails (``download_seconds`` says how long the attempts took)."""
    src = resolve_source(name)
    if src.kind == NONE:
        return CachedWeights(src, None, was_cached=True)
    hit = cached_file(src)
    if hit is not None:
        return CachedWeights(src, hit, was_cached=True, nbytes=hit.stat().st_size)
    if is_offline() if offline is None else offline:
        raise _not_cached(src)
    start = time.perf_counter()
    try:
        if src.kind == URL:
            before = src.path.exists()
            download_url(src.url, src.path)
            added = [] if before else [src.path]
            path, containers = src.path, []
        else:
            path, added, containers = _download_hf(src)
    except Exception as exc:
        err = WeightsError(f"could not download the weights of {name}: {type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:300]}; without internet, "
                           + FETCH_HINT.format(name=name) + " and set HF_HUB_OFFLINE=1")
        err.download_seconds = time.perf_counter() - start
        raise err from None
    path = Path(path)
    return CachedWeights(src, path, was_cached=False, download_seconds=time.perf_counter() - start,
                         nbytes=path.stat().st_size if path.exists() else 0, added=added,
                         containers=containers)


def _download_hf(src: WeightsSource, **kwargs) -> tuple[str, list[Path], list[Path]]:
    """Download the first candidate the repository has (timm's order); returns (path, the paths
    it added under the repository's cache folder and its ``.locks`` folder, the cache folders it
    created)."""
    from huggingface_hub.errors import EntryNotFoundError

    cache = hub_cache_dir()
    repo, locks = repo_dir(src), cache / ".locks" / repo_dir(src).name
    containers = [d for d in (cache / ".locks", cache) if not d.exists()]
    before_repo, before_locks = _snapshot(repo), _snapshot(locks)
    missing: list[str] = []
    try:
        for fname in src.candidates:
            try:
                path = hf_hub_download(src.repo_id, fname, revision=src.revision, **kwargs)
                break
            except EntryNotFoundError:
                missing.append(fname)
        else:
            raise FileNotFoundError(f"{src.repo_id} has none of {', '.join(missing)}")
    finally:
        added = _added(repo, before_repo) + _added(locks, before_locks)
    return path, added, containers


def _added(folder: Path, before: set[Path] | None) -> list[Path]:
    if before is None:
        return [folder] if folder.exists() else []
    return sorted(_snapshot(folder) - before) if folder.exists() else []


def evict(cw: CachedWeights | None) -> list[Path]:
    """Delete what :func:`ensure_weights` added to the cache for one backbone; never a file that
    was cached before.  Returns the paths removed."""
    if cw is None or cw.was_cached:
        return []
    removed = []
    for p in sorted(cw.added, key=lambda q: len(q.parts), reverse=True):  # deepest first
        try:
            if p.is_symlink() or p.is_file():
                p.unlink()
            elif p.is_dir():
                shutil.rmtree(p)
            else:
                continue
            removed.append(p)
        except FileNotFoundError:
            pass
    for d in cw.containers:  # created by this download: removed when nothing else is inside
        with contextlib.suppress(OSError):
            d.rmdir()
            removed.append(d)
    return removed


@contextlib.contextmanager
def hub_offline(enabled: bool = True) -> Iterator[None]:
    """No Hugging Face hub HTTP request inside the block (huggingface_hub's own offline switch,
    read at request time): timm's pretrained path then resolves files from the cache only."""
    if not enabled:
        yield
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


# ------------------------------------------------------------------------------------- fetch
@dataclass
class FetchItem:
    name: str
    status: str = "todo"  # cached | fetched | failed | none
    nbytes: int = 0
    error: str | None = None
    source: WeightsSource | None = None
    filename: str | None = None


@dataclass
class FetchReport:
    items: list[FetchItem]

    def count(self, status: str) -> int:
        return sum(i.status == status for i in self.items)

    @property
    def failed(self) -> list[FetchItem]:
        return [i for i in self.items if i.status == "failed"]

    def lines(self) -> list[str]:
        fetched = sum(i.nbytes for i in self.items if i.status == "fetched")
        cached = sum(i.nbytes for i in self.items if i.status == "cached")
        head = (f"fetch: {self.count('fetched')} downloaded ({human_bytes(fetched)}), "
                f"{self.count('cached')} already cached ({human_bytes(cached)}), "
                f"{len(self.failed)} failed")
        if self.count("none"):
            head += f", {self.count('none')} without pretrained weights to fetch"
        return [head] + [f"  failed: {i.name}: {i.error}" for i in self.failed]


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _url_size(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as resp:
        return int(resp.headers.get("Content-Length") or 0)


def _plan(item: FetchItem) -> None:
    """Resolve the source; cached already, or the remote file and its size (a metadata request)."""
    from huggingface_hub.errors import EntryNotFoundError

    src = item.source = resolve_source(item.name)
    if src.kind == NONE:
        item.status = "none"
        return
    hit = cached_file(src)
    if hit is not None:
        item.status, item.nbytes = "cached", hit.stat().st_size
        return
    if src.kind == URL:
        item.filename, item.nbytes = src.url, _url_size(src.url)
        return
    for fname in src.candidates:
        try:
            info = hf_hub_download(src.repo_id, fname, revision=src.revision, dry_run=True)
        except EntryNotFoundError:
            continue
        item.filename, item.nbytes = fname, int(getattr(info, "file_size", 0) or 0)
        return
    raise FileNotFoundError(f"{src.repo_id} has none of {', '.join(src.candidates)}")


def _forwarding_tqdm(bar, lock: threading.Lock):
    """A tqdm stand-in for ``hf_hub_download(tqdm_class=...)`` that adds each file's progress to
    the one shared bar (as huggingface_hub's snapshot_download aggregates its files)."""

    class Forward:
        def __init__(self, *args, **kwargs):
            initial = int(kwargs.get("initial") or 0)  # bytes resumed from a partial download
            if initial:
                self.update(initial)

        def update(self, n=1):
            with lock:
                bar.update(int(n or 0))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __getattr__(self, _name):  # close, refresh, set_postfix_str, update_transfer, ...
            return lambda *a, **k: None

    return Forward


def fetch(names: Sequence[str], jobs: int = 8, progress: bool = True,
          echo: Callable[[str], None] = click.echo) -> FetchReport:
    """Download the weights of ``names`` into the caches timm reads (see the module docstring)."""
    from tqdm import tqdm

    if is_offline():
        raise VibesError("precompute fetch downloads weights, but HF_HUB_OFFLINE=1 is set; run it "
                         "where the hub is reachable (unset HF_HUB_OFFLINE)")
    if jobs < 1:
        raise VibesError(f"--jobs must be a positive number of parallel downloads; got {jobs}")
    items = [FetchItem(n) for n in dict.fromkeys(names)]

    def guarded(fn):
        def run(item: FetchItem) -> None:
            try:
                fn(item)
            except Exception as exc:
                item.status, item.error = "failed", _one_line(exc)
        return run

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(guarded(_plan), items))
    todo = [i for i in items if i.status == "todo"]
    total = sum(i.nbytes for i in todo)
    echo(f"fetch: {len(items)} backbones, {len(todo)} to download ({human_bytes(total)}), "
         f"{sum(i.status == 'cached' for i in items)} already cached")
    lock = threading.Lock()
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1000, desc="weights",
              disable=not progress) as bar:
        forward = _forwarding_tqdm(bar, lock)

        def download(item: FetchItem) -> None:
            src = item.source
            if src.kind == URL:
                download_url(src.url, src.path)
                with lock:
                    bar.update(item.nbytes)
            else:
                one = WeightsSource(src.name, HF, src.repo_id, src.revision, (item.filename,))
                _download_hf(one, tqdm_class=forward)
            item.status = "fetched"

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(guarded(download), todo))
    report = FetchReport(items)
    for line in report.lines():
        echo(line)
    return report


# ---------------------------------------------------------------------------------------- CLI
__all__ = ["WeightsSource", "CachedWeights", "WeightsError", "WeightsNotCachedError", "resolve_source",
           "cached_file", "is_cached", "ensure_weights", "evict", "hub_offline", "fetch", "FetchReport",
           "hub_cache_dir", "is_offline"]
