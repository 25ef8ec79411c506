"""A short run of every strategy learns the shapes classification (the named object's shape) above chance."""
import pytest

from mmlab.config import ModelConfig, TrainConfig
from mmlab.data import load_dataset
from mmlab.data.tokenizer import WordTokenizer
from mmlab.evaluate import evaluate
from mmlab.fusion import available
from mmlab.model import build_model
from mmlab.train import fit, seed_everything

CHANCE = 0.25  # 4 shapes


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes", "train", n=320), load_dataset("shapes", "test", n=200)


@pytest.mark.parametrize("name", available())
def test_short_run_learns_above_chance(shapes, name):
    train, test = shapes
    seed_everything(0)  # the same initial weights whatever ran before
    model = build_model(ModelConfig(fusion=name, targets={"label": 4}, dim=32, image_size=32),  # 32 px keeps it quick
                  classes={"label": train.classes["label"]}, tokenizer=WordTokenizer.fit(train.texts).to_json())
    result = fit(model, train, TrainConfig(epochs=3, batch_size=32, warmup_steps=5, threads=1), progress=False)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    accuracy = evaluate(model, test)["accuracy"]
    # 200 test samples: chance is 0.25 +- 0.03, so 0.4 is far above it
    assert accuracy > CHANCE + 0.15, f"{name}: accuracy {accuracy:.3f}"
