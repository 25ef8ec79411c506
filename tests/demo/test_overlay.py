"""The demo's numpy pictures: upsampling, colouring, attention maps, overlays."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmlab.demo.overlay import (
    WHOLE_SENTENCE, attention_map, heat_overlay, jet, last_layer, mask_overlay, normalize, upsample,
)
from mmlab.errors import InputError


def test_upsample_hand_worked_2x2_to_4x4():
    out = upsample(np.array([[0.0, 1.0], [2.0, 3.0]]), (4, 4))
    # half-pixel centres: source positions -0.25, 0.25, 0.75, 1.25 clamp to 0, 0.25, 0.75, 1
    np.testing.assert_allclose(out[0], [0.0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(out[:, 0], [0.0, 0.5, 1.5, 2.0])
    assert out.shape == (4, 4) and out.dtype == np.float32


@pytest.mark.parametrize("src,dst", [((16, 16), (384, 384)), ((16, 16), (256, 384)), ((5, 7), (13, 11))])
def test_upsample_matches_torch_bilinear(src, dst):
    m = np.random.default_rng(0).random(src).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(m)[None, None], size=dst, mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(upsample(m, dst), ref.numpy(), atol=1e-5)


def test_upsample_refuses_non_2d():
    with pytest.raises(InputError):
        upsample(np.zeros((2, 3, 4)), (8, 8))


def test_jet_endpoints_and_middle():
    np.testing.assert_array_equal(jet(np.array([0.0, 0.5, 1.0])), [[0, 0, 128], [128, 255, 128], [128, 0, 0]])
    assert jet(np.zeros((3, 4))).shape == (3, 4, 3)


def test_normalize_range_and_constant():
    n = normalize(np.array([[2.0, 4.0], [6.0, 10.0]]))
    np.testing.assert_allclose(n, [[0.0, 0.25], [0.5, 1.0]])
    assert not normalize(np.full((3, 3), 7.0)).any()


def _attention():
    """Two layers; in the last one token 0 looks at the top-left patch, token 1 at the bottom-right."""
    first = np.full((2, 2, 4, 4), 1 / 16)  # (H, T, h, w)
    last = np.zeros((2, 2, 4, 4))
    last[:, 0, 0, 0] = 1.0
    last[:, 1, 3, 3] = 1.0
    return {"layer2": first, "layer10": last}


def test_last_layer_is_numeric_not_lexicographic():
    assert last_layer(_attention())[0, 0, 0, 0] == 1.0


def test_attention_map_whole_sentence_and_one_token():
    att, tokens = _attention(), ["red", "circle"]
    whole = attention_map(att, tokens)
    assert whole.shape == (4, 4)
    assert whole[0, 0] == whole[3, 3] == 1.0 and whole.sum() == 2.0
    assert attention_map(att, tokens, WHOLE_SENTENCE).tolist() == whole.tolist()
    circle = attention_map(att, tokens, "circle")
    assert circle[3, 3] == 1.0 and circle.sum() == 1.0
    with pytest.raises(InputError, match="not in the sentence"):
        attention_map(att, tokens, "square")


def test_heat_overlay_blends_image_and_colours():
    img = np.full((8, 12, 3), 200, np.uint8)
    heat = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert heat_overlay(img, heat, alpha=0.0).tolist() == img.tolist()
    full = heat_overlay(img, heat, alpha=1.0)
    assert full.shape == (8, 12, 3) and full.dtype == np.uint8
    np.testing.assert_array_equal(full, jet(upsample(heat, (8, 12))))
    half = heat_overlay(img, heat, alpha=0.5).astype(int)
    assert np.abs(half - (img.astype(int) + full.astype(int)) / 2).max() <= 1


def test_mask_overlay_tints_inside_and_outlines_edge():
    img = np.full((32, 32, 3), 100, np.uint8)
    empty = mask_overlay(img, np.zeros((8, 8)))
    np.testing.assert_array_equal(empty, img)
    mask = np.zeros((8, 8))
    mask[2:6, 2:6] = 1.0
    out = mask_overlay(img, mask, colour=(0, 255, 0), alpha=0.5)
    assert out.shape == (32, 32, 3)
    assert out[16, 16].tolist() == [50, 178, 50]  # inside: half image, half colour
    assert out[0, 0].tolist() == [100, 100, 100]  # far outside: untouched
    edge = out[:, 16]  # a column through the square: the outline is pure colour
    assert any(px.tolist() == [0, 255, 0] for px in edge)
    with pytest.raises(InputError):
        mask_overlay(np.zeros((4, 4)), mask)
