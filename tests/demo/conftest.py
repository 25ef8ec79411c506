"""A tiny zoo for the demo tests: one cross-attention mask model trained for one epoch."""
import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def zoo_root(tmp_path_factory):
    """A checkpoints folder with manifest.json and one entry, "tiny" (dim 32, shapes, mask)."""
    import torch

    from mmlab import checkpoint, zoo
    from mmlab.config import ModelConfig, TrainConfig
    from mmlab.data import load_dataset
    from mmlab.data.tokenizer import WordTokenizer
    from mmlab.model import build_model
    from mmlab.train import fit

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("zoo")
    train = load_dataset("shapes", "train", n=128)
    model = build_model(ModelConfig(fusion="cross_attention", targets={"label": 4}, mask=True, dim=32),
                  classes={"label": train.classes["label"]}, tokenizer=WordTokenizer.fit(train.texts).to_json())
    fit(model, train, TrainConfig(epochs=1, batch_size=32), progress=False)
    checkpoint.save(model, root / "tiny", meta={"name": "tiny", "dataset": "shapes"})
    zoo.update_manifest({
        "name": "tiny", "path": "tiny", "dataset": "shapes", "task": "mask", "strategy": "cross_attention",
        "encoders": {"image": "cnn", "text": "bigru"}, "metrics": {}, "train_seconds": 0,
        "parameters": model.num_parameters(), "command": "",
    }, root)
    return root


@pytest.fixture(scope="session")
def classes():
    from mmlab.data import load_dataset

    return load_dataset("shapes", "train", n=128).classes["label"]


@pytest.fixture(scope="session")
def examples(tmp_path_factory):
    """[image path, sentence] rows written by the demo's own example builder."""
    from mmlab.demo.handlers import prepare_examples

    return prepare_examples(tmp_path_factory.mktemp("examples"))
