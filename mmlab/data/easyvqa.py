"""easyvqa: the real easy-VQA set (image + question -> one of 13 answers).

Source: the PyPI package ``easy_vqa`` (MIT), which carries 5,000 PNG images (64x64) of one
coloured shape each and 48,248 questions: 4,000 train images / 38,575 questions, 1,000 test
images / 9,673 questions. Nothing is downloaded.

Splits (fixed, independent of the seed):
  train: the package's train questions whose image is not held out for val;
  val:   the questions of 10% of the train *images* (a fixed draw), so no image is in both;
  test:  the package's test split.
``n`` takes a deterministic subset (drawn with ``seed``, kept in package order).

Decoded images are cached per process and on disk (``.npz``, never pickle) under
``cache_dir()`` so a second process loads the 5,000 images in well under a second.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from mmlab.data.base import MMDataset
from mmlab.errors import InputError

VAL_FRACTION = 0.10
VAL_DRAW_SEED = 20240  # fixed: which train images are held out for val
SHAPE_ANSWERS = ("circle", "rectangle", "triangle")
QTYPES = ["yes/no", "color", "shape"]
_CACHE_VERSION = 1


def cache_dir() -> Path:
    """Where decoded images are cached: ``$MMLAB_CACHE/data`` (default ``~/.cache/mmlab/data``),
    beside the feature cache of ``mmlab.features``."""
    env = os.environ.get("MMLAB_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "mmlab") / "data"


def _package():
    try:
        import easy_vqa
    except ImportError:
        raise InputError("dataset 'easyvqa' needs the easy-vqa package: pip install easy-vqa") from None
    return easy_vqa


@lru_cache(maxsize=2)
def _questions(group: str) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    """(questions, answers, image ids (Q,) int64) of the package's "train" or "test" group."""
    ev = _package()
    texts, answers, image_ids = ev.get_train_questions() if group == "train" else ev.get_test_questions()
    return tuple(texts), tuple(answers), np.asarray(image_ids, np.int64)


@lru_cache(maxsize=1)
def answers() -> list[str]:
    """The 13 answers in the package's order (the class names of target "label")."""
    return list(_package().get_answers())


def _image_paths(group: str) -> dict[int, str]:
    ev = _package()
    return ev.get_train_image_paths() if group == "train" else ev.get_test_image_paths()


def _fingerprint(paths: dict[int, str], size: int) -> str:
    h = hashlib.sha1(f"v{_CACHE_VERSION}:{size}".encode())
    for k in sorted(paths):
        st = os.stat(paths[k])
        h.update(f"{k}:{st.st_size}:{int(st.st_mtime)};".encode())
    return h.hexdigest()[:16]


def _read_cache(path: Path, n: int, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            ids, images = z["ids"], z["images"]
    except Exception:  # noqa: BLE001 - a missing or broken cache is rebuilt
        return None
    if ids.shape != (n,) or images.shape != (n, 3, size, size) or images.dtype != np.uint8:
        return None
    return ids.astype(np.int64), images


def _write_cache(path: Path, ids: np.ndarray, images: np.ndarray) -> None:
    """Write atomically (temporary file, then rename); a read-only cache is no error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, ids=ids, images=images)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)


@lru_cache(maxsize=4)
def _images(group: str, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """All images of a group: (ids (M,) int64 sorted, images (M, 3, size, size) uint8).

    Every PNG goes through the validated loader; the decoded array is cached on disk.
    """
    from mmlab.data.images import load_image, to_array

    paths = _image_paths(group)
    cache = cache_dir() / f"easyvqa-{group}-{size}-{_fingerprint(paths, size)}.npz"
    hit = _read_cache(cache, len(paths), size)
    if hit is not None:
        return hit
    ids = np.array(sorted(paths), np.int64)
    images = np.zeros((len(ids), 3, size, size), np.uint8)
    for row, image_id in enumerate(ids):
        images[row] = to_array(load_image(paths[int(image_id)]), size)
    _write_cache(cache, ids, images)
    return ids, images


@lru_cache(maxsize=1)
def _val_images() -> frozenset[int]:
    """The train image ids held out for val: a fixed 10% draw of the 4,000 train images."""
    ids = np.unique(_questions("train")[2])
    rng = np.random.default_rng(VAL_DRAW_SEED)
    k = int(round(len(ids) * VAL_FRACTION))
    return frozenset(int(i) for i in rng.choice(ids, size=k, replace=False))


def _rows(split: str) -> tuple[str, np.ndarray]:
    """(package group, question indices (Q,) of the split in package order)."""
    if split == "test":
        return "test", np.arange(len(_questions("test")[0]))
    if split not in ("train", "val"):
        raise InputError(f"dataset 'easyvqa' has no split {split!r}; choose one of: train, val, test")
    held = np.isin(_questions("train")[2], np.fromiter(_val_images(), np.int64))
    return "train", np.flatnonzero(held if split == "val" else ~held)


@lru_cache(maxsize=1)
def sizes() -> dict[str, int]:
    """Question counts per split, without decoding any image (for ``describe_all``)."""
    return {split: len(_rows(split)[1]) for split in ("train", "val", "test")}


def qtype_of(answer: str) -> str:
    """The question type, read from the answer's kind: "yes/no", "color" or "shape"."""
    if answer in ("yes", "no"):
        return "yes/no"
    return "shape" if answer in SHAPE_ANSWERS else "color"


def load(split: str = "train", *, seed: int = 0, n: int | None = None, image_size: int = 64) -> MMDataset:
    """easy-VQA questions of one split.

    images (N, 3, S, S) uint8 (one per question; S = image_size, 64 native), texts: questions,
    targets: "label" (N,) answer index into ``answers()``, "qtype" (N,) index into QTYPES.
    info: "image_ids" (N,) the package's image id of each question (to share work per image).
    ``n``: a subset of n questions drawn with ``seed``; without it the seed changes nothing.
    """
    if n is not None and (not isinstance(n, (int, np.integer)) or n < 1):
        raise InputError(f"n must be a positive integer, got {n!r}")
    if not isinstance(image_size, (int, np.integer)) or not 8 <= image_size <= 512:
        raise InputError(f"image_size must be an integer in 8..512, got {image_size!r}")
    group, rows = _rows(split)
    if n is not None and n < len(rows):
        pick = np.random.default_rng([seed, ("train", "val", "test").index(split)]).choice(len(rows), n, replace=False)
        rows = rows[np.sort(pick)]
    texts, answer_words, image_ids = _questions(group)
    ids, images = _images(group, int(image_size))
    where = np.searchsorted(ids, image_ids[rows])  # (N,) row of each question's image
    names = answers()
    index = {a: i for i, a in enumerate(names)}
    label = np.array([index[answer_words[i]] for i in rows], np.int64)
    kind = {a: QTYPES.index(qtype_of(a)) for a in names}
    qtype = np.array([kind[answer_words[i]] for i in rows], np.int64)
    return MMDataset(
        name="easyvqa", split=split, images=images[where], texts=[texts[i] for i in rows],
        targets={"label": label, "qtype": qtype}, classes={"label": names, "qtype": list(QTYPES)},
        info={"seed": seed, "image_ids": image_ids[rows], "source": "easy-vqa (PyPI)"},
    )
