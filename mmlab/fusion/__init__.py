"""The one registry of fusion strategies: name -> class. A new strategy is one file and one line."""
from __future__ import annotations

from mmlab.errors import InputError
from mmlab.fusion.base import Fusion
from mmlab.fusion.bidirectional import BidirectionalCrossAttentionFusion
from mmlab.fusion.bilinear import BilinearFusion, TensorFusion
from mmlab.fusion.concat import ConcatFusion
from mmlab.fusion.concat_attention import ConcatAttentionFusion
from mmlab.fusion.cross_attention import CrossAttentionFusion
from mmlab.fusion.early import EarlyFusion
from mmlab.fusion.elementwise import AddFusion, HadamardFusion
from mmlab.fusion.gated import GatedFusion
from mmlab.fusion.late import (LateAverageFusion, LateMaxFusion, LateProductFusion, LateVoteFusion,
                               LateWeightedFusion)
from mmlab.fusion.transformer import TransformerFusion

REGISTRY: dict[str, type[Fusion]] = {
    "early": EarlyFusion,
    "concat": ConcatFusion,
    "add": AddFusion,
    "hadamard": HadamardFusion,
    "bilinear": BilinearFusion,
    "tensor": TensorFusion,
    "gated": GatedFusion,
    "concat_attention": ConcatAttentionFusion,
    "cross_attention": CrossAttentionFusion,
    "bidirectional_cross_attention": BidirectionalCrossAttentionFusion,
    "transformer": TransformerFusion,
    "late_average": LateAverageFusion,
    "late_weighted": LateWeightedFusion,
    "late_product": LateProductFusion,
    "late_max": LateMaxFusion,
    "late_vote": LateVoteFusion,
}


def available() -> list[str]:
    """Names of every registered strategy, in catalogue order."""
    return list(REGISTRY)


def describe(name: str) -> str:
    """The strategy's docstring (what it does, when to use it, its cost), for the app."""
    return " ".join((get(name).__doc__ or "").split())


def get(name: str) -> type[Fusion]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown fusion strategy {name!r}; choose one of: {', '.join(REGISTRY)}") from None


def build_fusion(name: str, dim: int, *, num_classes: int | None = None, **options) -> Fusion:
    """Build a registered strategy over encoders of width ``dim``."""
    cls = get(name)
    try:
        return cls(dim, num_classes=num_classes, **options)
    except TypeError as e:
        raise InputError(f"bad options for fusion {name!r}: {e}") from None
