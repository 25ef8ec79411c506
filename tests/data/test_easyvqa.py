"""easyvqa: the real easy-VQA set read from the installed package."""
import numpy as np
import pytest
from PIL import Image

easy_vqa = pytest.importorskip("easy_vqa")

from mmlab.data import easyvqa, load_dataset  # noqa: E402
from mmlab.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def splits():
    return {s: load_dataset("easyvqa", s) for s in ("train", "val", "test")}


def test_classes_are_the_packages_13_answers(splits):
    for d in splits.values():
        assert d.classes["label"] == easy_vqa.get_answers()
        assert len(d.classes["label"]) == 13
        assert set(np.unique(d.targets["label"])) <= set(range(13))


def test_every_question_is_kept_and_sizes_agree(splits):
    train_q, test_q = easy_vqa.get_train_questions()[0], easy_vqa.get_test_questions()[0]
    assert len(splits["train"]) + len(splits["val"]) == len(train_q)
    assert len(splits["test"]) == len(test_q)
    assert easyvqa.sizes() == {s: len(d) for s, d in splits.items()}
    for d in splits.values():
        assert d.images.shape == (len(d), 3, 64, 64) and d.images.dtype == np.uint8
        assert len(d.texts) == len(d) and all(d.texts)


def test_val_holds_out_whole_images(splits):
    train_ids = set(splits["train"].info["image_ids"].tolist())
    val_ids = set(splits["val"].info["image_ids"].tolist())
    assert not train_ids & val_ids, "no image may be in both train and val"
    assert len(val_ids) == 400 and len(train_ids) == 3600  # 10% of the 4,000 train images


def test_a_known_record_matches_the_package(splits):
    texts, answers, image_ids = easy_vqa.get_test_questions()
    paths = easy_vqa.get_test_image_paths()
    d = splits["test"]
    for i in (0, 1, 2, 5000, len(texts) - 1):
        assert d.texts[i] == texts[i]
        assert d.classes["label"][d.targets["label"][i]] == answers[i]
        assert d.info["image_ids"][i] == image_ids[i]
        png = np.asarray(Image.open(paths[image_ids[i]]).convert("RGB")).transpose(2, 0, 1)  # (3, 64, 64)
        assert np.array_equal(d.images[i], png)
    # the package's first train question, wherever the val draw put its image
    q, a, img = easy_vqa.get_train_questions()[0][0], easy_vqa.get_train_questions()[1][0], 0
    where = splits["val"] if img in set(splits["val"].info["image_ids"].tolist()) else splits["train"]
    row = where.texts.index(q)
    assert (q, a) == ("what is the blue shape?", "rectangle")
    assert where.classes["label"][where.targets["label"][row]] == a


def test_question_type_follows_the_question(splits):
    d = splits["test"]
    qtypes = [d.classes["qtype"][t] for t in d.targets["qtype"]]
    for text, qtype in zip(d.texts[:2000], qtypes[:2000]):
        if text.startswith("what color"):
            assert qtype == "color"
        elif text.startswith(("is ", "does ")):
            assert qtype == "yes/no"
    assert set(qtypes) == {"yes/no", "color", "shape"}


def test_subset_is_deterministic_by_seed(splits):
    a = load_dataset("easyvqa", "val", n=200, seed=0)
    b = load_dataset("easyvqa", "val", n=200, seed=0)
    c = load_dataset("easyvqa", "val", n=200, seed=1)
    assert len(a) == 200 and a.texts == b.texts and np.array_equal(a.images, b.images)
    assert a.texts != c.texts
    full = splits["val"].texts
    assert set(a.texts) <= set(full)


def test_bad_options_are_input_errors():
    with pytest.raises(InputError):
        load_dataset("easyvqa", "val", n=0)
    with pytest.raises(InputError):
        load_dataset("easyvqa", "dev")
    with pytest.raises(InputError):
        easyvqa.load("dev")
