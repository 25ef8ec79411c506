"""The in-memory multimodal dataset every loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class MMDataset:
    """Paired images and texts with named targets.

    images:  (N, 3, S, S) uint8.
    texts:   N sentences.
    targets: {target name: (N,) int64 class indices}; "label" is the default one.
    classes: {target name: class names}.
    masks:   (N, S, S) uint8 in {0, 1} (the referred object's mask), or None.
    """

    name: str
    split: str
    images: np.ndarray
    texts: list[str]
    targets: dict[str, np.ndarray]
    classes: dict[str, list[str]]
    masks: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.texts)
        assert self.images.shape[0] == n, (self.images.shape, n)
        for k, v in self.targets.items():
            assert len(v) == n, (k, len(v), n)
        if self.masks is not None:
            assert self.masks.shape[0] == n

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, index) -> "MMDataset":
        index = np.asarray(index)
        return MMDataset(
            name=self.name,
            split=self.split,
            images=self.images[index],
            texts=[self.texts[i] for i in index],
            targets={k: v[index] for k, v in self.targets.items()},
            classes=self.classes,
            masks=None if self.masks is None else self.masks[index],
            info={k: _slice_row_info(v, index, len(self)) for k, v in self.info.items()},
        )


def _slice_row_info(value, index: np.ndarray, n: int):
    """Per-row info (an array or list of length N) follows the subset; other info is kept."""
    if isinstance(value, np.ndarray) and value.ndim >= 1 and len(value) == n:
        return value[index]
    if isinstance(value, list) and len(value) == n:
        return [value[i] for i in index]
    return value
