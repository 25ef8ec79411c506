"""Datasets by name: ``load_dataset(name, split, seed=..., **options) -> MMDataset``."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mmlab.data.base import MMDataset
from mmlab.errors import InputError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    loader: Callable[..., MMDataset]
    splits: tuple[str, ...] = ("train", "val", "test")


def _shapes(split: str, *, seed: int = 0, n: int | None = None, **kw) -> MMDataset:
    from mmlab.data import shapes

    return shapes.load(split, seed=seed, n=n, variant="refer")


def _shapes_truth(split: str, *, seed: int = 0, n: int | None = None, **kw) -> MMDataset:
    from mmlab.data import shapes

    return shapes.load(split, seed=seed, n=n, variant="truth")


DATASETS: dict[str, DatasetInfo] = {
    "shapes": DatasetInfo("shapes", "generated referring scenes: sentence names one shape; mask, shape, colour", _shapes),
    "shapes_truth": DatasetInfo("shapes_truth", "generated scenes: is the sentence true of the image?", _shapes_truth),
}


def register(info: DatasetInfo) -> None:
    DATASETS[info.name] = info


def available() -> list[str]:
    return list(DATASETS)


def load_dataset(name: str, split: str = "train", *, seed: int = 0, **options) -> MMDataset:
    """Load a dataset split by name. Raises ``InputError`` for unknown names or splits."""
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    info = DATASETS[name]
    if split not in info.splits:
        raise InputError(f"dataset {name!r} has no split {split!r}; choose one of: {', '.join(info.splits)}")
    return info.loader(split, seed=seed, **options)
