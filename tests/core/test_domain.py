"""Every model knows its domain: photos are flagged on every synthetic-data checkpoint, its own test inputs
(any generator seed) pass, and the words it never saw are named, per token."""
import json

import numpy as np
import pytest

import mmlab
from mmlab import zoo

SYNTHETIC = ("shapes", "shapes_truth", "easyvqa", "digits")


def photos() -> dict[str, np.ndarray]:
    """Photos the installed packages carry (no download), never used to build or calibrate a synthetic-data
    model's domain: the photo model's "tune" photos (its held-out ones are read by no test)."""
    from mmlab.data import photos as shipped

    return {name: shipped.photo(name) for name, split in shipped.SPLITS.items() if split == "tune"}


@pytest.fixture(scope="module")
def pictures():
    return photos()


SHIPPED = [e["name"] for e in zoo.list_checkpoints() if e.get("dataset") in SYNTHETIC]


@pytest.mark.parametrize("name", SHIPPED)
def test_photos_are_flagged_and_its_own_test_pictures_pass(name, pictures):
    from mmlab.artifacts import load

    model = mmlab.load(name)
    assert model.domain is not None, f"{name} keeps no record of its domain"
    for photo, image in pictures.items():
        check = model.predict(image, "the thing").domain
        assert check.image_ok is False and not check.in_distribution, (name, photo)
    stored = load(zoo.find(name)["dir"])
    assert stored is not None and stored.domain["test_flagged"] <= 0.10, name


@pytest.mark.parametrize("name", ["shapes-mask-cross_attention", "shapes_truth-concat", "digits-concat"])
def test_own_test_inputs_of_unseen_generator_seeds_pass(name):
    from mmlab.domain import encode_images
    from mmlab.evaluate import split_of

    model = mmlab.load(name)
    for seed in (7, 123):
        data = split_of(model, "test", seed=seed)
        pooled, sigs = encode_images(model, data)
        flagged = float((model.domain.image_scores(pooled, sigs) > 1).mean())
        assert flagged <= 0.10, (name, seed, flagged)


def test_an_enlarged_picture_of_its_kind_is_still_of_its_kind():
    """A 2x / 4x enlargement of a test scene (an export, a screenshot) comes back pixel for pixel and passes."""
    from PIL import Image

    from mmlab.evaluate import split_of

    model = mmlab.load("shapes-mask-cross_attention")
    data = split_of(model, "test", seed=2026, n=12)
    for k in range(len(data)):
        scene = data.images[k].transpose(1, 2, 0)  # (64, 64, 3)
        for factor in (2, 4):
            big = np.asarray(Image.fromarray(scene).resize((64 * factor,) * 2, Image.NEAREST))
            seen, _ = model.preprocess([big])
            assert np.array_equal((seen[0] * 255).round().byte().numpy(), data.images[k]), (k, factor)
            assert model.predict(big, data.texts[k]).domain.in_distribution, (k, factor)


def test_unknown_words_are_named_per_token():
    model = mmlab.load("shapes-mask-cross_attention")
    from mmlab.evaluate import split_of

    image = split_of(model, "test", n=2).images[0].transpose(1, 2, 0)
    pred = model.predict(image, "the small red cat")
    assert pred.tokens == ["the", "small", "red", "cat"]
    assert pred.domain.unknown_tokens == [False, False, False, True] and pred.domain.unknown_words == ["cat"]
    assert pred.domain.image_ok is True and pred.in_distribution is False and "cat" in pred.domain.reason


def test_predict_json_says_whether_the_input_is_of_the_model_s_kind(tmp_path, capsys):
    from PIL import Image

    from mmlab.cli import main

    path = tmp_path / "cat.png"
    Image.fromarray(photos()["chelsea"]).save(path)
    assert main(["predict", "shapes-mask-cross_attention", "--image", str(path), "--text", "the cat", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["in_distribution"] is False and "unlike" in out["reason"] and out["unknown_words"] == ["cat"]
