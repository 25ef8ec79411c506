"""A word-level tokenizer for the from-scratch text encoders (fast path).

A token is a run of ASCII letters and digits, one emoji (a pictograph with its skin tone or
variation selector, and the pictographs a zero-width joiner adds to it: a family is one token),
or any other single character with the variation selector that may follow it. Text reaches it
cleaned (``mmlab.data.text``): no invisible format character is left to become a token.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import torch

from mmlab.data.text import EMOJI

PAD, UNK, CLS = "<pad>", "<unk>", "<cls>"
_WORD = re.compile(f"[a-z0-9]+|{EMOJI}|[^\\sa-z0-9][\ufe00-\ufe0f\U000e0100-\U000e01ef]?", re.IGNORECASE)


def split_words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


class WordTokenizer:
    """Lower-cased words to ids; id 0 is padding, 1 unknown. JSON-serialisable via ``vocab``."""

    def __init__(self, vocab: list[str], *, max_len: int = 32):
        self.vocab = list(vocab)
        self.max_len = max_len
        self.index = {w: i for i, w in enumerate(self.vocab)}

    @classmethod
    def fit(cls, texts: Iterable[str], *, max_len: int = 32, min_count: int = 1) -> "WordTokenizer":
        counts = Counter(w for t in texts for w in split_words(t))
        words = sorted(w for w, c in counts.items() if c >= min_count)
        return cls([PAD, UNK, *words], max_len=max_len)

    def tokens(self, text: str) -> list[str]:
        return split_words(text)[: self.max_len] or [UNK]

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ids (B, T) long and mask (B, T) bool, T = longest text in the batch."""
        rows = [[self.index.get(w, 1) for w in self.tokens(t)] for t in texts]
        T = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), T, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return ids, ids != 0

    def to_json(self) -> dict:
        return {"kind": "word", "vocab": self.vocab, "max_len": self.max_len}


class WordTokenized:
    """Mixin for text encoders that read word ids: ``tokenize``, ``token_strings``, ``max_tokens`` and
    ``known_words`` from ``self.tokenizer``."""

    tokenizer: WordTokenizer

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        ids, mask = self.tokenizer.encode(texts)
        return {"ids": ids, "mask": mask}

    def token_strings(self, text: str) -> list[str]:
        return self.tokenizer.tokens(text)

    @property
    def max_tokens(self) -> int:
        return self.tokenizer.max_len

    def known_words(self) -> frozenset[str]:
        return frozenset(self.tokenizer.vocab[2:])  # past <pad> and <unk>
