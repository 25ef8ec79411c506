"""The bfloat16 copy a page scores whole splits with (``evaluate.fast_model``): a copy, kept while the weights
stay, remade when they change, with the CNN's batch norms folded into its convolutions exactly."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mmlab.config import ModelConfig
from mmlab.data import load_dataset
from mmlab.data.tokenizer import WordTokenizer
from mmlab.evaluate import _fold_batch_norms, bf16_supported, fast_model, predict_dataset
from mmlab.model import build_model


@pytest.fixture(scope="module")
def data():
    return load_dataset("shapes", "test", n=48)


@pytest.fixture()
def model(data):
    torch.manual_seed(0)
    m = build_model(ModelConfig(fusion="cross_attention", targets={"label": 4}, mask=True, dim=32),
                    classes={"label": data.classes["label"]}, tokenizer=WordTokenizer.fit(data.texts).to_json())
    with torch.no_grad():  # running statistics of a trained net, not the identity of a fresh one
        for bn in m.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
    return m.eval()


def test_folding_the_batch_norms_changes_no_output(model, data):
    folded = _fold_batch_norms(copy.deepcopy(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.image_encoder.modules())
    a = predict_dataset(model, data)
    b = predict_dataset(folded, data)
    torch.testing.assert_close(torch.from_numpy(b["mask"]), torch.from_numpy(a["mask"]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.from_numpy(b["probs"]["label"]), torch.from_numpy(a["probs"]["label"]),
                               atol=1e-5, rtol=1e-4)


def test_the_copy_is_kept_until_the_weights_change(model):
    first = fast_model(model)
    if not bf16_supported():
        assert first is model
        return
    assert first is not model and first.float_dtype == torch.bfloat16 and model.float_dtype == torch.float32
    assert fast_model(model) is first
    assert first._lock is not model._lock  # a copy locks on its own
    with torch.no_grad():
        model.mask_head.out.bias.add_(1.0)  # a training step would do the same: in place
    second = fast_model(model)
    assert second is not first
    assert second.mask_head.out.bias.float().item() == pytest.approx(model.mask_head.out.bias.item(), abs=1e-2)


def test_fast_scoring_agrees_with_float32(model, data):
    exact = predict_dataset(model, data)
    fast = predict_dataset(model, data, fast=True)
    assert fast["mask"].dtype == exact["mask"].dtype
    assert ((fast["mask"] >= 0.5) == (exact["mask"] >= 0.5)).mean() >= 0.995
    assert (fast["probs"]["label"].argmax(1) == exact["probs"]["label"].argmax(1)).mean() >= 0.95


def test_a_classifier_is_scored_as_it_is(data):
    """bfloat16 moves a weak classifier's accuracy by up to a point (measured on the zoo): classifiers stay float32."""
    m = build_model(ModelConfig(fusion="concat", targets={"label": 4}, dim=32),
                    classes={"label": data.classes["label"]}, tokenizer=WordTokenizer.fit(data.texts).to_json())
    assert fast_model(m) is m


@pytest.mark.parametrize("detail", [True, False], ids=["skips", "no-skips"])
def test_the_last_stage_at_half_size_is_the_same_function(detail):
    """The sub-pixel form of the last stage (transposed conv + skip + conv + GroupNorm + ReLU + output conv, all at
    half size) computes what the stage computes, border included, for any weights."""
    from mmlab.heads.mask_decoder import MaskDecoder

    torch.manual_seed(1)
    dec = MaskDecoder(32, grid=(8, 8), image_size=32, width=16, from_vector=False,
                      detail={16: 12, 32: 3}).eval()
    with torch.no_grad():
        for p in dec.parameters():
            p.normal_(0, 0.3)  # biases and GroupNorm's affine too: nothing left at its neutral start
    tokens = torch.randn(5, 64, 32)
    skips = (torch.randn(5, 12, 16, 16), torch.rand(5, 3, 32, 32)) if detail else None
    with torch.inference_mode():
        expected = dec(tokens.mean(1), tokens, skips)
        folded = copy.deepcopy(dec).fold_last_stage()
        got = folded(tokens.mean(1), tokens, skips)
    assert folded.folded is not None and got.shape == expected.shape == (5, 32, 32)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
