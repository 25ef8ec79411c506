import pytest
import torch

from mmlab.config import ModelConfig
from mmlab.encoders import build_image_encoder
from mmlab.encoders.cbam import CBAM
from mmlab.encoders.cnn import SmallCNN
from mmlab.errors import InputError


@pytest.mark.parametrize("shape", [(2, 16, 8, 8), (1, 32, 5, 7)])
def test_cbam_keeps_shape_and_reweights(shape):
    x = torch.randn(*shape)
    y = CBAM(shape[1], reduction=4)(x)
    assert y.shape == x.shape
    assert not torch.allclose(y, x)
    cg, sg = CBAM(shape[1]).gates(x)
    assert cg.shape == (shape[0], shape[1], 1, 1) and sg.shape == (shape[0], 1, *shape[2:])
    assert bool(((cg > 0) & (cg < 1)).all()) and bool(((sg > 0) & (sg < 1)).all())


def test_cbam_with_zero_weights_halves_twice():
    """All-zero MLP output and spatial conv: both gates are sigmoid(0) = 0.5, so y = x / 4."""
    cbam = CBAM(8)
    with torch.no_grad():
        for p in cbam.parameters():
            p.zero_()
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(cbam(x), x * 0.25)


def test_cbam_spatial_gate_follows_the_strong_location():
    """A trained-looking spatial conv (positive weight on the channel-max map) opens the gate most
    where the features are strongest."""
    cbam = CBAM(4, kernel_size=3)
    with torch.no_grad():
        cbam.spatial.conv.weight.zero_()
        cbam.spatial.conv.weight[0, 1, 1, 1] = 5.0  # centre tap on the max map
    x = torch.zeros(1, 4, 5, 5)
    x[0, :, 2, 3] = 3.0
    _, sg = cbam.gates(x)
    assert divmod(int(sg[0, 0].argmax()), 5) == (2, 3)


def test_cbam_gradients_reach_both_attentions():
    torch.manual_seed(0)
    cbam = CBAM(16, reduction=2)
    cbam(torch.randn(2, 16, 6, 6)).pow(2).sum().backward()
    assert cbam.channel.mlp[0].weight.grad.abs().sum() > 0
    assert cbam.spatial.conv.weight.grad.abs().sum() > 0


def test_cbam_refuses_even_kernel():
    with pytest.raises(InputError):
        CBAM(8, kernel_size=4)


def test_small_cnn_with_cbam():
    enc = build_image_encoder(ModelConfig(image_encoder="cnn_cbam", dim=32, image_size=64))
    assert isinstance(enc, SmallCNN) and isinstance(enc.attention, CBAM)
    out = enc(torch.rand(3, 3, 64, 64))
    assert out.tokens.shape == (3, 16 * 16, 32) and out.grid == (16, 16) and out.pooled.shape == (3, 32)
    plain = SmallCNN(32, image_size=64)
    assert plain.attention is None
    assert sum(p.numel() for p in enc.parameters()) > sum(p.numel() for p in plain.parameters())
