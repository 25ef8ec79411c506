"""Mask decoder (seed 004): upsample from the fused patch grid to the image size.

When the strategy keeps fused tokens on the patch grid (cross-attention, transformer, ...),
the decoder starts from them; otherwise it starts from the fused vector alone, projected
to a grid as seed 004's ConvTranspose decoder did, and so must guess where the object is.
Skip connections (U-Net style) from the image encoder's finer maps, where it has them, give
each upsampling stage the pixels' edges: *which* object comes from the fused grid, its exact
outline from the skips.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# channel counts whose channels-last bfloat16 GroupNorm runs as fast as on the plain layout on a CPU (PyTorch
# 2.14, 128 maps: 16 channels at 32 px 0.5 ms; 8 at 64 px 7.1 ms against 2.2 ms plain, 32 at 16 px 1.6 ms against 0.6)
_CHANNELS_LAST_NORM_FAST = (16, 64)


def _block(block: nn.Sequential, x: torch.Tensor, *, last: bool = False) -> torch.Tensor:
    """conv -> GroupNorm -> ReLU (in place: GroupNorm's gradient does not need its output). GroupNorm of
    channels-last bfloat16 maps is 3x slower than on the plain layout for most channel counts, so a bfloat16
    copy (``evaluate.fast_model``) normalises those on the plain one, and comes back to channels-last unless
    ``last`` (the 1x1 output convolution takes either)."""
    conv, norm, _ = block
    x = conv(x)
    if x.dtype == torch.bfloat16 and x.device.type == "cpu" and x.shape[1] not in _CHANNELS_LAST_NORM_FAST:
        x = torch.relu_(norm(x.contiguous()))
        return x if last else x.contiguous(memory_format=torch.channels_last)
    return torch.relu_(norm(x))


class MaskDecoder(nn.Module):
    """fused (B, D) or tokens (B, h*w, D) [+ detail maps] -> mask logits (B, S, S).

    from_vector: build the vector-to-grid projection (strategies without spatial tokens).
    detail: {resolution: channels} of the encoder's skip maps (``EncoderOutput.detail``).
    """

    def __init__(self, dim: int, *, grid: tuple[int, int], image_size: int, width: int = 32,
                 from_vector: bool = True, detail: dict[int, int] | None = None):
        super().__init__()
        self.grid, self.image_size = grid, image_size
        h, w = grid
        self.from_vector = nn.Linear(dim, dim * h * w) if from_vector else None
        self.stem = nn.Sequential(nn.Conv2d(dim, width, 3, padding=1), nn.GroupNorm(4, width), nn.ReLU())
        # context at the patch grid: dilated residual convs see the whole grid, so "left of the
        # blue circle" can be resolved where the anchor is several patches away
        self.context = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=d, dilation=d), nn.GroupNorm(4, width), nn.ReLU())
            for d in (2, 4, 8)
        )
        stages = max(0, int(math.log2(image_size / h)))
        widths = [max(8, width >> (i + 1)) for i in range(stages)]  # halve the width as resolution doubles
        detail = dict(detail or {})
        self.skip_sizes = [h << (i + 1) for i in range(stages)]  # the resolution each stage works at
        self.skips = [detail.get(r, 0) for r in self.skip_sizes]
        ins = [width, *widths[:-1]]
        self.upsample = nn.ModuleList(nn.ConvTranspose2d(cin, cout, 2, stride=2) for cin, cout in zip(ins, widths))
        self.up = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cout + extra, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.ReLU())
            for cout, extra in zip(widths, self.skips)
        )
        self.out = nn.Conv2d(widths[-1] if widths else width, 1, 1)

    def forward(self, fused: torch.Tensor, tokens: torch.Tensor | None = None,
                detail: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """fused (B, D), tokens (B, h*w, D) or None, detail maps or None -> mask logits (B, S, S)."""
        h, w = self.grid
        B, D = fused.shape
        if tokens is not None:
            x = tokens.transpose(1, 2).reshape(B, D, h, w)  # (B, D, h, w)
        elif self.from_vector is not None:
            x = self.from_vector(fused).view(B, D, h, w)  # (B, D, h, w)
        else:
            raise ValueError("this decoder was built for spatial tokens, and the fusion gave none")
        # channels-last: oneDNN's fast path for these thin convolutions on CPU (about 1.5x here)
        cl = torch.channels_last
        by_size = {d.shape[-1]: d.contiguous(memory_format=cl) for d in detail or ()}
        x = _block(self.stem, x.contiguous(memory_format=cl))
        for block in self.context:
            x = x + _block(block, x)
        for i, (upsample, stage, size, extra) in enumerate(zip(self.upsample, self.up, self.skip_sizes, self.skips)):
            x = upsample(x)  # (B, c, 2h, 2w)
            if extra:
                skip = by_size.get(size)
                if skip is None:  # an encoder without skips (frozen features): zeros keep the shapes
                    skip = x.new_zeros(B, extra, size, size)
                x = torch.cat([x, skip], 1)
            x = _block(stage, x, last=i == len(self.up) - 1)
        x = self.out(x)
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x[:, 0]  # (B, S, S)
