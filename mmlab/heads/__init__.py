"""Heads over the fused representation."""
from mmlab.heads.classifier import ClassifierHead
from mmlab.heads.mask_decoder import MaskDecoder

__all__ = ["ClassifierHead", "MaskDecoder"]
