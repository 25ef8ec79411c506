"""A multimodal transformer over [CLS] + [IMG] patch tokens + [TXT] word tokens (seed 003 §5.3)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmlab.errors import InputError
from mmlab.fusion.base import Fusion, attention_override, maps_wanted
from mmlab.types import EncoderOutput, FusionOutput


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer encoder layer that returns its attention: x (B, N, D) -> (x, attn (B, H, N, N))."""

    def __init__(self, dim: int, *, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise InputError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.to_out = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, *, maps: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, N, D); bias (B, H or 1, 1, N) added to every query's scores (-inf-like on padded keys).
        ``maps=False`` (and not training): PyTorch's fused attention, no (B, H, N, N) map built or returned."""
        B, N, D = x.shape
        H = self.heads
        q, k, v = self.to_qkv(self.norm(x)).view(B, N, 3, H, D // H).permute(2, 0, 3, 1, 4)  # 3 x (B, H, N, hs)
        override = attention_override()
        if not maps and not self.training and override is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.expand(B, H, 1, N).to(q.dtype))  # (B, H, N, hs)
            x = x + self.to_out(out.transpose(1, 2).reshape(B, N, D))
            return x + self.ff(x), None
        scores = torch.baddbmm(bias.expand(B, H, N, N).reshape(B * H, N, N),
                               (q * (D // H) ** -0.5).reshape(B * H, N, D // H),
                               k.reshape(B * H, N, D // H).transpose(1, 2))  # (B*H, N, N)
        attn = scores.softmax(dim=-1).view(B, H, N, N)  # (B, H, N, N)
        if override is not None:  # an intervention (faithfulness): another map in its place
            attn = override(attn)
        out = (self.drop(attn) @ v).transpose(1, 2).reshape(B, N, D)  # (B, N, D)
        x = x + self.to_out(out)
        return x + self.ff(x), attn


class TransformerFusion(Fusion):
    """One transformer encoder over [CLS] + image patch tokens + word tokens (seed 003 §5.3).

    Both modalities become tokens of a single sequence, marked by a learned modality embedding
    ([IMG] or [TXT]) and a position embedding over the whole sequence; self-attention then lets
    every patch and every word attend to every other, so the model learns how to combine the
    modalities with no hand-written rule, and the [CLS] output is the fused vector. So that a
    few words are not drowned by hundreds of patches, each key is biased by -log(number of
    tokens of its modality) plus a learned per-head modality bias. The image patch outputs stay
    on the grid for the mask decoder. ``attention["layer{i}"]`` is the
    word -> patch block of layer i's attention, renormalised over the patches (B, H, T, P); the
    full (B, H, N, N) maps, sequence order [CLS, patches, words] (``joint_slices``), are in
    ``joint_attention["layer{i}"]`` for rollout and relevance. Cost: O((1 + P + T)^2) per layer and
    head, the most of the catalogue; it needs careful tuning and more data, but it is the
    unified, state-of-the-art design. Use it when rich interactions in both directions matter.
    """

    family = "attention"
    spatial = True
    attends = True

    def __init__(self, dim: int, *, num_classes: int | None = None, heads: int = 4, layers: int = 2,
                 dropout: float = 0.0, max_positions: int = 2048):
        super().__init__(dim, num_classes=num_classes)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.modality = nn.Parameter(torch.zeros(3, dim))  # [CLS], [IMG], [TXT]
        self.pos = nn.Embedding(max_positions, dim)
        for p in (self.cls, self.modality, self.pos.weight):
            nn.init.trunc_normal_(p, std=0.02)
        self.max_positions = max_positions
        # per layer and head, a learned score bias for keys of each modality ([CLS], [IMG], [TXT])
        self.modality_bias = nn.Parameter(torch.zeros(layers, heads, 3))
        self.blocks = nn.ModuleList(SelfAttentionBlock(dim, heads=heads, dropout=dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, inputs: dict[str, EncoderOutput]) -> FusionOutput:
        image, text = inputs["image"], inputs["text"]
        B, P, D = image.tokens.shape
        T = text.tokens.shape[1]
        N = 1 + P + T
        if N > self.max_positions:
            raise InputError(f"transformer fusion sees {N} tokens but has {self.max_positions} positions")
        x = torch.cat([
            self.cls.expand(B, 1, D) + self.modality[0],
            image.tokens + self.modality[1],
            text.tokens + self.modality[2],
        ], dim=1)  # (B, N, D)
        x = x + self.pos.weight[:N]
        key_mask = torch.cat([image.mask.new_ones(B, 1), image.mask, text.mask], dim=1)  # (B, N)
        # balance: a key of a modality with n real tokens gets -log(n), so at the start every query
        # splits its attention evenly between [CLS], the image and the words, however many patches
        kind = torch.cat([x.new_zeros(1), x.new_ones(P), x.new_full((T,), 2)]).long()  # (N,) modality of each key
        counts = torch.stack([key_mask.new_ones(B), image.mask.sum(1), text.mask.sum(1)], 1).to(x.dtype)  # (B, 3)
        balance = -counts.clamp_min(1).log()[:, kind]  # (B, N)
        balance = balance.masked_fill(~key_mask, torch.finfo(x.dtype).min)  # padded words get no attention
        attention: dict[str, torch.Tensor] = {}
        joint: dict[str, torch.Tensor] = {}
        maps = maps_wanted()
        for i, block in enumerate(self.blocks):
            bias = balance[:, None, None, :] + self.modality_bias[i][:, kind][None, :, None, :]  # (B, H, 1, N)
            x, attn = block(x, bias, maps=maps)  # attn (B, H, N, N)
            if attn is None:
                continue
            words_to_patches = attn[:, :, 1 + P:, 1:1 + P]  # (B, H, T, P)
            attention[f"layer{i}"] = words_to_patches / words_to_patches.sum(-1, keepdim=True).clamp_min(1e-12)
            joint[f"layer{i}"] = attn
        x = self.norm(x)
        return FusionOutput(fused=x[:, 0], tokens=x[:, 1:1 + P], attention=attention, joint_attention=joint)

    @staticmethod
    def joint_slices(num_patches: int, num_tokens: int) -> dict[str, slice]:
        """Where the image patches, the text tokens and the class decision ([CLS]) sit in the joint
        sequence [CLS, patches, words]."""
        return {"decision": slice(0, 1), "image": slice(1, 1 + num_patches),
                "text": slice(1 + num_patches, 1 + num_patches + num_tokens)}
