"""The one interface every fusion strategy implements."""
from __future__ import annotations

import contextlib
import threading
from typing import ClassVar, NamedTuple

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


def attention_override():
    """The function that replaces every attention map on this thread (``overriding_attention``), or None."""
    return getattr(_state, "override", None)


@contextlib.contextmanager
def overriding_attention(fn):
    """Inside (on this thread), every attention block passes its softmax map through ``fn`` before using it:
    an intervention that asks whether a decision depends on where the attention looked (give each scene
    another scene's maps, or uniform maps, and watch the answer)."""
    before = attention_override()
    _state.override = fn
    try:
        yield
    finally:
        _state.override = before


class Fusion(nn.Module):
    """Base class: ``forward({"image": EncoderOutput, "text": EncoderOutput}) -> FusionOutput``.

    Subclasses set the class attributes below; the registry, the UI and the tests read them.

    family:     "early" | "mid" | "attention" | "late".
    spatial:    True when ``FusionOutput.tokens`` lies on the image patch grid (masks possible).
    attends:    True when ``FusionOutput.attention`` holds text -> image maps.
    decides:    True when the strategy produces class logits itself (late fusion).
    raw_input:  True when the strategy reads raw pixels and word embeddings (early fusion).
    trainable:  False for a strategy with nothing to learn (a zero-shot bridge): it is not offered for
                training and the zoo's per-dataset sweep leaves it out.
    """

    family: ClassVar[str] = "mid"
    spatial: ClassVar[bool] = False
    attends: ClassVar[bool] = False
    decides: ClassVar[bool] = False
    raw_input: ClassVar[bool] = False
    trainable: ClassVar[bool] = True

    def __init__(self, dim: int, *, num_classes: int | None = None):
        super().__init__()
        self.dim = dim
        self.num_classes = num_classes

    def forward(self, inputs: dict[str, EncoderOutput]) -> FusionOutput:  # pragma: no cover
        raise NotImplementedError

    def loss(self, out: FusionOutput, inputs: dict[str, EncoderOutput], batch: "LossTargets") -> torch.Tensor | None:
        """The strategy's own training loss, added to the heads' losses by ``fit`` (None: nothing to add).

        Every attention strategy can have its head noun's attention supervised (``attention_supervision``
        in ``batch.weights``: ``supervise_attention``); late fusion adds its per-modality branches' losses.
        ``batch`` holds the batch's targets; ``inputs`` the encoder outputs the strategy saw.
        """
        weight = (batch.weights or {}).get("attention", 0.0)
        return weight * supervise_attention(out, inputs, batch) if weight > 0 else None


class LossTargets(NamedTuple):
    """What a batch offers a strategy's ``loss``.

    labels:  {target: (B,) int64} class targets; ``primary`` names the model's main one (or None).
    masks:   (B, S, S) uint8 referred-object masks, or None.
    head:    (B,) int64 index of the named word (the sentence's head noun) among the text tokens,
             -1 where unknown; None when the dataset does not say.
    weights: the train config's loss weights of the strategy's terms, e.g. {"attention": 1.0}.
    """

    labels: dict[str, torch.Tensor]
    primary: str | None
    masks: torch.Tensor | None = None
    head: torch.Tensor | None = None
    weights: dict[str, float] | None = None


def mean_attention(attention: dict[str, torch.Tensor]) -> torch.Tensor:
    """{"layer{l}": (B, H, T, P)} -> (B, T, P): the mean over layers and heads, the map the app shows."""
    return torch.stack([attention[k] for k in sorted(attention)], 1).mean((1, 2))


def supervise_attention(out: FusionOutput, inputs: dict[str, EncoderOutput], batch: LossTargets) -> torch.Tensor:
    """``losses.attention_supervision`` of each sample's head-noun attention row (mean over layers and heads,
    the map ``Model.predict`` returns) against its referred object's mask, over the samples that have both
    modalities, a non-empty mask and a head noun among their tokens."""
    from mmlab import losses
    from mmlab.errors import InputError

    if not out.attention or batch.masks is None or batch.head is None:
        raise InputError("attention supervision needs a strategy with text -> image attention and a dataset that "
                         "records each sentence's head noun and its object's mask (shapes, task mask)")
    maps = mean_attention(out.attention)  # (B, T, P)
    head = batch.head.to(maps.device)  # (B,)
    rows = maps[torch.arange(len(head), device=maps.device), head.clamp(0, maps.shape[1] - 1)]  # (B, P)
    masks = batch.masks.to(maps.device)  # (B, S, S)
    keep = masks.flatten(1).any(1) & (head >= 0)  # (B,)
    for m in ("image", "text"):
        if inputs[m].present is not None:
            keep = keep & inputs[m].present.to(keep.device)
    per_sample = losses.attention_supervision(rows, masks, inputs["image"].grid)  # (B,)
    return (per_sample * keep).sum() / keep.sum().clamp_min(1)
