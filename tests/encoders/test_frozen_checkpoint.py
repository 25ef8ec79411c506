import torch

from mmlab import checkpoint
from mmlab.config import ModelConfig, TrainConfig
from mmlab.data import load_dataset
from mmlab.model import build_model
from mmlab.train import fit


def test_pretrained_pair_trains_saves_and_loads(tmp_path):
    data = load_dataset("shapes", "train", n=16)
    cfg = ModelConfig(fusion="cross_attention", image_encoder="efficientnet_lite0", text_encoder="minilm", dim=32,
                      targets={"label": len(data.classes["label"])})
    model = build_model(cfg, classes={"label": data.classes["label"]})
    before = model.image_encoder.head.proj.weight.detach().clone()
    fit(model, data, TrainConfig(epochs=1, batch_size=16, warmup_steps=1), progress=False)
    assert not torch.equal(before, model.image_encoder.head.proj.weight)  # one step trained the projection

    state = checkpoint.state_to_save(model)
    assert "image_encoder.head.proj.weight" in state and "text_encoder.proj.weight" in state
    assert not any("_conv_stem" in k or "embeddings" in k for k in state)  # frozen weights stay out
    path = checkpoint.save(model, tmp_path / "ckpt")
    assert (path / "model.safetensors").stat().st_size < 1_000_000

    loaded = checkpoint.load(path)
    image, text = data.images[0].transpose(1, 2, 0), data.texts[0]
    a, b = model.predict(image, text), loaded.predict(image, text)
    assert a.label == b.label and a.tokens == b.tokens
    for c in a.probs:
        assert abs(a.probs[c] - b.probs[c]) < 1e-5
    assert a.attention["layer0"].shape[-2:] == (4, 4)
