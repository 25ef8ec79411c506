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


def _block(block: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """conv -> GroupNorm -> ReLU (in place: GroupNorm's gradient does not need its output). GroupNorm of
    channels-last bfloat16 maps is 3x slower than on the plain layout for most channel counts, so a bfloat16
    copy (``evaluate.fast_model``) normalises those on the plain one and comes back to channels-last."""
    conv, norm, _ = block
    x = conv(x)
    if x.dtype == torch.bfloat16 and x.device.type == "cpu" and x.shape[1] not in _CHANNELS_LAST_NORM_FAST:
        return torch.relu_(norm(x.contiguous())).contiguous(memory_format=torch.channels_last)
    return torch.relu_(norm(x))


class SubPixelStage(nn.Module):
    """The decoder's last stage (2x transposed conv -> concat the full-size skip -> 3x3 conv -> GroupNorm -> ReLU ->
    1x1 output conv) computed exactly at the lower resolution, for an inference copy (``MaskDecoder.fold_last_stage``).

    A full-size map is held as its four sub-pixel phases (``pixel_unshuffle``): the transposed conv and the 3x3 conv
    fold into one 3x3 conv over the half-size input and the unshuffled skip, the transposed conv's bias into that
    conv's bias plus a correction on the border (where the full-size zero padding cuts it), GroupNorm keeps its
    groups (a group's channels stay together, phase by phase), and the output conv acts per phase;
    ``pixel_shuffle`` makes the mask. No full-size map is made but the mask: the decoder of a bfloat16 CPU copy
    takes 0.15 s instead of 0.22 s per 1,000 pairs.
    """

    def __init__(self, upsample: nn.ConvTranspose2d, block: nn.Sequential, out: nn.Conv2d, *, skip: int, size: int):
        super().__init__()
        conv, norm, _ = block
        if upsample.kernel_size != (2, 2) or upsample.stride != (2, 2) or conv.kernel_size != (3, 3) \
                or conv.padding != (1, 1) or out.kernel_size != (1, 1) or not isinstance(norm, nn.GroupNorm):
            raise ValueError("only a 2x transposed conv, a padded 3x3 conv, GroupNorm and a 1x1 output fold")
        with torch.no_grad():
            w, wt = conv.weight.float(), upsample.weight.float()  # (C, Cu + skip, 3, 3), (Cin, Cu, 2, 2)
            C, cu, cin = w.shape[0], wt.shape[1], wt.shape[0]
            kernel = w.new_zeros(C, 2, 2, cin + 4 * skip, 3, 3)  # output (channel, row phase, column phase)
            for a in range(2):
                for b in range(2):
                    for dy in range(3):
                        for dx in range(3):
                            sy, sx = a + dy - 1, b + dx - 1  # the input's full-size offset from this output phase
                            ky, kx, py, px = sy // 2 + 1, sx // 2 + 1, sy % 2, sx % 2  # half-size tap, input phase
                            kernel[:, a, b, :cin, ky, kx] += w[:, :cu, dy, dx] @ wt[:, :, py, px].T
                            kernel[:, a, b, cin + torch.arange(skip) * 4 + py * 2 + px, ky, kx] += w[:, cu:, dy, dx]
            ones = torch.ones(1, cu, 2 * size, 2 * size) * upsample.bias.float().view(1, cu, 1, 1)
            bias = F.conv2d(ones, w[:, :cu], conv.bias.float() if conv.bias is not None else None, padding=1)
            wo = out.weight.float()[:, :, 0, 0]  # (K, C)
            K = wo.shape[0]
            out_w = torch.zeros(K, 4, C, 4)
            for phase in range(4):
                out_w[:, phase, :, phase] = wo
        bias = F.pixel_unshuffle(bias, 2)[0]  # (4C, size, size): constant inside, the padding cuts the border
        self.conv = nn.Conv2d(cin + 4 * skip, 4 * C, 3, padding=1)
        self.conv.weight.data.copy_(kernel.reshape(4 * C, cin + 4 * skip, 3, 3))
        self.conv.bias.data.copy_(bias[:, 1, 1])
        self.register_buffer("border", bias - bias[:, 1:2, 1:2])  # (4C, size, size), zero but on the border
        self.norm = nn.GroupNorm(norm.num_groups, 4 * C, eps=norm.eps)
        self.norm.weight.data.copy_(norm.weight.float().repeat_interleave(4))
        self.norm.bias.data.copy_(norm.bias.float().repeat_interleave(4))
        self.out = nn.Conv2d(4 * C, 4 * K, 1)
        self.out.weight.data.copy_(out_w.reshape(4 * K, 4 * C, 1, 1))
        self.out.bias.data.copy_(out.bias.float().repeat_interleave(4))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        """x (B, Cin, h, w), skip (B, skip, 2h, 2w) or None -> output logits (B, K, 2h, 2w)."""
        if skip is not None:
            x = torch.cat([x, F.pixel_unshuffle(skip, 2).to(x.dtype)], 1)
        x = self.conv(x.contiguous(memory_format=torch.channels_last))
        border = self.border
        x[:, :, 0] += border[:, 0]  # the first and last rows and columns: the rest of the bias map is zero
        x[:, :, -1] += border[:, -1]
        x[:, :, 1:-1, 0] += border[:, 1:-1, 0]
        x[:, :, 1:-1, -1] += border[:, 1:-1, -1]
        return F.pixel_shuffle(self.out(torch.relu_(self.norm(x))), 2)


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
        self.folded: SubPixelStage | None = None  # the last stage at half size, on an inference copy

    def fold_last_stage(self) -> "MaskDecoder":
        """Compute the last upsampling stage and the output conv at half size (``SubPixelStage``); for an inference
        copy only (its submodules then no longer train). Returns self. (Folding the earlier stage too was slower:
        its maps are thick enough already.)"""
        if self.upsample:
            self.folded = SubPixelStage(self.upsample[-1], self.up[-1], self.out, skip=self.skips[-1],
                                        size=self.skip_sizes[-1] // 2)
        return self

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
        stages = list(zip(self.upsample, self.up, self.skip_sizes, self.skips))
        last = len(stages) - 1
        for i, (upsample, stage, size, extra) in enumerate(stages):
            skip = by_size.get(size)
            if extra and skip is None:  # an encoder without skips (frozen features): zeros keep the shapes
                skip = x.new_zeros(B, extra, size, size)
            if i == last and self.folded is not None:
                x = self.folded(x, skip if extra else None)  # the mask logits, made at half size
                break
            x = upsample(x)  # (B, c, 2h, 2w)
            if extra:
                x = torch.cat([x, skip], 1)
            x = _block(stage, x)
        else:
            x = self.out(x)
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x[:, 0]  # (B, S, S)
