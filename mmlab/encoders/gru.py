"""A word-embedding + BiGRU text encoder: the fast path (seed 001's LSTM, seed 000's BiGRU)."""
from __future__ import annotations

import torch
from torch import nn

from mmlab.fusion.base import masked_mean
from mmlab.types import EncoderOutput


class BiGRUText(nn.Module):
    """Word ids (B, T) + mask (B, T) -> word tokens (B, T, D) + pooled (B, D)."""

    def __init__(self, vocab_size: int, dim: int = 64, *, embed_dim: int = 64, max_len: int = 32):
        super().__init__()
        self.dim = dim
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.gru = nn.GRU(embed_dim, dim // 2, batch_first=True, bidirectional=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> EncoderOutput:
        x = self.embed(ids)  # (B, T, E)
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        tokens = self.norm(out)  # (B, T, D)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=masked_mean(tokens, mask))
