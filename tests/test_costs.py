"""Costs that are exactly what a search pays (issue 7, item 1), on fast fake backbones/evaluators:

* the device warm-up runs once per worker, so the first backbone is not charged for first-call
  costs (ops made slow on their first call; a control without warm-up shows the test can fail);
* failed rows carry the seconds spent until the failure (load, extraction so far, fit so far);
* rows record the sizes they used (hand-computed on a tiny folder dataset where the 1% and 10%
  train subsets are both one image per class) and the epochs an evaluator reports;
* evaluators with a ``batched`` form: seed 0 alone and timed, seeds > 0 in one batched call, each
  charged seed 0's seconds per epoch x its own epochs; extraction is charged per seed from the
  segments its own images were extracted in; both derived costs agree with each seed run alone
  (sleep-timed fakes, so the comparison holds on a loaded machine); the protocol metadata says so,
  and parts measured under another timing protocol are refused.
"""
from __future__ import annotations

import time

import fixtures_datasets as fx
import numpy as np
import polars as pl
import pytest
import test_sweep
import torch
import torch.nn.functional as F
from test_sweep import FAST, centroid_acc, config, data_cache, fake_load_backbone, pool_frame, spread  # noqa: F401
from torch import nn
from virtual_clock import VirtualClock

import precompute.backbone as backbone_mod
import precompute.evaluators as evaluators_mod
import precompute.extract as extract_mod
import precompute.sweep as sweep_mod
from precompute import parts as P
from precompute.evaluators import EvaluatorSpec
from precompute.scores import EvalResult
from precompute.sweep import run_sweep
from shared.errors import VibesError

pytestmark = pytest.mark.filterwarnings("ignore:fraction .* keeps .* image:UserWarning")


def use(monkeypatch, evaluators: dict, loader=fake_load_backbone) -> None:
    monkeypatch.setattr(evaluators_mod, "EVALUATORS", evaluators)
    monkeypatch.setattr(backbone_mod, "load_backbone", loader)


def part(cfg, name) -> pl.DataFrame:
    return P.read_part(P.part_path(cfg.parts_dir, cfg.dataset, name))[0]


# ------------------------------------------------------------------------------- warm-up
def conv_backbone(name, weights="pretrained", device="auto", input_size=None, pretrained_file=None):
    """A fake backbone whose forward uses a convolution and a linear layer (seeded, so every
    ``conv_*`` name gives the same model and the same cost)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 12))
    cfg = {"input_size": (3, 8, 8), "mean": (0.5,) * 3, "std": (0.25,) * 3, "crop_pct": 1.0,
           "interpolation": "bilinear", "crop_mode": "center"}
    return backbone_mod.Backbone(name, model.eval().requires_grad_(False), cfg, 12, torch.device("cpu"),
                                 0.0, weights)


def mini_head(train_x, train_y, test_x, test_y, n_classes, seed):
    """A few Adam steps of a linear head over randperm batches, then a cdist-based score."""
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(train_x.shape[1], n_classes)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    with torch.enable_grad():
        for _ in range(3):
            idx = torch.randperm(len(train_x), generator=gen)[:64]
            loss = F.cross_entropy(head(train_x[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    head_acc = (head(test_x).argmax(1) == test_y).float().mean()
    nn_acc = (train_y[:50][torch.cdist(test_x, train_x[:50]).argmin(1)] == test_y).float().mean()
    return float((head_acc + nn_acc) / 2)


SLOW_ONCE = [(F, "conv2d"), (F, "linear"), (torch, "cdist"), (torch, "randperm"), (torch.optim.Adam, "step")]
DELAY = 0.8  # x 5 ops = 4 s, well above this shared machine's timing noise (~1 s)


def slow_first_calls(monkeypatch) -> list[str]:
    """Each op in SLOW_ONCE sleeps DELAY seconds on its first call in this process (a stand-in for
    CUDA context creation, cuDNN/cuBLAS handle set-up, lazy kernel loading)."""
    hits: list[str] = []
    for owner, attr in SLOW_ONCE:
        real = getattr(owner, attr)

        def wrapper(*a, __real=real, __attr=attr, **k):
            if __attr not in hits:
                hits.append(__attr)
                time.sleep(DELAY)
            return __real(*a, **k)

        monkeypatch.setattr(owner, attr, wrapper)
    return hits


def first_vs_second(monkeypatch, tmp_path, data_cache, warm: bool) -> tuple[float, float, list[str]]:
    use(monkeypatch, {"mlp": EvaluatorSpec("mlp", True, mini_head)}, conv_backbone)
    monkeypatch.setattr(sweep_mod, "_WARM", set())  # a fresh worker
    if not warm:
        monkeypatch.setattr(sweep_mod, "warm_up", lambda device: 0.0)
    hits = slow_first_calls(monkeypatch)
    cfg = config(tmp_path, data_cache, seeds=1, fractions=(1.0,), evaluators=("mlp",))
    run_sweep(cfg, pool_frame(["conv_1.a", "conv_2.a"]), show_progress=False, echo=None)
    first, second = (part(cfg, n)["seconds"][0] for n in ("conv_1.a", "conv_2.a"))
    return first, second, hits


def test_warm_up_keeps_first_call_costs_off_the_first_backbone(monkeypatch, tmp_path, data_cache):
    first, second, hits = first_vs_second(monkeypatch, tmp_path, data_cache, warm=True)
    assert sorted(hits) == sorted(a for _, a in SLOW_ONCE)  # every slow op was reached (by the warm-up)
    # the 4 s of first calls did not land on the first backbone (its whole cost is well below them)
    assert first < len(SLOW_ONCE) * DELAY * 0.6, (first, second)


def test_without_warm_up_the_first_backbone_pays(monkeypatch, tmp_path, data_cache):
    """Control: the same sweep with the warm-up disabled charges the first backbone."""
    first, second, hits = first_vs_second(monkeypatch, tmp_path, data_cache, warm=False)
    assert len(hits) == len(SLOW_ONCE)
    assert first >= len(SLOW_ONCE) * DELAY, (first, second)  # all 4 s inside its clock


def test_warm_up_is_once_per_process_and_leaves_the_rng(monkeypatch):
    monkeypatch.setattr(sweep_mod, "_WARM", set())
    state = torch.random.get_rng_state()
    assert sweep_mod.warm_up("cpu") > 0
    assert sweep_mod.warm_up("cpu") == 0.0 and sweep_mod._WARM == {"cpu"}
    assert torch.equal(torch.random.get_rng_state(), state)


# ------------------------------------------------------------------------- failed rows
def test_failed_load_is_charged_the_load_time(monkeypatch, tmp_path, data_cache):
    def slow_boom(name, **kw):
        time.sleep(0.3)
        raise RuntimeError(f"cannot build {name}")

    use(monkeypatch, FAST, slow_boom)
    cfg = config(tmp_path, data_cache, seeds=2, fractions=(1.0, 0.1))
    assert run_sweep(cfg, pool_frame(["boom_s.x"]), show_progress=False, echo=None).failed == 1
    f = part(cfg, "boom_s.x")
    assert f.height == 2 * 2 * 2 and (f["status"] == "failed").all()
    assert (f["load_seconds"] >= 0.3).all() and (f["seconds"] == f["load_seconds"]).all()
    assert (f["extract_seconds"] == 0).all() and (f["fit_seconds"] == 0).all()


def test_failed_extraction_is_charged_load_plus_extraction_so_far(monkeypatch, tmp_path, data_cache):
    use(monkeypatch, FAST)

    def oom_midway(bb, images, order, segments, **kw):
        time.sleep(0.4)  # some batches done
        raise RuntimeError("CUDA out of memory (simulated) after the batch back-off")

    monkeypatch.setattr(extract_mod, "extract_features", oom_midway)
    cfg = config(tmp_path, data_cache, seeds=1, fractions=(1.0, 0.03))
    assert run_sweep(cfg, pool_frame(["fake_o.x"]), show_progress=False, echo=None).failed == 1
    f = part(cfg, "fake_o.x")
    assert (f["status"] == "failed").all() and f["error"][0].startswith("RuntimeError: CUDA out of memory")
    assert (f["extract_seconds"] >= 0.4).all() and (f["load_seconds"] == 0.01).all()  # the fake's 0.01
    assert np.allclose(f["seconds"], f["load_seconds"] + f["extract_seconds"])
    # the sizes the rows were evaluating on
    assert f.filter(pl.col("fraction") == 1.0)["n_train"].unique().to_list() == [1438]


def test_failed_fit_fails_one_row_charged_its_fit_so_far(monkeypatch, tmp_path, data_cache):
    def slow_fail(train_x, train_y, test_x, test_y, n_classes, seed):
        time.sleep(0.3)
        if seed == 1:
            raise ValueError("singular matrix")
        return 0.5

    use(monkeypatch, {"mlp": FAST["mlp"], "flaky": EvaluatorSpec("flaky", False, slow_fail)})
    cfg = config(tmp_path, data_cache, seeds=2, fractions=(1.0,), evaluators=("mlp", "flaky"))
    run_sweep(cfg, pool_frame(["fake_f.x"]), show_progress=False, echo=None)
    f = part(cfg, "fake_f.x")
    bad = f.filter(pl.col("status") == "failed")
    assert bad.height == 1 and bad["evaluator"][0] == "flaky" and bad["seed"][0] == 1
    assert bad["error"][0] == "ValueError: singular matrix" and bad["score"][0] is None
    assert bad["fit_seconds"][0] >= 0.3
    assert bad["seconds"][0] == pytest.approx(bad["load_seconds"][0] + bad["extract_seconds"][0]
                                              + bad["fit_seconds"][0])
    assert (f.filter(pl.col("status") == "ok")["seconds"] > 0).all()


# ------------------------------------------------------------------------------ sizes
def test_rows_record_the_sizes_they_used(monkeypatch, tmp_path):
    """5 classes x 10 images: 80/20 per class -> 40 train, 10 test.  With a head (it scores on the
    test split): 50% -> 20 train, 5 test (as many as classes, the smallest such fraction: 10% would
    keep 1 test image and is refused).  Silhouette alone (no test split) runs at any fraction, its
    train subsets keeping >= 1 image per class: 10% -> max(round(4.0), 5) = 5 and 1% ->
    max(round(0.4), 5) = 5 (both one per class, the Flowers102 case), which the sweep says once."""
    root = fx.write_class_tree(tmp_path / "imgs", {c: 10 for c in "abcde"})
    epochs = EvaluatorSpec("head", True, lambda *a, n_classes, seed: EvalResult(0.5, epochs=7))
    use(monkeypatch, {"head": epochs, "silhouette": FAST["silhouette"]})
    cfg = config(tmp_path, str(tmp_path / "cache"), dataset=f"folder:{root}", seeds=2, fractions=(1.0, 0.5),
                 evaluators=("head", "silhouette"))
    cfg.dataset = sweep_mod.check_dataset_name(cfg.dataset)
    run_sweep(cfg, pool_frame(["fake_z.x"]), show_progress=False, echo=None)
    f = part(cfg, "fake_z.x")
    got = {(r["evaluator"], r["fraction"], r["seed"]): (r["n_train"], r["n_test"], r["epochs"])
           for r in f.iter_rows(named=True)}
    for seed in (0, 1):
        assert got[("head", 1.0, seed)] == (40, 10, 7)
        assert got[("head", 0.5, seed)] == (20, 5, 7)
        assert got[("silhouette", 1.0, seed)] == (40, 0, None)  # no test split used, not a head
        assert got[("silhouette", 0.5, seed)] == (20, 0, None)
    alone = config(tmp_path, str(tmp_path / "cache"), dataset=cfg.dataset, seeds=2, fractions=(1.0, 0.1, 0.01),
                   evaluators=("silhouette",), parts_dir=str(tmp_path / "alone"))
    lines: list[str] = []
    run_sweep(alone, pool_frame(["fake_z.x"]), show_progress=False, echo=lines.append)
    got = {(r["fraction"], r["seed"]): (r["n_train"], r["n_test"])
           for r in part(alone, "fake_z.x").iter_rows(named=True)}
    assert got == {(f, s): n for f, n in ((1.0, (40, 0)), (0.1, (5, 0)), (0.01, (5, 0))) for s in (0, 1)}
    notes = [x for x in lines if x.startswith("note:")]
    assert notes == [f"note: fractions 0.1, 0.01 of {cfg.dataset} keep fewer train images than its 5 classes "
                     "(e.g. 0 of 40 at 0.01): those train subsets keep one image per class (5 images; each row's "
                     "n_train says so)"]


# ---------------------------------------------------------------------------- batched
class Recorder:
    """An evaluator whose seeds > 0 can go through ``batched``; it records every call.  ``fn``
    takes 0.1 s per seed number + 0.1 s, so per-seed measured fits differ."""

    def __init__(self, batched_fails: bool = False):
        self.fn_seeds, self.batched_seeds, self.batched_fails = [], [], batched_fails

    def fn(self, train_x, train_y, test_x, test_y, n_classes, seed):
        self.fn_seeds.append(seed)
        time.sleep(0.1 * (seed + 1))
        return EvalResult(centroid_acc(train_x, train_y, test_x, test_y, n_classes, seed), epochs=200)

    def batched(self, tasks, n_classes, seeds):
        self.batched_seeds.append(list(seeds))
        assert len({tuple(t[0].shape) for t in tasks}) == 1  # equally shaped splits
        if self.batched_fails:
            raise RuntimeError("batched path broke")
        return [EvalResult(1.0 - 0.01 * s, epochs=150 + s) for s in seeds]


def test_batched_seeds_are_charged_their_own_epochs(monkeypatch, tmp_path, data_cache):
    rec = Recorder()
    use(monkeypatch, {"mlp": EvaluatorSpec("mlp", True, rec.fn, batched=rec.batched),
                      "silhouette": FAST["silhouette"]})
    cfg = config(tmp_path, data_cache, seeds=3, fractions=(1.0, 0.1))
    run_sweep(cfg, pool_frame(["fake_b.x"]), show_progress=False, echo=None)
    assert rec.fn_seeds == [0, 0] and rec.batched_seeds == [[1, 2], [1, 2]]  # per fraction
    f = part(cfg, "fake_b.x")
    for fr in (1.0, 0.1):
        g = {r["seed"]: r for r in f.filter((pl.col("evaluator") == "mlp") & (pl.col("fraction") == fr))
             .iter_rows(named=True)}
        assert g[0]["fit_seconds"] >= 0.1 and g[0]["epochs"] == 200
        for s in (1, 2):
            # seed 0's measured seconds per epoch x the seed's own epochs (150 + s), never a copy
            assert g[s]["fit_seconds"] == pytest.approx(g[0]["fit_seconds"] / 200 * (150 + s), rel=1e-12)
            assert g[s]["score"] == 1.0 - 0.01 * s and g[s]["epochs"] == 150 + s  # batched's results
            assert g[s]["seconds"] == pytest.approx(g[s]["load_seconds"] + g[s]["extract_seconds"]
                                                    + g[s]["fit_seconds"])
    meta = P.read_part(P.part_path(cfg.parts_dir, "digits", "fake_b.x"))[1]
    fit = meta["protocol"]["timing"]["fit_seconds"]
    batched_key = next(k for k in fit if k.startswith("seed 0 trained alone"))
    assert "its own epochs" in batched_key
    assert fit[batched_key] == ["mlp"] and fit["measured per row (each seed alone)"] == ["silhouette"]
    assert meta["protocol"]["timing"]["device"] == "cpu"


class SleepyHead:
    """A head that sleeps ``dt`` per epoch and runs a seed-dependent number of epochs (as
    ``mlp-sklearn``'s early stopping does); its batched form trains every seed in one call."""

    dt = 0.02

    @staticmethod
    def epochs(seed: int) -> int:
        return (12, 7, 17)[seed % 3]

    def fn(self, train_x, train_y, test_x, test_y, n_classes, seed):
        for _ in range(self.epochs(seed)):
            time.sleep(self.dt)
        return EvalResult(centroid_acc(train_x, train_y, test_x, test_y, n_classes, seed), epochs=self.epochs(seed))

    def batched(self, tasks, n_classes, seeds):
        for _ in range(max(self.epochs(s) for s in seeds)):
            time.sleep(self.dt)
        return [EvalResult(centroid_acc(*t, n_classes, s), epochs=self.epochs(s)) for t, s in zip(tasks, seeds)]


class Sleep(nn.Module):
    def forward(self, x):
        time.sleep(0.02)  # per extraction batch
        return x


def sleepy_backbone(name, weights="pretrained", device="auto", input_size=None, pretrained_file=None):
    bb = fake_load_backbone(name, weights, device, input_size, pretrained_file)
    bb.model = nn.Sequential(Sleep(), bb.model)
    return bb


def test_derived_seed_costs_agree_with_each_seed_run_alone(monkeypatch, tmp_path, data_cache):
    """The rule of ``protocol.timing`` held to sequential runs: a sweep whose seeds > 0 are batched
    (fit derived from seed 0's seconds per epoch, extraction from each seed's own segments) against
    each seed evaluated alone, from a cold start, the way a live search would (its own one-seed
    plan, its head trained alone): per row within 25 %, and where the epochs differ the fits do.
    On a virtual clock (``time.perf_counter`` advanced by the fakes' sleeps only), so the two sides
    are measured without the noise of a loaded machine: a test holds no wall-clock bound."""
    from precompute.datasets import load_dataset, subset_plan
    from precompute.sweep import SweepConfig, evaluate_backbone, extraction_plan

    virtual = VirtualClock()
    monkeypatch.setattr(time, "perf_counter", virtual.perf_counter)
    monkeypatch.setattr(time, "sleep", virtual.sleep)
    head = SleepyHead()
    use(monkeypatch, {"head": EvaluatorSpec("head", True, head.fn, batched=head.batched)}, sleepy_backbone)
    cfg = config(tmp_path, data_cache, seeds=3, fractions=(1.0, 0.1), evaluators=("head",), batch_size=32)
    run_sweep(cfg, pool_frame(["fake_s.x"]), show_progress=False, echo=None)
    swept = {(r["fraction"], r["seed"]): r for r in part(cfg, "fake_s.x").iter_rows(named=True)}
    ds = load_dataset("digits", cache_dir=data_cache)
    images = np.concatenate([ds.train_images, ds.test_images])
    every = subset_plan(ds, [1.0, 0.1], [0, 1, 2])
    one = SweepConfig(**{**cfg.setup_fields(), "fractions": (1.0, 0.1), "seeds": 1, "evaluators": ("head",),
                         "parts_dir": str(tmp_path / "alone")})
    for seed in (0, 1, 2):
        plans = {0: every[seed]}  # seed `seed`'s own subsets, evaluated on their own
        plan = extraction_plan(plans, (1.0, 0.1), len(ds.train_labels), len(images))
        monkeypatch.setattr(SleepyHead, "epochs", staticmethod(lambda s, k=seed: (12, 7, 17)[k]))
        alone = {r["fraction"]: r for r in evaluate_backbone(one, "fake_s.x", {}, ds, plans, plan, images)
                 .frame.iter_rows(named=True)}
        for f in (1.0, 0.1):
            got, want = swept[(f, seed)], alone[f]
            assert got["epochs"] == want["epochs"] == (12, 7, 17)[seed]
            for col in ("fit_seconds", "extract_seconds"):
                assert got[col] == pytest.approx(want[col], rel=0.25), (f, seed, col, got[col], want[col])
    for f in (1.0, 0.1):
        fits = [swept[(f, s)]["fit_seconds"] for s in (0, 1, 2)]
        assert fits[1] < fits[0] < fits[2]  # 7, 12, 17 epochs
        per_epoch = [swept[(f, s)]["fit_seconds"] / swept[(f, s)]["epochs"] for s in (0, 1, 2)]
        assert max(per_epoch) / min(per_epoch) <= 1.25


def test_unbatched_or_broken_batched_seeds_are_each_timed_alone(monkeypatch, tmp_path, data_cache):
    rec = Recorder(batched_fails=True)
    use(monkeypatch, {"mlp": EvaluatorSpec("mlp", True, rec.fn, batched=rec.batched)})
    cfg = config(tmp_path, data_cache, seeds=3, fractions=(1.0,), evaluators=("mlp",))
    with pytest.warns(RuntimeWarning, match="batched training of seeds \\[1, 2\\] failed .*batched path broke"):
        run_sweep(cfg, pool_frame(["fake_u.x"]), show_progress=False, echo=None)
    assert rec.batched_seeds == [[1, 2]] and rec.fn_seeds == [0, 1, 2]  # fell back to fn per seed
    fit = part(cfg, "fake_u.x").sort("seed")["fit_seconds"].to_list()
    assert fit[0] < fit[1] < fit[2]  # 0.1, 0.2, 0.3 s: each measured, none copied
    assert (part(cfg, "fake_u.x")["status"] == "ok").all()


def test_parts_of_another_timing_protocol_are_refused(monkeypatch, tmp_path, data_cache):
    rec = Recorder()
    use(monkeypatch, {"mlp": EvaluatorSpec("mlp", True, rec.fn), "silhouette": FAST["silhouette"]})
    cfg = config(tmp_path, data_cache, seeds=2, fractions=(1.0,))
    run_sweep(cfg, pool_frame(["fake_p.x"]), show_progress=False, echo=None)
    # the same run, but mlp's seeds > 0 now batched: fit_seconds would mean something else
    use(monkeypatch, {"mlp": EvaluatorSpec("mlp", True, rec.fn, batched=rec.batched),
                      "silhouette": FAST["silhouette"]})
    with pytest.raises(VibesError, match="holds parts of another run .*there.*here"):
        run_sweep(cfg, pool_frame(["fake_p.x", "fake_q.x"]), show_progress=False, echo=None)


def test_real_mlp_batched_rows_match_single_heads(monkeypatch, tmp_path, data_cache):
    """The registry's own ``mlp`` (batched form from precompute.heads) through the sweep: seeds 1-2
    in one batched call score as ``mlp_score`` alone does for those seeds (within 1 test image)."""
    from precompute.evaluators import EVALUATORS, mlp_score

    if EVALUATORS["mlp"].batched is None:
        pytest.skip("mlp has no batched form yet")
    monkeypatch.setattr(backbone_mod, "load_backbone", fake_load_backbone)
    cfg = config(tmp_path, data_cache, seeds=3, fractions=(0.1,), evaluators=("mlp",))
    run_sweep(cfg, pool_frame(["fake_m.x"]), show_progress=False, echo=None)
    f = part(cfg, "fake_m.x").sort("seed")
    assert (f["status"] == "ok").all() and f["fit_seconds"].n_unique() == 1
    from precompute.datasets import load_dataset, subset_plan
    from precompute.extract import extract_features

    ds = load_dataset("digits", cache_dir=data_cache)
    images = np.concatenate([ds.train_images, ds.test_images])
    feats, _ = extract_features(fake_load_backbone("fake_m.x"), images, np.arange(len(images)), [len(images)])
    plans = subset_plan(ds, [0.1], [0, 1, 2])
    for s in (1, 2):
        tr, te = plans[s][0.1]
        alone = mlp_score(feats[tr], torch.as_tensor(ds.train_labels[tr]), feats[te + len(ds.train_labels)],
                          torch.as_tensor(ds.test_labels[te]), n_classes=10, seed=s)
        alone = alone.score if isinstance(alone, EvalResult) else alone
        assert abs(f["score"][s] - alone) <= 1 / len(te) + 1e-12, (s, f["score"][s], alone)


def test_a_seed_with_seed_0s_epochs_pays_exactly_seed_0s_fit_seconds():
    """Hand cases of the derivation, and the one that failed CI: equal epochs must give seed 0's
    float exactly (0.1 / 3 * 3 == 0.1 is false in IEEE doubles), else a part lists two costs for one."""
    rng = np.random.default_rng(0)
    for fit0, e in zip(rng.uniform(1e-3, 100.0, 2000), rng.integers(1, 400, 2000)):
        assert sweep_mod.derived_fit_seconds(float(fit0), int(e), int(e)) == float(fit0)
    assert sweep_mod.derived_fit_seconds(0.3, 10, 20) == pytest.approx(0.6, rel=1e-15)
    assert sweep_mod.derived_fit_seconds(1.2, 12, 7) == pytest.approx(0.7, rel=1e-15)
    assert sweep_mod.derived_fit_seconds(1.2, None, 7) == 1.2  # seed 0's epochs unknown
    assert sweep_mod.derived_fit_seconds(1.2, 12, None) == 1.2
