"""Backbone loading (timm's pretrained path, offline from a file) and feature extraction."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytestmark = pytest.mark.torch

from PIL import Image  # noqa: E402
from timm.data import create_transform  # noqa: E402

from precompute.backbone import Backbone, load_backbone, resolve_device  # noqa: E402
from precompute.evaluators import mlp_score  # noqa: E402
from precompute.extract import extract_features, preprocess  # noqa: E402
from shared.errors import UnknownNameError, VibesError  # noqa: E402

TINY = "test_vit.r160_in1k"  # 0.37 M params, 64-d features


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny() -> Backbone:
    return load_backbone(TINY, weights="random", device="cpu", input_size=64)


# ---------------------------------------------------------------- preprocessing

@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("crop_pct", [0.875, 1.0])
@pytest.mark.parametrize("crop_mode", ["center", "squash", "border"])
def test_preprocess_matches_timm_transform(interpolation, crop_pct, crop_mode):
    cfg = dict(input_size=(3, 48, 48), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
               crop_pct=crop_pct, interpolation=interpolation, crop_mode=crop_mode)
    reference = create_transform(**cfg, is_training=False)
    rng = np.random.default_rng(0)
    for shape in [(32, 32), (37, 53), (120, 90)]:  # upsampling, non-square, downsampling
        imgs = rng.integers(0, 256, size=(3, *shape, 3), dtype=np.uint8)
        want = torch.stack([reference(Image.fromarray(im)) for im in imgs])
        got = preprocess(torch.from_numpy(imgs), cfg)
        assert got.shape == want.shape == (3, 3, 48, 48)
        diff = (got - want).abs()
        assert diff.mean() < 0.005, (shape, float(diff.mean()))
        assert diff.max() < 0.05  # at most ~2/255 before normalisation


def test_preprocess_follows_the_model_config(tiny):
    cfg = timm.data.resolve_model_data_config(timm.create_model("resnet18.a1_in1k", pretrained=False))
    assert (cfg["interpolation"], cfg["crop_pct"]) == ("bicubic", 0.95)
    img = np.random.default_rng(1).integers(0, 256, size=(1, 256, 300, 3), dtype=np.uint8)
    want = create_transform(**cfg, is_training=False)(Image.fromarray(img[0]))
    got = preprocess(torch.from_numpy(img), cfg)[0]
    assert (got - want).abs().mean() < 0.005


def test_preprocess_rejects_bad_input():
    cfg = dict(input_size=(3, 8, 8), mean=(0,) * 3, std=(1,) * 3, crop_pct=1.0, interpolation="bicubic")
    with pytest.raises(VibesError, match="uint8"):
        preprocess(torch.zeros(1, 8, 8, 3), cfg)
    with pytest.raises(VibesError, match="interpolation"):
        preprocess(torch.zeros(1, 8, 8, 3, dtype=torch.uint8), {**cfg, "interpolation": "lanczos"})


# ---------------------------------------------------------------- loading

def test_load_random_backbone(tiny):
    assert tiny.name == TINY and tiny.weights == "random" and tiny.device == torch.device("cpu")
    assert tiny.feature_dim == 64 and tiny.load_seconds > 0
    assert tiny.data_config["input_size"] == (3, 64, 64)
    assert not tiny.model.training
    assert not any(p.requires_grad for p in tiny.model.parameters())
    out = tiny.model(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 64)  # num_classes=0: pooled pre-logits


def test_input_size_override_for_archs_without_img_size():
    bb = load_backbone("resnet18.a1_in1k", weights="random", device="cpu", input_size=32)
    assert bb.data_config["input_size"] == (3, 32, 32) and bb.feature_dim == 512
    assert bb.data_config["crop_pct"] == 0.95  # the rest of the config is the pretrained one
    feats, _ = extract_features(bb, np.zeros((2, 20, 20, 3), np.uint8), np.arange(2), [2])
    assert feats.shape == (2, 512)


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_pretrained_path_loads_a_local_file(tmp_path, fmt):
    """weights='pretrained' with a file goes through timm's own pretrained loader (no network)."""
    src = timm.create_model(TINY, pretrained=False)  # with its 1000-class head, as published
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    path = tmp_path / f"weights.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(src.state_dict(), str(path))
    else:
        torch.save(src.state_dict(), path)
    bb = load_backbone(TINY, weights="pretrained", device="cpu", pretrained_file=str(path))
    assert bb.weights == "pretrained"
    got, want = bb.model.state_dict(), src.state_dict()
    assert set(want) - set(got) == {"head.weight", "head.bias"}  # classifier dropped (num_classes=0)
    for k, v in got.items():
        assert torch.equal(v, want[k]), k
    random = load_backbone(TINY, weights="random", device="cpu")
    assert not torch.equal(random.model.state_dict()["patch_embed.proj.weight"], want["patch_embed.proj.weight"])


def test_load_errors(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown backbone 'resnet9000'"):
        load_backbone("resnet9000", weights="random", device="cpu")
    with pytest.raises(UnknownNameError, match="unknown backbone 'resnet18.no_such_tag'"):
        load_backbone("resnet18.no_such_tag", weights="random", device="cpu")
    with pytest.raises(UnknownNameError, match="unknown weights 'imagenet'"):
        load_backbone(TINY, weights="imagenet", device="cpu")
    with pytest.raises(VibesError, match="not found"):
        load_backbone(TINY, pretrained_file=str(tmp_path / "nope.safetensors"), device="cpu")
    bad = tmp_path / "bad.pth"
    torch.save({"unrelated.weight": torch.zeros(3)}, bad)
    # timm loads non-strictly with num_classes=0 and only logs missing keys: a checkpoint that does
    # not fit must raise (the sweep records a failed row), never leave layers silently random
    with pytest.raises(RuntimeError, match="do not fit the architecture: missing cls_token, pos_embed"):
        load_backbone(TINY, pretrained_file=str(bad), device="cpu")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(VibesError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(VibesError, match="CUDA is not available"):
            resolve_device("cuda")


def test_resolve_device_refuses_a_cuda_index_the_machine_lacks(monkeypatch):
    # a pretend 2-GPU machine: cuda:1 is fine, cuda:2 is a one-line error before anything runs
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(VibesError, match=r"'cuda:2' does not exist: this machine has 2 CUDA device\(s\)"):
        resolve_device("cuda:2")


# ---------------------------------------------------------------- extraction

def test_extract_order_segments_and_values(tiny):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(10, 20, 24, 3), dtype=np.uint8)
    order = np.array([7, 2, 9, 0, 5, 4, 1, 8])  # images 3 and 6 are not needed
    seen = []
    feats, seconds = extract_features(tiny, images, order, [2, 3, 3], batch_size=3, progress=seen.append)
    assert feats.shape == (10, 64) and feats.dtype == torch.float32
    assert len(seconds) == 3 and all(s >= 0 for s in seconds)
    assert seen[-1] == 8 and seen == sorted(seen)
    assert torch.count_nonzero(feats[[3, 6]]) == 0
    with torch.no_grad():
        direct = tiny.model(preprocess(torch.from_numpy(images[order]), tiny.data_config))
    assert torch.allclose(feats[order], direct, atol=1e-5)
    # the features train the head outside inference mode
    labels = torch.tensor([i % 2 for i in range(10)])
    assert 0 <= mlp_score(feats[order], labels[order], feats[order], labels[order], 2, seed=0, epochs=1).score <= 1


def test_extract_validates_inputs(tiny):
    images = np.zeros((4, 8, 8, 3), np.uint8)
    with pytest.raises(VibesError, match="summing to len"):
        extract_features(tiny, images, np.arange(4), [1, 2])
    with pytest.raises(VibesError, match="uint8"):
        extract_features(tiny, images.astype(np.float32), np.arange(4), [4])
    with pytest.raises(VibesError, match="outside"):
        extract_features(tiny, images, np.array([0, 4]), [2])


class _Stub(torch.nn.Module):
    """Returns features of width 4; can fail on big batches or emit NaN."""

    def __init__(self, max_batch: int = 10**9, nan: bool = False):
        super().__init__()
        self.max_batch, self.nan, self.batches = max_batch, nan, []

    def forward(self, x):
        if len(x) > self.max_batch:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        self.batches.append(len(x))
        f = x.mean(dim=(2, 3)).repeat(1, 2)[:, :4]
        return f * float("nan") if self.nan else f


def _stub_backbone(model, tiny) -> Backbone:
    return Backbone("stub", model, tiny.data_config, 4, torch.device("cpu"), 0.0, "random")


def test_extract_halves_batch_on_out_of_memory(tiny):
    model = _Stub(max_batch=3)
    images = np.random.default_rng(3).integers(0, 256, size=(11, 8, 8, 3), dtype=np.uint8)
    feats, _ = extract_features(_stub_backbone(model, tiny), images, np.arange(11), [11], batch_size=16)
    assert model.batches == [2, 2, 2, 2, 2, 1]  # 16 -> 8 -> 4 -> 2, kept for later batches
    assert torch.count_nonzero(feats.abs().sum(1)) == 11
    with pytest.raises(RuntimeError, match="even with batch size 1"):
        extract_features(_stub_backbone(_Stub(max_batch=0), tiny), images, np.arange(11), [11])


def test_extract_rejects_non_finite_features(tiny):
    images = np.zeros((3, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="non-finite features"):
        extract_features(_stub_backbone(_Stub(nan=True), tiny), images, np.arange(3), [3])


def test_extract_nothing_and_empty_segments(tiny):
    images = np.zeros((3, 8, 8, 3), np.uint8)
    feats, seconds = extract_features(tiny, images, np.array([], dtype=np.int64), [0])
    assert feats.shape == (3, 64) and torch.count_nonzero(feats) == 0 and len(seconds) == 1
    feats, seconds = extract_features(tiny, images, np.array([2, 0]), [0, 2, 0])
    assert len(seconds) == 3 and torch.count_nonzero(feats[1]) == 0 and torch.count_nonzero(feats[2]) > 0


# ---------------------------------------------------------------- input-size constraints, token models

def test_input_size_rounded_to_what_the_model_takes():
    """A ViT with 16-px patches cannot take 20 px: checked before any forward, rounded up to 32."""
    from precompute.backbone import fit_input_size

    assert fit_input_size("resnet18.a1_in1k", 32) == (32, None)  # a CNN takes any size
    size, note = fit_input_size(TINY, 20)
    assert size == 32 and "divisible by patch size (16)" in note
    bb = load_backbone(TINY, weights="random", device="cpu", input_size=20)
    assert bb.data_config["input_size"] == (3, 32, 32) and bb.input_size_note == note
    feats, _ = extract_features(bb, np.zeros((2, 20, 20, 3), np.uint8), np.arange(2), [2])
    assert feats.shape == (2, 64)
    # the model really does refuse 20 px (the check above is not just cautious)
    with pytest.raises(AssertionError, match="divisible by patch size"):
        timm.create_model(TINY, img_size=20, num_classes=0)(torch.zeros(1, 3, 20, 20))


def test_fit_input_size_search(monkeypatch):
    """The search itself, on a stand-in for the meta-device probe: the smallest larger size that
    works, at most twice the size asked for; refused with the model's reason beyond; not judged when
    the probe fails at the native size too."""
    import precompute.backbone as B

    probes: list[int] = []

    def probe(rule):
        def run(name, size):
            probes.append(size)
            return None if rule(size) else f"AssertionError: size {size} is not allowed"
        return run

    monkeypatch.setattr(B, "_meta_forward_error", probe(lambda s: s % 48 == 0))
    assert B.fit_input_size("resnet18.a1_in1k", 32)[0] == 48  # tried 32, 42 (3 x 14), then 48
    assert probes[0] == 32 and probes == sorted(probes)
    monkeypatch.setattr(B, "_meta_forward_error", probe(lambda s: s == 224))  # only the native size
    with pytest.raises(VibesError, match=r"cannot take input size 32 \(nor larger sizes up to 96.*native size is "
                                         r"224\): AssertionError: size 32 is not allowed"):
        B.fit_input_size("resnet18.a1_in1k", 32)
    monkeypatch.setattr(B, "_meta_forward_error", probe(lambda s: False))  # meta cannot run it at all
    assert B.fit_input_size("resnet18.a1_in1k", 32) == (32, None)


class _Tokens(torch.nn.Module):
    """Returns a (B, T, D) token sequence, as the multimodal `_enc` towers do."""

    def forward(self, x):
        b = x.shape[0]
        return torch.arange(b * 5 * 4, dtype=torch.float32).view(b, 5, 4) + x.mean()


def test_token_sequences_are_mean_pooled(tiny):
    images = np.random.default_rng(4).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    feats, _ = extract_features(_stub_backbone(_Tokens(), tiny), images, np.arange(3), [3])
    x = preprocess(torch.from_numpy(images), tiny.data_config)
    want = _Tokens()(x).mean(dim=1)  # the mean over the 5 tokens, by hand
    assert feats.shape == (3, 4) and torch.allclose(feats, want)


def test_models_with_5d_weights_load_without_channels_last():
    """lambda_resnet* hold a Conv3d: torch refuses channels-last for its 5-D weight, so such a model
    stays contiguous (and still runs, on channels-last input)."""
    name = "lambda_resnet26t.c1_in1k"
    with pytest.raises(RuntimeError, match="required rank 4 tensor to use channels_last"):
        timm.create_model(name, num_classes=0).to(memory_format=torch.channels_last)
    bb = load_backbone(name, weights="random", device="cpu", input_size=64)
    feats, _ = extract_features(bb, np.random.default_rng(5).integers(0, 256, (2, 64, 64, 3), np.uint8),
                                np.arange(2), [2])
    assert feats.shape == (2, bb.feature_dim) and torch.isfinite(feats).all()
    # 4-D-only models are still channels-last
    conv = load_backbone("resnet18.a1_in1k", weights="random", device="cpu").model.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
