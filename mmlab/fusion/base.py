"""The one interface every fusion strategy implements."""
from __future__ import annotations

import contextlib
import threading
from typing import ClassVar

import torch
from torch import nn

from mmlab.types import EncoderOutput, FusionOutput


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: tokens (B, N, D), mask (B, N) bool -> (B, D)."""
    m = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * m).sum(1) / m.sum(1).clamp_min(1.0)


_state = threading.local()


def maps_wanted() -> bool:
    """False inside ``without_maps()`` on this thread (a whole split being scored): a strategy
    may then skip building attention maps and use a fused kernel; its other outputs are the same.
    Per thread, so a Playground request served beside a Compare run still gets its maps."""
    return getattr(_state, "maps", True)


@contextlib.contextmanager
def without_maps():
    """Inside (on this thread), ``maps_wanted()`` is False: for scoring a whole split."""
    before = maps_wanted()
    _state.maps = False
    try:
        yield
    finally:
        _state.maps = before


class Fusion(nn.Module):
    """Base class: ``forward({"image": EncoderOutput, "text": EncoderOutput}) -> FusionOutput``.

    Subclasses set the class attributes below; the registry, the UI and the tests read them.

    family:     "early" | "mid" | "attention" | "late".
    spatial:    True when ``FusionOutput.tokens`` lies on the image patch grid (masks possible).
    attends:    True when ``FusionOutput.attention`` holds text -> image maps.
    decides:    True when the strategy produces class logits itself (late fusion).
    raw_input:  True when the strategy reads raw pixels and word embeddings (early fusion).
    """

    family: ClassVar[str] = "mid"
    spatial: ClassVar[bool] = False
    attends: ClassVar[bool] = False
    decides: ClassVar[bool] = False
    raw_input: ClassVar[bool] = False

    def __init__(self, dim: int, *, num_classes: int | None = None):
        super().__init__()
        self.dim = dim
        self.num_classes = num_classes

    def forward(self, inputs: dict[str, EncoderOutput]) -> FusionOutput:  # pragma: no cover
        raise NotImplementedError
