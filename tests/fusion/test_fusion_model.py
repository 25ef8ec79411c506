"""Every fusion strategy inside a real Model: masks, dropped modalities, predict()."""
import numpy as np
import pytest
import torch

from mmlab.config import ModelConfig
from mmlab.data import load_dataset
from mmlab.data.tokenizer import WordTokenizer
from mmlab.fusion import get, trainable as available
from mmlab.model import Model, build_model

B = 4


@pytest.fixture(scope="module")
def data():
    return load_dataset("shapes", "train", n=64)


@pytest.fixture(scope="module")
def models(data):
    """A cache of untrained mask models by strategy name (built once per module, used read-only)."""
    cache: dict[str, Model] = {}

    def get_model(name: str) -> Model:
        if name not in cache:
            cache[name] = make(data, name)
        return cache[name]

    return get_model


def make(data, name: str, **cfg) -> Model:
    torch.manual_seed(0)
    cfg = {"targets": {"label": 4}, "mask": True, "dim": 32, "image_size": 32, **cfg}
    return build_model(ModelConfig(fusion=name, **cfg), classes={"label": data.classes["label"]},
                 tokenizer=WordTokenizer.fit(data.texts).to_json()).eval()


def batch(model: Model, data):
    images = torch.from_numpy(data.images[:B, :, ::2, ::2].copy()).float() / 255  # 64 -> 32 px
    return images, model.tokenize(data.texts[:B])


@pytest.mark.parametrize("name", available())
def test_mask_model_builds_and_runs(data, models, name):
    model = models(name)
    with torch.no_grad():
        out = model(*batch(model, data))
    assert out.logits["label"].shape == (B, 4) and torch.isfinite(out.logits["label"]).all()
    assert out.mask.shape == (B, 32, 32) and torch.isfinite(out.mask).all()
    if get(name).spatial:
        assert out.fusion.tokens.shape == (B, out.encoded["image"].tokens.shape[1], 32)


@pytest.mark.parametrize("drop", ["image", "text"])
@pytest.mark.parametrize("name", available())
def test_dropping_a_modality(data, models, name, drop):
    model = models(name)
    images, text = batch(model, data)
    with torch.no_grad():
        full = model(images, text)
        dropped = model(images, text, drop=drop)
        # per sample: only the first sample loses the modality; the others must not change
        one = model(images, text, drop={drop: torch.tensor([True] + [False] * (B - 1))})
    for out in (dropped, one):
        assert out.logits["label"].shape == (B, 4) and torch.isfinite(out.logits["label"]).all()
        assert out.mask.shape == (B, 32, 32) and torch.isfinite(out.mask).all()
        assert torch.isfinite(out.fusion.fused).all()

    def changed(a, b, rows) -> bool:  # what the heads read: the logits or the fused vector
        return not (torch.allclose(a.logits["label"][rows], b.logits["label"][rows], atol=1e-6)
                    and torch.allclose(a.fusion.fused[rows], b.fusion.fused[rows], atol=1e-6))

    # (a late vote's logits stay put when the dropped voter had lost the vote; its fused vector moves)
    assert changed(full, dropped, slice(None)) and changed(full, one, slice(0, 1))
    assert not changed(full, one, slice(1, None))
    assert torch.allclose(full.logits["label"][1:], one.logits["label"][1:], atol=1e-5)


@pytest.mark.parametrize("name", [n for n in available() if get(n).decides])
@pytest.mark.parametrize("drop", ["image", "text"])
def test_late_fusion_skips_the_missing_classifier(data, name, drop):
    model = make(data, name, mask=False)
    with torch.no_grad():
        out = model(*batch(model, data), drop=drop)
    kept = "text" if drop == "image" else "image"
    probs = out.fusion.extras[f"probs:{kept}"]
    assert torch.allclose(out.logits["label"].softmax(-1), probs, atol=1e-5)


@pytest.mark.parametrize("drop", ["image", "text"])
def test_gated_forces_the_missing_gate_to_zero(data, drop):
    model = make(data, "gated", mask=False)
    with torch.no_grad():
        gates = model(*batch(model, data), drop=drop).fusion.extras["gates"]
    gone = 0 if drop == "image" else 1
    assert (gates[:, gone] == 0).all() and torch.allclose(gates[:, 1 - gone], torch.ones(B))


@pytest.mark.parametrize("name", available())
def test_predict_for_every_strategy(data, models, name):
    model = models(name)
    image, text = data.images[0].transpose(1, 2, 0), data.texts[0]
    for drop in (None, "image", "text"):
        p = model.predict(image, text, drop=drop)
        assert p.label in data.classes["label"]
        assert sum(p.probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert p.mask.shape == (32, 32)
        assert set(p.embeddings) == {"image", "text", "fused"}
        if get(name).attends:
            (H, T, h, w), = {a.shape for a in p.attention.values()}
            assert T == len(p.tokens) and (h, w) == model.image_encoder.grid == (8, 8)
            assert np.allclose(p.attention["layer0"].sum((-2, -1)), 1.0, atol=1e-4)
        else:
            assert p.attention is None


def test_early_fusion_uses_raw_encoders(models):
    from mmlab.encoders.raw import RawImage, RawText

    model = models("early")
    assert isinstance(model.image_encoder, RawImage) and isinstance(model.text_encoder, RawText)
    encoders = [*model.image_encoder.modules(), *model.text_encoder.modules()]
    assert not any(isinstance(m, (torch.nn.Conv2d, torch.nn.GRU)) for m in encoders)


@pytest.mark.parametrize("name", available())
def test_checkpoint_round_trip(data, models, name, tmp_path):
    from mmlab.checkpoint import load, save

    model = models(name)
    loaded = load(save(model, tmp_path / name))
    images, text = batch(model, data)
    with torch.no_grad():
        a, b = model(images, text), loaded(images, text)
    assert torch.allclose(a.logits["label"], b.logits["label"], atol=1e-5)


def test_fixed_late_weights_survive_the_json_config(data, tmp_path):
    from mmlab.checkpoint import load, save

    model = make(data, "late_weighted", mask=False, fusion_options={"weights": [0.7, 0.3]})
    loaded = load(save(model, tmp_path / "w"))
    assert torch.allclose(loaded.fusion.modality_weights(), torch.tensor([0.7, 0.3]))
