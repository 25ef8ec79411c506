"""Hostile checkpoint configs and weights: refused in one line before anything is allocated or downloaded, and
JSON output always valid. (The security issue's item 5, replayed.)"""
import json
import resource
import time

import pytest
import torch

import mmlab
from mmlab import checkpoint
from mmlab.config import ModelConfig
from mmlab.data.tokenizer import WordTokenizer
from mmlab.model import build_model


@pytest.fixture
def ckpt(tmp_path):
    model = build_model(ModelConfig(fusion="cross_attention", targets={"label": 3}, dim=16),
                        classes={"label": ["a", "b", "c"]},
                        tokenizer=WordTokenizer.fit(["a red circle", "a blue square"]).to_json())
    return checkpoint.save(model, tmp_path / "ck")


def edit(path, change):
    cfg = json.loads((path / "config.json").read_text())
    change(cfg)
    (path / "config.json").write_text(json.dumps(cfg))


def refused(path, *words):
    with pytest.raises(mmlab.InputError) as e:
        mmlab.load(path, fresh=True)
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    for w in words:
        assert w in msg, msg
    return msg


@pytest.mark.parametrize("options, word", [({"heads": 0}, "heads"), ({"heads": -4}, "heads"),
                                           ({"heads": 3}, "divisible"), ({"layers": 10_000}, "layers"),
                                           ({"dropout": "NaN"}, "dropout"), ({"heads": True}, "heads")])
def test_bad_fusion_options(ckpt, options, word):
    edit(ckpt, lambda c: c["model"].__setitem__("fusion_options", options))
    refused(ckpt, word)


def test_nan_in_the_json_is_not_a_number(ckpt):
    text = (ckpt / "config.json").read_text().replace('"fusion_options": {}', '"fusion_options": {"dropout": NaN}')
    (ckpt / "config.json").write_text(text)
    refused(ckpt, "NaN")


def test_a_200k_deep_json_is_refused_quickly(ckpt):
    (ckpt / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    t = time.perf_counter()
    refused(ckpt, "nested too deeply")
    assert time.perf_counter() - t < 5


def test_a_huge_model_is_refused_before_any_allocation(ckpt):
    """dim 2048 x 10,000 classes and deep layers: sized on the meta device, nothing allocated."""
    edit(ckpt, lambda c: (c["model"].__setitem__("dim", 2048), c["model"]["targets"].__setitem__("label", 10_000),
                          c["model"].__setitem__("fusion_options", {"layers": 12}),
                          c["classes"].__setitem__("label", [str(i) for i in range(10_000)])))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused(ckpt)  # too many parameters, or shapes that do not match the file: either way, nothing was built
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"the refusal allocated {grown_mb:.0f} MB"
    edit(ckpt, lambda c: (c["model"].__setitem__("dim", 4096), c["model"]["targets"].__setitem__("label", 100_000)))
    refused(ckpt, "dim")  # out of bounds before even the meta build


def test_an_encoder_that_would_download_is_refused_at_once(ckpt, monkeypatch):
    monkeypatch.delenv("MMLAB_TIMM_WEIGHTS", raising=False)
    edit(ckpt, lambda c: c["model"].__setitem__("image_encoder", "timm:resnet18"))
    t = time.perf_counter()
    refused(ckpt, "never downloads")
    assert time.perf_counter() - t < 2


def test_non_finite_weights_are_refused(ckpt):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(ckpt / "model.safetensors"))
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(ckpt / "model.safetensors"))
    refused(ckpt, "NaN or infinity", name)


def test_json_output_is_always_valid():
    from mmlab.cli import dumps

    out = dumps({"p": float("nan"), "q": [float("inf"), 1.5], "r": __import__("numpy").float32(2.5)})
    assert json.loads(out) == {"p": None, "q": [None, 1.5], "r": 2.5}
