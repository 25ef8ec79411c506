"""The one registry of fusion strategies: name -> class. A new strategy is one file and one line."""
from __future__ import annotations

from mmlab.errors import InputError
from mmlab.fusion.base import Fusion
from mmlab.fusion.bidirectional import BidirectionalCrossAttentionFusion
from mmlab.fusion.bilinear import BilinearFusion, TensorFusion
from mmlab.fusion.concat import ConcatFusion
from mmlab.fusion.concat_attention import ConcatAttentionFusion
from mmlab.fusion.concept_bridge import ConceptBridgeFusion
from mmlab.fusion.cross_attention import CrossAttentionFusion
from mmlab.fusion.early import EarlyFusion
from mmlab.fusion.elementwise import AddFusion, HadamardFusion
from mmlab.fusion.gated import GatedFusion
from mmlab.fusion.grounded import GroundedCrossAttentionFusion
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
    "grounded_cross_attention": GroundedCrossAttentionFusion,
    "transformer": TransformerFusion,
    "late_average": LateAverageFusion,
    "late_weighted": LateWeightedFusion,
    "late_product": LateProductFusion,
    "late_max": LateMaxFusion,
    "late_vote": LateVoteFusion,
    "concept_bridge": ConceptBridgeFusion,  # the photo model's zero-shot bridge (nothing to train)
}


def available() -> list[str]:
    """Names of every registered strategy, in catalogue order."""
    return list(REGISTRY)


def trainable() -> list[str]:
    """Names of the strategies that learn (all but zero-shot bridges), in catalogue order."""
    return [n for n, cls in REGISTRY.items() if cls.trainable]


def describe(name: str) -> str:
    """The strategy's docstring (what it does, when to use it, its cost), for the app."""
    return " ".join((get(name).__doc__ or "").split())


def get(name: str) -> type[Fusion]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown fusion strategy {name!r}; choose one of: {', '.join(REGISTRY)}") from None


# options several strategies share, bounded before anything is built (a checkpoint's config is untrusted)
INT_OPTIONS = {"heads": (1, 16), "layers": (1, 12), "rank": (1, 256), "proj_dim": (1, 256), "grid": (1, 64),
               "max_words": (1, 256), "hidden": (1, 8192), "gate_hidden": (1, 8192), "max_positions": (1, 8192)}
FLOAT_OPTIONS = {"dropout": (0.0, 0.99)}


def check_options(name: str, dim: int, options: dict) -> None:
    """Refuse strategy options of the wrong type or out of bounds, with one line naming the option."""
    import math

    for key, value in options.items():
        if key in INT_OPTIONS:
            low, high = INT_OPTIONS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InputError(f"fusion {name!r}: {key} must be an integer in [{low}, {high}]; got {value!r}")
        elif key in FLOAT_OPTIONS:
            low, high = FLOAT_OPTIONS[key]
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or not low <= value <= high):
                raise InputError(f"fusion {name!r}: {key} must be a number in [{low}, {high}]; got {value!r}")
    heads = options.get("heads")
    if heads is not None and dim % heads:
        raise InputError(f"fusion {name!r}: dim {dim} must be divisible by heads {heads}")


def build_fusion(name: str, dim: int, *, num_classes: int | None = None, **options) -> Fusion:
    """Build a registered strategy over encoders of width ``dim``; options are checked first."""
    cls = get(name)
    check_options(name, dim, options)
    try:
        return cls(dim, num_classes=num_classes, **options)
    except (TypeError, ValueError, AssertionError) as e:
        raise InputError(f"bad options for fusion {name!r}: {e}") from None
