"""Pretrained weights without a network: a real Hugging Face cache folder (huggingface_hub's own
layout, written with its own helpers) holding locally saved random weights of tiny timm backbones.

* timm's own hub path reads them offline (``HF_HUB_OFFLINE=1``), in-process and through the real
  ``precompute run`` CLI; an uncached backbone is a failed row naming ``precompute fetch``;
* a slow download (the downloader's delay passing on a virtual clock) never enters
  ``load_seconds``, and the timed load makes no hub request even online;
* ``--evict-weights`` leaves the cache exactly as it found it (a pre-cached backbone stays, a
  freshly "downloaded" one goes);
* ``precompute fetch``: sizes, one total, parallel downloads, one line per failure.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub.constants as hub_constants
import numpy as np
import polars as pl
import pytest
import safetensors.torch
import timm
import torch
from huggingface_hub.errors import RemoteEntryNotFoundError
from huggingface_hub.file_download import (
    _cache_commit_hash_for_specific_revision,
    _create_symlink,
    repo_folder_name,
)
from test_kill_resume import NAMES, cli, sweep_home  # noqa: F401  (fixture)
from test_sweep import data_cache, pool_frame  # noqa: F401  (fixture)
from virtual_clock import VirtualClock

from precompute import clock
from precompute import parts as P
from precompute import weights as W
from precompute.backbone import load_backbone
from precompute.sweep import SweepConfig, run_sweep

pytestmark = pytest.mark.filterwarnings("ignore:fraction .* keeps .* image:UserWarning")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
A, B, C = NAMES  # test_convnext, test_efficientnet_ln, test_vit (tiny timm test models)


# ----------------------------------------------------------------------------- the cache
def random_weights(name: str, seed: int) -> dict[str, torch.Tensor]:
    """A full state dict (classifier included, as the hub files are) of ``name``'s architecture,
    randomly initialised from ``seed`` (not the seed load_backbone uses for random weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(name, pretrained=False)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def write_hub_file(cache: Path, repo_id: str, filename: str, data: bytes, commit: str = COMMIT) -> Path:
    """Put ``data`` into the hub cache as ``hf_hub_download`` leaves a downloaded file:
    ``models--org--name/blobs/<sha256>``, ``snapshots/<commit>/<filename>`` -> the blob,
    ``refs/main`` = commit."""
    storage = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    pointer = storage / "snapshots" / commit / filename
    pointer.parent.mkdir(parents=True, exist_ok=True)
    _create_symlink(str(blob), str(pointer), new_blob=False)
    _cache_commit_hash_for_specific_revision(str(storage), "main", commit)
    return pointer


def cache_weights(cache: Path, name: str, seed: int) -> dict[str, torch.Tensor]:
    sd = random_weights(name, seed)
    write_hub_file(cache, f"timm/{name}", "model.safetensors", safetensors.torch.save(sd))
    return sd


def listing(root: Path) -> dict[str, str]:
    """Every path under ``root`` -> its kind and, for files, a digest."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    return out


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty hub cache in effect for this process, offline."""
    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return cache


class FakeHub:
    """Stands in for the network behind ``precompute.weights.hf_hub_download``: serves files held
    in memory (``repos[repo_id][filename] = bytes``), writes them into the cache in the hub's
    layout, sleeps ``delay`` seconds per download (with ``sleep``: ``time.sleep`` unless a virtual
    clock's), honours ``dry_run`` and ``tqdm_class``.

    It records, per download, how many :mod:`precompute.clock` spans were open in the downloading
    thread (``spans_open``: 0 = no measured block contains it) and the most downloads in flight at
    once (``most``); with ``meet`` a download first waits (``MEET_TIMEOUT`` at most, so nothing can
    hang) until ``meet`` downloads have been in flight together: a rendezvous that parallel
    downloads pass at once and sequential ones cannot."""

    MEET_TIMEOUT = 10.0

    def __init__(self, repos: dict[str, dict[str, bytes]], delay: float = 0.0, fail: set[str] = (),
                 sleep=None, meet: int = 0):
        self.repos, self.delay, self.fail, self.sleep, self.meet = repos, delay, set(fail), sleep, meet
        self.calls: list[tuple[str, str, bool]] = []
        self.spans_open: list[int] = []
        self.in_flight = self.most = 0
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def __call__(self, repo_id, filename, revision=None, dry_run=False, tqdm_class=None, **_):
        with self.lock:
            self.calls.append((repo_id, filename, dry_run))
        if repo_id in self.fail:
            raise ConnectionError(f"simulated network failure for {repo_id}")
        data = self.repos.get(repo_id, {}).get(filename)
        if data is None:
            raise RemoteEntryNotFoundError(f"{repo_id} has no {filename}", response=_response(404))
        if dry_run:
            return SimpleNamespace(file_size=len(data), is_cached=False, will_download=True)
        with self.changed:
            self.spans_open.append(clock._STATE.depth)
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.most >= self.meet, timeout=self.MEET_TIMEOUT)
        try:
            (self.sleep or time.sleep)(self.delay)
            if tqdm_class is not None:
                with tqdm_class(total=len(data), initial=0) as bar:
                    bar.update(len(data) // 2)
                    bar.update(len(data) - len(data) // 2)
            cache = Path(hub_constants.HF_HUB_CACHE)
            lock = cache / ".locks" / repo_folder_name(repo_id=repo_id, repo_type="model") / "x.lock"
            lock.parent.mkdir(parents=True, exist_ok=True)
            lock.touch()
            return str(write_hub_file(cache, repo_id, filename, data))
        finally:
            with self.changed:
                self.in_flight -= 1


def _response(code: int):
    import httpx2 as httpx

    return httpx.Response(code, request=httpx.Request("HEAD", "https://huggingface.co/x"))


# ------------------------------------------------------------------------- timm's hub path
def test_offline_cache_is_read_through_timms_hub_path(hub):
    saved = cache_weights(hub, A, seed=11)
    assert W.resolve_source(A).kind == "hf-hub" and W.is_cached(A) and not W.is_cached(B)
    bb = load_backbone(A, weights="pretrained", device="cpu", input_size=32)
    got = bb.model.state_dict()
    # every parameter of the headless model is the saved one (the classifier is dropped)
    assert set(got) <= set(saved) and len(set(saved) - set(got)) == 2
    for k, v in got.items():
        assert torch.equal(v, saved[k]), k
    rand = load_backbone(A, weights="random", device="cpu", input_size=32).model.state_dict()
    assert not all(torch.equal(rand[k], got[k]) for k in got)  # the file, not the random init
    with pytest.raises(W.WeightsNotCachedError, match=r"precompute fetch --pool test_efficientnet_ln"):
        load_backbone(B, weights="pretrained", device="cpu")


def test_slow_download_never_enters_load_seconds(hub, monkeypatch):
    """On a virtual clock (what precompute.clock reads advances only by the download's delay), so
    "the download is outside load_seconds" is exact: the clock moved by the delay, load_seconds
    by nothing."""
    delay = 2.0
    virtual = VirtualClock()
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)  # online: downloads allowed
    data = safetensors.torch.save(random_weights(A, seed=5))
    fake = FakeHub({f"timm/{A}": {"model.safetensors": data}}, delay=delay, sleep=virtual.sleep)
    monkeypatch.setattr(W, "hf_hub_download", fake)
    # the hub's own metadata requests (timm's hf_hub_download of a cached file): count the online ones
    import huggingface_hub.file_download as fd

    real_meta, online = fd.get_hf_file_metadata, []

    def metadata(*a, **k):
        if not hub_constants.is_offline_mode():
            online.append(a or k)
            virtual.sleep(1.0)  # what a round trip to the hub costs inside a clock
            raise ConnectionError("no network in this test")
        return real_meta(*a, **k)

    monkeypatch.setattr(fd, "get_hf_file_metadata", metadata)
    with monkeypatch.context() as m:
        m.setattr(clock, "time", virtual)  # clock reads time.perf_counter only
        t0 = virtual.perf_counter()
        bb = load_backbone(A, weights="pretrained", device="cpu", input_size=32)
        wall = virtual.perf_counter() - t0
    assert fake.calls == [(f"timm/{A}", "model.safetensors", False)]  # downloaded once, before
    assert fake.spans_open == [0]  # in no measured block
    assert wall == delay and bb.load_seconds == 0.0, (wall, bb.load_seconds)  # the delay is outside
    assert online == []  # the timed creation made no hub request although online
    # a second load (on the real clock) finds it cached: no download at all, so none of its time
    # can be a download's (no wall-clock bound needed)
    again = load_backbone(A, weights="pretrained", device="cpu", input_size=32)
    assert len(fake.calls) == 1
    assert again.load_seconds > 0


@pytest.mark.slow
def test_sweep_with_slow_download_charges_no_download(hub, monkeypatch, tmp_path, data_cache):
    """The download's hour passes on a virtual clock running on top of the real one
    (``time.perf_counter`` = real + virtual seconds): the sweep's wall time per backbone holds it,
    the row's measured seconds cannot (no wall-clock bound, no tolerance)."""
    delay = 3600.0
    virtual = VirtualClock(real=True)
    monkeypatch.setattr(time, "perf_counter", virtual.perf_counter)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    fake = FakeHub({f"timm/{A}": {"model.safetensors": safetensors.torch.save(random_weights(A, 5))}},
                   delay=delay, sleep=virtual.sleep)
    monkeypatch.setattr(W, "hf_hub_download", fake)
    cfg = SweepConfig("digits", fractions=(0.1,), seeds=1, evaluators=("silhouette",), weights="pretrained",
                      device="cpu", input_size=32, parts_dir=str(tmp_path / "parts"), cache_dir=data_cache)
    summary = run_sweep(cfg, pool_frame([A]), show_progress=False, echo=None)
    assert summary.ok == 1
    frame, _ = P.read_part(P.part_path(cfg.parts_dir, "digits", A))
    row = frame.row(0, named=True)
    assert fake.spans_open == [0]  # downloaded in no measured block
    assert summary.seconds[A] - row["seconds"] >= delay, (summary.seconds[A], row)  # all of it outside
    assert 0 < row["load_seconds"] < row["seconds"]


def test_offline_uncached_backbone_is_a_failed_row_naming_fetch(hub, tmp_path, data_cache):
    cache_weights(hub, A, seed=3)
    cfg = SweepConfig("digits", fractions=(0.1,), seeds=1, evaluators=("silhouette",), weights="pretrained",
                      device="cpu", input_size=32, parts_dir=str(tmp_path / "parts"), cache_dir=data_cache)
    summary = run_sweep(cfg, pool_frame([A, B]), show_progress=False, echo=None)
    assert (summary.ok, summary.failed) == (1, 1)
    bad, _ = P.read_part(P.part_path(cfg.parts_dir, "digits", B))
    assert bad["status"].to_list() == ["failed"]
    err = bad["error"][0]
    assert err.startswith("WeightsNotCachedError: weights of test_efficientnet_ln.r160_in1k are not cached")
    assert "HF_HUB_OFFLINE=1" in err and "precompute fetch" in err
    assert bad["seconds"][0] > 0  # the cache look-up it spent


@pytest.mark.slow
def test_cli_run_offline_pretrained_end_to_end(sweep_home, tmp_path):
    """The real ``precompute run --weights pretrained`` with HF_HUB_OFFLINE=1 on a prepared cache:
    two backbones from the cache (features = those of the saved weights), one uncached -> a failed
    row naming ``precompute fetch``; the up-front check warns about it before any model loads."""
    hub = tmp_path / "hf-hub"
    saved = {n: cache_weights(hub, n, seed=20 + i) for i, n in enumerate(NAMES[:2])}
    work = tmp_path / "w"
    pools = [a for n in NAMES for a in ("--pool", n)]
    args = ["run", "--dataset", "digits", *pools, "--weights", "pretrained", "--input-size", "32",
            "--seeds", "1", "--fractions", "1.0", "--evaluators", "mlp", "--device", "cpu",
            "--no-progress", "--keep-features", "--cache-dir", sweep_home.cache,
            "--parts-dir", work / "parts", "--out", work / "oracles"]
    env = {"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        proc = cli("precompute.cli", *args, cwd=sweep_home.cwd)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning: HF_HUB_OFFLINE=1 and 1 of 3 backbones have no cached weights" in proc.stderr
    assert "2 ok, 1 failed" in proc.stdout
    frame = pl.read_parquet(work / "oracles" / "digits.parquet")
    by = {r["backbone"]: r for r in frame.iter_rows(named=True)}
    assert by[NAMES[0]]["status"] == by[NAMES[1]]["status"] == "ok"
    assert by[NAMES[2]]["status"] == "failed" and "precompute fetch" in by[NAMES[2]]["error"]
    # the features the run extracted are those of the saved weights (computed here independently)
    from precompute.datasets import load_dataset
    from precompute.extract import preprocess

    ds = load_dataset("digits", cache_dir=sweep_home.cache)
    images = np.concatenate([ds.train_images, ds.test_images])
    for name in NAMES[:2]:
        feats, index, _ = P.load_features(P.features_path(work / "parts", "digits", name))
        model = timm.create_model(name, num_classes=0, img_size=32) if "vit" in name else \
            timm.create_model(name, num_classes=0)
        model.load_state_dict({k: v for k, v in saved[name].items() if k in model.state_dict()})
        cfg = timm.data.resolve_model_data_config(model)
        cfg["input_size"] = (3, 32, 32)
        pick = index[:64]
        with torch.inference_mode():
            ref = model.eval()(preprocess(torch.from_numpy(images[pick]), cfg)).numpy()
        np.testing.assert_allclose(feats[:64].astype(np.float32), ref, rtol=2e-2, atol=2e-2)


# ------------------------------------------------------------------------------ eviction
@pytest.mark.slow
def test_evict_weights_leaves_the_cache_as_it_found_it(hub, monkeypatch, tmp_path, data_cache):
    cache_weights(hub, A, seed=1)  # pre-cached: must stay
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    fake = FakeHub({f"timm/{B}": {"model.safetensors": safetensors.torch.save(random_weights(B, 2))}})
    monkeypatch.setattr(W, "hf_hub_download", fake)
    before = listing(hub)
    seen_during = {}
    import precompute.backbone as backbone_mod

    real_load = backbone_mod.load_backbone

    def load(name, **kw):  # what the cache holds while each backbone is evaluated
        seen_during[name] = W.is_cached(name)
        return real_load(name, **kw)

    monkeypatch.setattr(backbone_mod, "load_backbone", load)

    def sweep(parts, evict, names=(A, B)):
        cfg = SweepConfig("digits", fractions=(0.1,), seeds=1, evaluators=("silhouette",),
                          weights="pretrained", device="cpu", input_size=32, parts_dir=str(parts),
                          cache_dir=data_cache, evict_weights=evict)
        return run_sweep(cfg, pool_frame(list(names)), show_progress=False, echo=None)

    assert sweep(tmp_path / "p1", evict=True).ok == 2
    assert seen_during == {A: True, B: True}  # B was downloaded before its evaluation
    assert fake.calls == [(f"timm/{B}", "model.safetensors", False)]
    assert listing(hub) == before  # exactly as found: A's files kept, B's (and its lock dir) gone
    # control: without --evict-weights the download stays
    assert sweep(tmp_path / "p2", evict=False, names=(B,)).ok == 1
    after = listing(hub)
    assert set(before) < set(after)
    assert any(k.startswith(f"models--timm--{B}/snapshots/") for k in after)


def test_evict_removes_only_what_the_download_added(hub, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    cache_weights(hub, A, seed=1)
    # the repository already held another file: only what the download added goes
    write_hub_file(hub, f"timm/{B}", "README.md", b"readme")
    fake = FakeHub({f"timm/{B}": {"pytorch_model.bin": b"not a checkpoint"}})
    monkeypatch.setattr(W, "hf_hub_download", fake)
    before = listing(hub)
    cw = W.ensure_weights(B)  # model.safetensors absent remotely: timm's order falls back to the .bin
    assert not cw.was_cached and cw.path.name == "pytorch_model.bin"
    assert [c[1] for c in fake.calls] == ["model.safetensors", "pytorch_model.bin"]
    assert W.evict(cw) and listing(hub) == before
    assert W.evict(W.ensure_weights(A)) == [] and listing(hub) == before  # cached before: kept


def test_url_only_backbone_goes_to_torch_hubs_cache(tmp_path, monkeypatch):
    import torch.hub

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch-hub"))
    name = "gcvit_base.in1k"  # one of timm's url-only pretrained cfgs
    src = W.resolve_source(name)
    assert src.kind == "url" and src.path.parent == tmp_path / "torch-hub" / "checkpoints"
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(W.WeightsNotCachedError, match="precompute fetch"):
        W.ensure_weights(name)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)

    def download(url, path):
        assert url == src.url
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")

    monkeypatch.setattr(W, "download_url", download)
    cw = W.ensure_weights(name)
    assert cw.path == src.path and cw.path.read_bytes() == b"weights" and W.is_cached(name)
    assert W.evict(cw) == [src.path] and not src.path.exists()


# --------------------------------------------------------------------------------- fetch
def test_fetch_sizes_total_parallel_and_failures(hub, monkeypatch, capsys):
    from precompute.cli import main

    cache_weights(hub, A, seed=1)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    files = {f"timm/{B}": {"model.safetensors": b"b" * 3000},
             f"timm/{C}": {"pytorch_model.bin": b"c" * 5000}}  # no safetensors: the .bin is fetched
    # each download waits for the other to be in flight too: at once with parallel downloads, after
    # FakeHub.MEET_TIMEOUT with sequential ones (which then leave most == 1)
    fake = FakeHub(files, fail={"timm/resnet18.a1_in1k"}, meet=2)
    monkeypatch.setattr(W, "hf_hub_download", fake)
    code = main(["fetch", "--pool", A, "--pool", B, "--pool", C, "--pool", "resnet18.a1_in1k",
                 "--jobs", "4", "--no-progress"])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0] == "fetch: 4 backbones, 2 to download (8.0 kB), 1 already cached"
    assert lines[1].startswith("fetch: 2 downloaded (8.0 kB), 1 already cached (")
    assert lines[1].endswith(", 1 failed")
    assert lines[2] == ("  failed: resnet18.a1_in1k: ConnectionError: simulated network failure for "
                        "timm/resnet18.a1_in1k")
    assert code == 2 and err.strip() == ("error: 1 of 4 backbones' weights could not be fetched "
                                         "(listed above); rerun the same command to retry them")
    assert W.is_cached(B) and W.is_cached(C)
    assert fake.most == 2  # the two downloads overlapped
    # a rerun has nothing left but the failure
    fake.fail.clear()
    fake.meet = 0
    fake.repos["timm/resnet18.a1_in1k"] = {"model.safetensors": b"r" * 10}
    assert main(["fetch", "--pool", A, "--pool", B, "--pool", C, "--pool", "resnet18.a1_in1k",
                 "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == ("fetch: 4 backbones, 1 to download (10 B), "
                                                      "3 already cached")


def test_fetch_offline_is_one_line(hub, capsys):
    from precompute.cli import main

    assert main(["fetch", "--pool", A]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: precompute fetch downloads weights, but HF_HUB_OFFLINE=1 is set")
