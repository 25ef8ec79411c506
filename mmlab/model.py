"""The multimodal model: encoders -> fusion strategy -> heads, assembled from parts."""
from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mmlab.config import ModelConfig
from mmlab.data.images import ImageLike, load_image, to_array
from mmlab.data.text import clean_text
from mmlab.encoders import build_image_encoder, build_text_encoder
from mmlab.errors import InputError
from mmlab.fusion import build_fusion, get as get_fusion
from mmlab.heads import ClassifierHead, MaskDecoder
from mmlab.types import EncoderOutput, FusionOutput, Prediction

MODALITIES = ("image", "text")


class ModelOutput(NamedTuple):
    """logits: {target: (B, C)}; mask: (B, S, S) logits or None; fusion: the strategy's output;
    encoded: the (possibly dropped) encoder outputs the fusion saw."""

    logits: dict[str, torch.Tensor]
    mask: torch.Tensor | None
    fusion: FusionOutput
    encoded: dict[str, EncoderOutput]
    contrast: tuple[torch.Tensor, torch.Tensor] | None = None  # unit (image, text) embeddings (B, E)
    generated: dict | None = None  # {"ids": (B, T), "caption_logits": (B, T + 1, V), "image": (B, 3, S, S)}


def drop_mask(spec, batch: int, device=None) -> dict[str, torch.Tensor]:
    """Normalise a drop spec ("image" | "text" | "none" | None | {modality: (B,) bool}) to tensors."""
    if spec is None or spec == "none":
        return {}
    if isinstance(spec, str):
        if spec not in MODALITIES:
            raise InputError(f"drop must be one of image, text, none; got {spec!r}")
        return {spec: torch.ones(batch, dtype=torch.bool, device=device)}
    return {k: v for k, v in spec.items() if v is not None}


class Model(nn.Module):
    """encoders -> fusion -> heads. ``classes``: {target: class names}; ``tokenizer``: JSON of the
    word vocabulary for the from-scratch text encoder (None for pretrained tokenizers)."""

    def __init__(self, cfg: ModelConfig, *, classes: dict[str, list[str]], tokenizer: dict | None = None):
        super().__init__()
        self.cfg, self.classes, self.tokenizer_json = cfg, classes, tokenizer
        self._lock = threading.Lock()
        fusion_cls = get_fusion(cfg.fusion)
        self.primary = "label" if "label" in cfg.targets else next(iter(cfg.targets), None)
        if fusion_cls.raw_input:
            from mmlab.encoders.raw import RawImage, RawText

            self.image_encoder = RawImage(cfg.dim, image_size=cfg.image_size)
            self.text_encoder = RawText(cfg, tokenizer)
        else:
            self.image_encoder = build_image_encoder(cfg)
            self.text_encoder = build_text_encoder(cfg, tokenizer)
        self.fusion = build_fusion(cfg.fusion, cfg.dim, num_classes=cfg.targets.get(self.primary) if self.primary else None,
                                   **cfg.fusion_options)
        self.heads = nn.ModuleDict({t: ClassifierHead(cfg.dim, n) for t, n in cfg.targets.items()})
        self.mask_head = None
        if cfg.mask:
            grid = getattr(self.image_encoder, "grid", (cfg.image_size // 4, cfg.image_size // 4))
            self.mask_head = MaskDecoder(cfg.dim, grid=grid, image_size=cfg.image_size,
                                         from_vector=not fusion_cls.spatial,
                                         detail=getattr(self.image_encoder, "detail_channels", None))
        self.contrastive = None
        if cfg.contrastive:
            from mmlab.heads.contrastive import ContrastiveHead

            self.contrastive = ContrastiveHead(cfg.dim)
        self.caption_decoder = self.image_decoder = None
        if cfg.generate:
            from mmlab.heads.generation import CaptionDecoder, ImageDecoder

            vocab = getattr(getattr(self.text_encoder, "tokenizer", None), "vocab", None)
            if vocab is None:
                raise InputError("generation needs the word-level text encoder (text_encoder='bigru')")
            self.caption_decoder = CaptionDecoder(cfg.dim, len(vocab))
            self.image_decoder = ImageDecoder(cfg.dim, image_size=cfg.image_size)
        # stand-ins for a missing modality (seed 003 §5.4): learned tokens, or imputation from the other
        self.missing_token = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, cfg.dim)) for m in MODALITIES})
        self.impute = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim)) for m in MODALITIES
        })

    # ---- encoding -------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.text_encoder.tokenize(texts)

    def encoder(self, modality: str) -> nn.Module:
        return self.image_encoder if modality == "image" else self.text_encoder

    def encode(self, images: torch.Tensor | None = None, text: dict[str, torch.Tensor] | None = None, *,
               features: dict[str, dict[str, torch.Tensor]] | None = None) -> dict[str, EncoderOutput]:
        """images (B, 3, S, S) float in [0, 1]; text: the tokenizer's tensors.

        A frozen encoder (``encoder.frozen``) runs in two steps: ``extract(**inputs)`` gives its
        backbone features (no gradient; cacheable per dataset, see ``mmlab.features``) and
        ``from_features(**features)`` the trainable projection to tokens. ``features`` passes
        already-extracted features per modality and skips the backbone.
        """
        features = dict(features or {})
        raw = {"image": {"images": images}, "text": text}
        out = {}
        for m in ("image", "text"):
            enc = self.encoder(m)
            if getattr(enc, "frozen", False):
                if m not in features:
                    with torch.no_grad():
                        features[m] = enc.extract(**raw[m])
                out[m] = enc.from_features(**features[m])
            else:
                out[m] = enc(**raw[m])
        return out

    def apply_drop(self, encoded: dict[str, EncoderOutput], drop: dict[str, torch.Tensor]) -> dict[str, EncoderOutput]:
        """Replace a dropped modality, per sample, by the model's stand-in (zeros / learned / imputed)."""
        out = dict(encoded)
        for m, gone in drop.items():
            if not bool(gone.any()):
                continue
            enc = encoded[m]
            other = encoded["text" if m == "image" else "image"]
            B, N, D = enc.tokens.shape
            if self.cfg.missing == "zeros":
                fill_tok, fill_pool = torch.zeros_like(enc.tokens), torch.zeros_like(enc.pooled)
            elif self.cfg.missing == "impute":
                fill_pool = self.impute[m](other.pooled.detach())  # (B, D)
                fill_tok = fill_pool.unsqueeze(1).expand(B, N, D)
            else:
                fill_tok = self.missing_token[m].expand(B, N, D)
                fill_pool = self.missing_token[m][:, 0].expand(B, D)
            g = gone.view(B, 1, 1)
            if enc.detail is not None:  # the skips must not leak a dropped image into the mask
                keep = (~gone).view(B, 1, 1, 1).to(enc.tokens.dtype)
                enc = enc._replace(detail=tuple(d * keep for d in enc.detail))
            out[m] = enc._replace(
                tokens=torch.where(g, fill_tok, enc.tokens),
                pooled=torch.where(gone.view(B, 1), fill_pool, enc.pooled),
                present=~gone if enc.present is None else enc.present & ~gone,
            )
        return out

    def head_forward(self, encoded: dict[str, EncoderOutput], drop=None) -> ModelOutput:
        B = encoded["image"].tokens.shape[0]
        encoded = self.apply_drop(encoded, drop_mask(drop, B, encoded["image"].tokens.device))
        fo = self.fusion(encoded)
        logits = {t: head(fo.fused) for t, head in self.heads.items()}
        if fo.logits is not None and self.primary is not None:
            logits[self.primary] = fo.logits
        mask = None
        if self.mask_head is not None:
            mask = self.mask_head(fo.fused, fo.tokens, encoded["image"].detail)
        contrast = None
        if self.contrastive is not None:
            contrast = self.contrastive(encoded["image"].pooled, encoded["text"].pooled)
        return ModelOutput(logits=logits, mask=mask, fusion=fo, encoded=encoded, contrast=contrast)

    def forward(self, images: torch.Tensor | None, text: dict[str, torch.Tensor] | None, drop=None, *,
                features: dict | None = None) -> ModelOutput:
        out = self.head_forward(self.encode(images, text, features=features), drop)
        if self.caption_decoder is not None and text is not None and "ids" in text:
            # cross-modal generation from the other modality's pooled vector alone (seed 001)
            out = out._replace(generated={
                "ids": text["ids"],
                "caption_logits": self.caption_decoder(out.encoded["image"].pooled, text["ids"]),
                "image": self.image_decoder(out.encoded["text"].pooled),
            })
        return out

    # ---- one pair, from user input --------------------------------------------------------
    def preprocess(self, images: list[ImageLike]) -> torch.Tensor:
        arrays = [to_array(load_image(im), self.cfg.image_size) for im in images]
        return torch.from_numpy(np.stack(arrays)).float() / 255.0  # (B, 3, S, S)

    @torch.inference_mode()
    def predict(self, image: ImageLike, text: str, *, drop: str | None = None) -> Prediction:
        """Predict for one (image, text) pair. Raises ``InputError`` for bad input.

        ``drop``: "image" | "text" | "none"; by default, what the checkpoint was scored with (a
        unimodal baseline trained with one modality always missing has it missing here too)."""
        if drop is None:
            drop = getattr(self, "meta", {}).get("eval_drop")
        text = clean_text(text)
        x = self.preprocess([image])
        with self._lock:  # BatchNorm/GRU modules are not re-entrant across threads in eval either
            was_training = self.training
            self.eval()
            out = self(x, self.tokenize([text]), drop=drop)
            self.train(was_training)
        return self._prediction(out, text)

    def _prediction(self, out: ModelOutput, text: str) -> Prediction:
        label, probs, extras = None, {}, {}
        for t, logit in out.logits.items():
            p = logit[0].softmax(-1).float().numpy()
            named = {c: float(v) for c, v in zip(self.classes[t], p)}
            if t == self.primary:
                label, probs = self.classes[t][int(p.argmax())], named
            else:
                extras[t] = named
        mask = torch.sigmoid(out.mask[0]).float().numpy() if out.mask is not None else None
        if out.generated is not None:
            ids = self.caption_decoder.generate(out.encoded["image"].pooled)[0].tolist()
            words = [self.text_encoder.tokenizer.vocab[i] for i in ids[: ids.index(0) if 0 in ids else len(ids)]]
            extras["caption"] = " ".join(words)
            extras["generated_image"] = out.generated["image"][0].permute(1, 2, 0).float().numpy()  # (S, S, 3)
        if out.contrast is not None:  # cosine similarity of the pair in the aligned space
            extras["similarity"] = float((out.contrast[0][0] * out.contrast[1][0]).sum())
        attention = None
        grid = out.encoded["image"].grid
        if out.fusion.attention and grid is not None:
            attention = {k: a[0].reshape(a.shape[1], a.shape[2], *grid).float().numpy()
                         for k, a in out.fusion.attention.items()}  # (H, T, h, w)
        for k, v in (out.fusion.extras or {}).items():
            if torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == out.fusion.fused.shape[0]:
                extras[k] = v[0].float().numpy()
        emb = {
            "image": out.encoded["image"].pooled[0].float().numpy(),
            "text": out.encoded["text"].pooled[0].float().numpy(),
            "fused": out.fusion.fused[0].float().numpy(),
        }
        tokens = self.text_encoder.token_strings(text)
        return Prediction(label=label, probs=probs, mask=mask, attention=attention, embeddings=emb,
                          tokens=tokens, extras=extras or None)

    def text_notice(self, text: str) -> str | None:
        """One line for a person when the text is longer than this model reads (else None)."""
        from mmlab.data.text import clean_text_with_notice

        enc = self.text_encoder
        limit = getattr(getattr(enc, "tokenizer", None), "max_len", None) or getattr(enc, "max_length", None)
        return clean_text_with_notice(text, max_tokens=limit, allow_empty=True)[1]

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
