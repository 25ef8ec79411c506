import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session", autouse=True)
def _nothing_written_to_home(tmp_path_factory):
    """Models and datasets a test makes go to its own folders, never the user's home."""
    base = tmp_path_factory.mktemp("home")
    for var, sub in (("MMLAB_USER_CHECKPOINTS", "models"), ("MMLAB_USER_DATA", "data")):
        os.environ.setdefault(var, str(base / sub))


@pytest.fixture(scope="session")
def tiny_shapes():
    """(train, test) of the shapes set, small enough to train on in seconds."""
    from mmlab.data import load_dataset

    return load_dataset("shapes", "train", n=512), load_dataset("shapes", "test", n=200)


def make_model(train, *, fusion="cross_attention", mask=True, dim=32, targets=("label",), **cfg):
    from mmlab.config import ModelConfig
    from mmlab.data.tokenizer import WordTokenizer
    from mmlab.model import build_model

    return build_model(
        ModelConfig(fusion=fusion, targets={t: len(train.classes[t]) for t in targets}, mask=mask, dim=dim, **cfg),
        classes={t: train.classes[t] for t in targets},
        tokenizer=WordTokenizer.fit(train.texts).to_json(),
    )


@pytest.fixture
def model_factory():
    return make_model
