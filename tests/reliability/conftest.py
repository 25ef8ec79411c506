"""Shared fixtures of the reliability tests: one small trained model and its checkpoint."""
import pytest
import torch


@pytest.fixture(scope="session")
def shapes256():
    """(train n=256, test n=64) of the shapes set."""
    from mmlab.data import load_dataset

    return load_dataset("shapes", "train", n=256), load_dataset("shapes", "test", n=64)


@pytest.fixture(scope="session")
def trained(shapes256):
    """A cross-attention model with a mask head, trained 1 epoch on 256 shapes pairs (a few seconds)."""
    from mmlab.config import ModelConfig, TrainConfig
    from mmlab.data.tokenizer import WordTokenizer
    from mmlab.model import build_model
    from mmlab.train import fit

    train, _ = shapes256
    torch.manual_seed(0)
    model = build_model(ModelConfig(fusion="cross_attention", targets={"label": len(train.classes["label"])}, mask=True,
                              dim=32),
                  classes={"label": train.classes["label"]}, tokenizer=WordTokenizer.fit(train.texts).to_json())
    fit(model, train, TrainConfig(epochs=1, batch_size=32, threads=1), progress=False)
    model.eval()
    return model


@pytest.fixture(scope="session")
def saved_checkpoint(trained, tmp_path_factory):
    """The trained model saved as a checkpoint folder (safetensors + config.json)."""
    from mmlab import checkpoint

    return checkpoint.save(trained, tmp_path_factory.mktemp("ckpt") / "tiny", meta={"dataset": "shapes"})

