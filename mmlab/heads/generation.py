"""Cross-modal generation heads (seed 001): image -> caption, text -> image.

Each decoder is conditioned on the *other* modality's pooled vector only (not the fused one, which
already holds the target), so what it generates is what crosses between modalities.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CaptionDecoder(nn.Module):
    """Image pooled (B, D) -> word logits (B, T, V) by a GRU with teacher forcing (seed 001's text
    decoder). Id 0 (padding) doubles as end-of-sentence; a learned start vector opens every caption."""

    def __init__(self, dim: int, vocab_size: int, *, embed_dim: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.start = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.init = nn.Linear(dim, dim)
        self.gru = nn.GRU(embed_dim, dim, batch_first=True)
        self.out = nn.Linear(dim, vocab_size)

    def forward(self, image: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: image (B, D), ids (B, T) -> logits (B, T + 1, V) (the last step predicts the end)."""
        B = image.shape[0]
        inputs = torch.cat([self.start.expand(B, 1, -1), self.embed(ids)], dim=1)  # (B, T + 1, E)
        h0 = torch.tanh(self.init(image)).unsqueeze(0)  # (1, B, D)
        out, _ = self.gru(inputs, h0)
        return self.out(out)  # (B, T + 1, V)

    @torch.no_grad()
    def generate(self, image: torch.Tensor, *, max_len: int = 16) -> torch.Tensor:
        """Greedy decoding: image (B, D) -> ids (B, L), 0 after the end of each caption."""
        B = image.shape[0]
        h = torch.tanh(self.init(image)).unsqueeze(0)
        x = self.start.expand(B, 1, -1)
        done = torch.zeros(B, dtype=torch.bool, device=image.device)
        ids = []
        for _ in range(max_len):
            out, h = self.gru(x, h)
            nxt = self.out(out[:, -1]).argmax(-1).masked_fill(done, 0)  # (B,)
            ids.append(nxt)
            done |= nxt == 0
            if bool(done.all()):
                break
            x = self.embed(nxt).unsqueeze(1)
        return torch.stack(ids, dim=1)


class ImageDecoder(nn.Module):
    """Text pooled (B, D) -> image (B, 3, S, S) in [0, 1] by transposed convolutions (seed 001's
    image decoder, trained with MSE)."""

    def __init__(self, dim: int, *, image_size: int, width: int = 64):
        super().__init__()
        self.image_size = image_size
        self.base = 4
        self.fc = nn.Linear(dim, width * self.base * self.base)
        stages, size, layers, c = 0, self.base, [], width
        while size < image_size:
            layers += [nn.ConvTranspose2d(c, max(16, c // 2), 4, stride=2, padding=1), nn.ReLU()]
            c, size, stages = max(16, c // 2), size * 2, stages + 1
        self.up = nn.Sequential(*layers)
        self.out = nn.Conv2d(c, 3, 3, padding=1)
        self.width = width

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        x = self.fc(text).view(-1, self.width, self.base, self.base)  # (B, W, 4, 4)
        x = torch.sigmoid(self.out(self.up(x)))  # (B, 3, >=S, >=S)
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x
