import time

import pytest
import torch

from mmlab import features
from mmlab.config import ModelConfig
from mmlab.data import load_dataset
from mmlab.errors import InputError
from mmlab.model import build_model
from mmlab.train import Prepared


@pytest.fixture(scope="module")
def data():
    return load_dataset("shapes", "train", n=12)


@pytest.fixture(scope="module")
def model(data):
    cfg = ModelConfig(image_encoder="efficientnet_lite0", text_encoder="minilm", dim=32,
                      targets={"label": len(data.classes["label"])})
    return build_model(cfg, classes={"label": data.classes["label"]})


@pytest.fixture(scope="module")
def prepared(model, data):
    """Read-only tests share one extraction (Prepared runs extract_cached for both modalities)."""
    return Prepared(model, data)


def test_second_call_is_a_cache_hit(model, data, feature_cache, monkeypatch):
    prepared = Prepared(model, data)  # computes both modalities through extract_cached
    image = prepared.features["image"]
    assert image["feats"].shape == (12, 1280, 4, 4)
    path = features.cache_path(model, "image", data, prepared)
    assert path.is_file() and path.parent == feature_cache

    def no_compute(*a, **k):
        raise AssertionError("features were computed again")

    monkeypatch.setattr(features, "compute", no_compute)
    t0 = time.perf_counter()
    again = features.extract_cached(model, "image", data, prepared)
    assert time.perf_counter() - t0 < 2.0
    assert again["feats"] is image["feats"]  # served from memory
    features.clear_memory()
    from_disk = features.extract_cached(model, "image", data, prepared)
    assert torch.equal(from_disk["feats"], image["feats"])


def test_cached_features_equal_direct_extraction(model, prepared):
    direct = model.image_encoder.extract(prepared.images[:3].float() / 255)
    # same values; not bitwise, since batch size and thread count change the float kernels
    torch.testing.assert_close(prepared.features["image"]["feats"][:3].float(), direct["feats"].float(),
                               atol=2e-2, rtol=1e-2)


def test_text_features_are_padded_to_the_dataset_max(model, prepared):
    text = prepared.features["text"]
    T = prepared.text["attention_mask"].shape[1]
    assert text["hidden"].shape == (12, T, 384)
    assert torch.equal(text["attention_mask"], prepared.text["attention_mask"])
    pad = text["attention_mask"] == 0
    assert pad.any() and text["hidden"][pad].abs().max() == 0
    # small batches see shorter texts: the result is padded back to the same features
    small = features.compute(model.text_encoder, dict(prepared.text), batch_size=2)
    assert small["hidden"].shape == text["hidden"].shape
    assert torch.allclose(small["hidden"].float(), text["hidden"].float(), atol=2e-2)


def test_another_subset_of_the_same_size_is_not_a_hit(model, data):
    a, b = data.subset(range(0, 6)), data.subset(range(6, 12))
    fa = features.extract_cached(model, "image", a, Prepared(model, a))
    fb = features.extract_cached(model, "image", b, Prepared(model, b))
    assert not torch.equal(fa["feats"], fb["feats"])


def test_unfrozen_encoder_has_no_cache(data):
    cnn = build_model(ModelConfig(image_encoder="cnn", text_encoder="minilm", dim=32, targets={"label": 4}),
                classes={"label": data.classes["label"]})
    with pytest.raises(InputError):
        features.extract_cached(cnn, "image", data, Prepared(cnn, data))
