"""A short run of every strategy learns a task that needs both modalities: digits whose pictures are noisy and
whose captions name the wrong digit 30 % of the time. Neither modality is enough alone, so the test fails if
the image path, the text path or the fusion is broken: dropping either modality must cost accuracy."""
import pytest

from mmlab.config import ModelConfig, TrainConfig
from mmlab.data import load_dataset
from mmlab.data.tokenizer import WordTokenizer
from mmlab.evaluate import evaluate
from mmlab.fusion import trainable
from mmlab.model import build_model
from mmlab.train import fit, seed_everything

CHANCE = 0.1  # 10 digits
OPTIONS = {"captions": "noisy", "p_wrong": 0.3, "image_noise": 1.0}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train", **OPTIONS).subset(range(800)), load_dataset("digits", "test", **OPTIONS)


@pytest.mark.parametrize("name", trainable())
def test_short_run_learns_from_both_modalities(digits, name):
    train, test = digits
    seed_everything(0)  # the same initial weights whatever ran before
    model = build_model(ModelConfig(fusion=name, targets={"label": 10}, dim=32, image_size=16),  # 16 px: quick
                        classes={"label": train.classes["label"]}, tokenizer=WordTokenizer.fit(train.texts).to_json())
    result = fit(model, train, TrainConfig(epochs=5, batch_size=32, lr=3e-3, warmup_steps=5, threads=1),
                 progress=False)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    both, no_image, no_text = (evaluate(model, test, drop=d)["accuracy"] for d in ("none", "image", "text"))
    # 400 test digits: chance is 0.10 +- 0.015; measured 0.44 (hadamard) to 0.80 (early) with both modalities
    assert both > CHANCE + 0.2, f"{name}: accuracy {both:.3f}"
    # either modality alone is worse: measured margins 0.03 (late_max) to 0.30 (hadamard)
    assert both > max(no_image, no_text) + 0.02, f"{name}: both {both:.3f}, image dropped {no_image:.3f}, " \
                                                 f"text dropped {no_text:.3f}"
