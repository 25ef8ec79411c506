"""CBAM: Convolutional Block Attention Module (Woo et al., ECCV 2018; seed 000's ViT-ResNet50-CBAM).

Channel attention (which feature maps matter) followed by spatial attention (where they
matter), each a sigmoid gate multiplied into the feature map:

    x = x * sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))           # (B, C, 1, 1) gate
    x = x * sigmoid(conv7x7([mean_c(x), max_c(x)]))              # (B, 1, H, W) gate
"""
from __future__ import annotations

import torch
from torch import nn

from mmlab.errors import InputError


class ChannelAttention(nn.Module):
    """(B, C, H, W) -> (B, C, 1, 1) gate in (0, 1): a shared MLP over average- and max-pooled maps."""

    def __init__(self, channels: int, *, reduction: int = 8):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))  # (B, C, 1, 1)
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))  # (B, C, 1, 1)
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """(B, C, H, W) -> (B, 1, H, W) gate in (0, 1): a k x k conv over the channel-mean and channel-max maps."""

    def __init__(self, *, kernel_size: int = 7):
        super().__init__()
        if kernel_size % 2 != 1:
            raise InputError(f"CBAM kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # (B, 2, H, W)
        return torch.sigmoid(self.conv(maps))  # (B, 1, H, W)


class CBAM(nn.Module):
    """Channel then spatial attention: (B, C, H, W) -> (B, C, H, W), same shape, reweighted.

    ``reduction``: the channel MLP's bottleneck ratio; ``kernel_size``: the spatial conv's size.
    ``gates(x)`` returns both gates (for inspection) without storing them on the module.
    """

    def __init__(self, channels: int, *, reduction: int = 8, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction=reduction)
        self.spatial = SpatialAttention(kernel_size=kernel_size)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two gates for ``x``: channel (B, C, 1, 1) and spatial (B, 1, H, W), both in (0, 1)."""
        cg = self.channel(x)
        return cg, self.spatial(x * cg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)  # (B, C, H, W)
        return x * self.spatial(x)  # (B, C, H, W)
