"""A tiny zoo for the demo tests: one cross-attention mask model trained for one epoch."""
import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def zoo_root(tmp_path_factory):
    """A checkpoints folder with manifest.json and one entry, "tiny" (a cross-attention mask model, dim 32, one
    epoch on 128 shapes scenes), made by ``mmlab.experiment.run`` as the zoo is (so it knows its domain)."""
    from mmlab.config import ModelConfig, TrainConfig
    from mmlab.experiment import Experiment, run

    root = tmp_path_factory.mktemp("zoo")
    exp = Experiment(dataset="shapes", task="mask", data_options={"n": 128},
                     model=ModelConfig(fusion="cross_attention", dim=32, image_size=None),
                     train=TrainConfig(epochs=1, batch_size=32, threads=1))
    run(exp, root / "tiny", manifest=True)
    return root


@pytest.fixture(scope="session")
def classes():
    from mmlab.data import load_dataset

    return load_dataset("shapes", "train", n=128).classes["label"]


@pytest.fixture(scope="session")
def examples(tmp_path_factory):
    """[image path, sentence] rows written by the demo's own example builder: photos, then shapes scenes."""
    from mmlab.demo.handlers import prepare_examples

    return prepare_examples(tmp_path_factory.mktemp("examples"))


@pytest.fixture(scope="session")
def scenes(examples):
    """The shapes scenes among the examples (the tiny model's own kind of picture)."""
    return [row for row in examples if row[0].rsplit("/", 1)[-1].startswith("shapes_")]
