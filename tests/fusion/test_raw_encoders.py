"""Raw-input encoders of early fusion: pixel patches and word-embedding lookup."""
import pytest
import torch

from mmlab.config import ModelConfig
from mmlab.data.tokenizer import WordTokenizer
from mmlab.encoders.raw import RawImage, RawText
from mmlab.errors import InputError


def test_raw_image_tokens_are_flat_pixel_patches():
    enc = RawImage(16, image_size=32, patch=4)
    images = torch.rand(2, 3, 32, 32)
    out = enc(images)
    assert out.tokens.shape == (2, 64, 16) and out.grid == (8, 8) == enc.grid
    assert out.mask.all() and out.pooled.shape == (2, 16)
    # token (row 1, col 2) depends on the pixels of that 4x4 patch only
    changed = images.clone()
    changed[:, :, 4:8, 8:12] = torch.rand(2, 3, 4, 4)
    diff = (enc(changed).tokens - out.tokens).abs().sum(-1)  # (2, 64)
    assert (diff[:, 1 * 8 + 2] > 0).all()
    diff[:, 1 * 8 + 2] = 0
    assert diff.max() < 1e-6


def test_raw_image_is_linear_in_the_pixels():
    enc = RawImage(8, image_size=16, patch=4)
    a, b = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    zero = enc(torch.full((1, 3, 16, 16), 0.5)).tokens  # the normalisation centre maps to the bias
    lhs = enc(0.5 * (a + b)).tokens - zero
    rhs = 0.5 * ((enc(a).tokens - zero) + (enc(b).tokens - zero))
    assert torch.allclose(lhs, rhs, atol=1e-5)


def test_raw_image_refuses_a_size_it_cannot_cut():
    with pytest.raises(InputError, match="multiple"):
        RawImage(8, image_size=30, patch=4)


def test_raw_text_is_a_lookup_with_the_word_tokenizer_interface():
    tok = WordTokenizer.fit(["the red circle", "a blue square left of the circle"])
    enc = RawText(ModelConfig(dim=8), tok.to_json())
    batch = enc.tokenize(["the red circle", "a blue square left of the circle"])
    out = enc(**batch)
    assert out.tokens.shape == (2, 7, 8) and out.pooled.shape == (2, 8)
    assert out.tokens[0, 3:].abs().max() == 0  # padding embeds to zeros
    # the same word gives the same vector wherever it stands (no context, no position)
    assert torch.equal(out.tokens[0, 2], out.tokens[1, 6])
    assert enc.token_strings("The red circle!") == ["the", "red", "circle", "!"]


def test_raw_text_needs_a_word_vocabulary():
    with pytest.raises(InputError, match="vocabulary"):
        RawText(ModelConfig(dim=8), None)
