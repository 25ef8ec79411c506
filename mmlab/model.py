"""The multimodal model: encoders -> fusion strategy -> heads, assembled from parts.

``build_model(cfg, classes=..., tokenizer=...)`` builds the parts a config names and passes them to
``Model``; ``Model.run_pair`` is the one forward pass on a user's (image, text) pair that
``predict`` and every explanation (``mmlab.explain``) use, with the checkpoint's test-time drop
applied in one place (``resolve_drop``).
"""
from __future__ import annotations

import contextlib
import threading
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mmlab.config import ModelConfig
from mmlab.data.images import ImageLike, load_image
from mmlab.data.letterbox import ImageView, letterbox
from mmlab.data.text import clean_text
from mmlab.encoders import build_image_encoder, build_text_encoder
from mmlab.encoders.base import ImageEncoder, TextEncoder
from mmlab.errors import InputError
from mmlab.fusion import build_fusion, get as get_fusion
from mmlab.fusion.base import Fusion
from mmlab.heads import ClassifierHead, MaskDecoder
from mmlab.types import EncoderOutput, FusionOutput, Prediction

MODALITIES = ("image", "text")
DROPS = ("image", "text", "none")


class ModelOutput(NamedTuple):
    """logits: {target: (B, C)}; mask: (B, S, S) logits or None; fusion: the strategy's output;
    encoded: the (possibly dropped) encoder outputs the fusion saw."""

    logits: dict[str, torch.Tensor]
    mask: torch.Tensor | None
    fusion: FusionOutput
    encoded: dict[str, EncoderOutput]
    contrast: tuple[torch.Tensor, torch.Tensor] | None = None  # unit (image, text) embeddings (B, E)
    generated: dict | None = None  # {"ids": (B, T), "caption_logits": (B, T + 1, V), "image": (B, 3, S, S)}


class PairRun(NamedTuple):
    """One forward pass on one (image, text) pair (``Model.run_pair``).

    out: the model's output for the batch of one; encoded: the encoders' outputs before any drop;
    images: the (1, 3, S, S) input it saw; view: how the picture was letterboxed into it; text: the
    cleaned sentence; tokens: the text tokens the attention rows refer to; drop: the modality
    dropped ("image", "text" or None).
    """

    out: ModelOutput
    encoded: dict[str, EncoderOutput]
    images: torch.Tensor
    view: ImageView
    text: str
    tokens: list[str]
    drop: str | None


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
    """encoders -> fusion -> heads, from parts built elsewhere (``build_model``).

    ``classes``: {target: class names}; ``tokenizer``: JSON of the word vocabulary of a from-scratch
    text encoder (None for pretrained tokenizers); ``eval_drop``: the modality this checkpoint is
    scored without ("image" / "text"; a unimodal baseline), None for both; ``meta``: the
    checkpoint's config.json once loaded. Submodule names are the checkpoint's key prefixes.
    """

    def __init__(self, cfg: ModelConfig, *, image_encoder: ImageEncoder, text_encoder: TextEncoder, fusion: Fusion,
                 heads: dict[str, nn.Module], classes: dict[str, list[str]], tokenizer: dict | None = None,
                 mask_head: nn.Module | None = None, contrastive: nn.Module | None = None,
                 caption_decoder: nn.Module | None = None, image_decoder: nn.Module | None = None,
                 eval_drop: str | None = None):
        super().__init__()
        self.cfg, self.classes, self.tokenizer_json = cfg, classes, tokenizer
        self.eval_drop = eval_drop
        self.meta: dict = {}
        self.domain = None  # mmlab.domain.Domain: what inputs this model knows (set by the loader)
        self._lock = threading.RLock()
        self.primary = "label" if "label" in cfg.targets else next(iter(cfg.targets), None)
        self.image_encoder, self.text_encoder, self.fusion = image_encoder, text_encoder, fusion
        self.heads = nn.ModuleDict(heads)
        self.mask_head, self.contrastive = mask_head, contrastive
        self.caption_decoder, self.image_decoder = caption_decoder, image_decoder
        # the stand-in for a missing modality (seed 003 §5.4): a learned token, or imputation from the other
        self.missing_token = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(1, 1, cfg.dim)) for m in MODALITIES}) if cfg.missing == "learned" else None
        self.impute = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim)) for m in MODALITIES
        }) if cfg.missing == "impute" else None

    def __getstate__(self) -> dict:  # a copy (copy.deepcopy, pickle) gets a lock of its own
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._lock = threading.RLock()

    @property
    def float_dtype(self) -> torch.dtype:
        """The dtype of the model's floating weights: float32, or bfloat16 for ``evaluate.fast_model``'s copy."""
        return next((p.dtype for p in self.parameters() if p.is_floating_point()), torch.float32)

    # ---- encoding -------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.text_encoder.tokenize(texts)

    def encoder(self, modality: str) -> ImageEncoder | TextEncoder:
        return self.image_encoder if modality == "image" else self.text_encoder

    def encode(self, images: torch.Tensor | None = None, text: dict[str, torch.Tensor] | None = None, *,
               features: dict[str, dict[str, torch.Tensor]] | None = None) -> dict[str, EncoderOutput]:
        """images (B, 3, S, S) float in [0, 1]; text: the tokenizer's tensors; ``features``: already
        extracted backbone features of frozen encoders per modality (``mmlab.features``)."""
        features = features or {}
        dtype = self.float_dtype
        if dtype != torch.float32:  # a bfloat16 copy: its inputs follow (the data and cached features are float32)
            images = images.to(dtype) if images is not None else None
            features = {m: {k: v.to(dtype) if v.is_floating_point() else v for k, v in f.items()}
                        for m, f in features.items()}
        inputs = {"image": {"images": images}, "text": text}
        return {m: self.encoder(m).encode(inputs[m], features.get(m)) for m in MODALITIES}

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
        """Drop (exactly as given: ``resolve_drop`` is the caller's), fuse and run the heads."""
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
    def resolve_drop(self, drop: str | None = None) -> str | None:
        """The modality to drop: ``drop`` ("image" | "text" | "none"), or by default (None) what the
        checkpoint is scored with (a unimodal baseline trained with one modality always missing
        has it missing here too). Returns "image", "text" or None."""
        if drop is None:
            return self.eval_drop
        if drop not in DROPS:
            raise InputError(f"drop must be one of {', '.join(DROPS)}; got {drop!r}")
        return None if drop == "none" else drop

    def preprocess(self, images: list[ImageLike]) -> tuple[torch.Tensor, list[ImageView]]:
        """Validated pictures letterboxed (never squashed) into (B, 3, S, S) floats in [0, 1], and their views."""
        arrays, views = [], []
        for im in images:
            square, view = letterbox(load_image(im), self.cfg.image_size)
            arrays.append(np.asarray(square, dtype=np.uint8).transpose(2, 0, 1))  # (3, S, S)
            views.append(view)
        return torch.from_numpy(np.stack(arrays)).float() / 255.0, views

    @contextlib.contextmanager
    def evaluating(self):
        """Hold the model's lock and run it in eval mode, restoring its mode afterwards. BatchNorm and GRU
        modules are not re-entrant across threads even in eval mode, so every pass on a shared model
        (``predict``, the explanations) runs inside this."""
        with self._lock:
            was_training = self.training
            self.eval()
            try:
                yield self
            finally:
                self.train(was_training)

    def run_pair(self, image: ImageLike, text: str, *, drop: str | None = None) -> PairRun:
        """The one forward pass on a user's (image, text) pair: clean the text, letterbox the picture,
        encode, drop (``resolve_drop``), fuse, heads. Runs in whatever grad mode the caller set; call it
        inside ``evaluating()``. Raises ``InputError`` for bad input."""
        text = clean_text(text)
        images, views = self.preprocess([image])
        dropped = self.resolve_drop(drop)
        encoded = self.encode(images, self.tokenize([text]))
        out = self.head_forward(encoded, dropped)
        return PairRun(out, encoded, images, views[0], text, self.text_encoder.token_strings(text), dropped)

    def predict(self, image: ImageLike, text: str, *, drop: str | None = None) -> Prediction:
        """Predict for one (image, text) pair. Raises ``InputError`` for bad input.

        ``drop``: "image" | "text" | "none"; by default what the checkpoint was scored with."""
        with self.evaluating(), torch.inference_mode():
            run = self.run_pair(image, text, drop=drop)
            return self._prediction(run)

    def _prediction(self, run: PairRun) -> Prediction:
        out = run.out
        label, probs, extras = None, {}, {}
        for t, logit in out.logits.items():
            p = logit[0].softmax(-1).float().numpy()
            named = {c: float(v) for c, v in zip(self.classes[t], p)}
            if t == self.primary:
                label, probs = self.classes[t][int(p.argmax())], named
            else:
                extras[t] = named
        mask = torch.sigmoid(out.mask[0]).float().numpy() if out.mask is not None else None
        if self.caption_decoder is not None:
            ids = self.caption_decoder.generate(out.encoded["image"].pooled)[0].tolist()
            words = [self.text_encoder.tokenizer.vocab[i] for i in ids[: ids.index(0) if 0 in ids else len(ids)]]
            extras["caption"] = " ".join(words)
            extras["generated_image"] = self.image_decoder(out.encoded["text"].pooled)[0].permute(1, 2, 0).float().numpy()
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
        check = self.domain.check(run) if self.domain is not None else None
        return Prediction(label=label, probs=probs, mask=mask, attention=attention, embeddings=emb,
                          tokens=run.tokens, extras=extras or None, view=run.view,
                          in_distribution=None if check is None else check.in_distribution, domain=check)

    def text_notice(self, text: str) -> str | None:
        """One line for a person when the text is longer than this model reads (else None)."""
        from mmlab.data.text import clean_text_with_notice

        return clean_text_with_notice(text, max_tokens=self.text_encoder.max_tokens, allow_empty=True)[1]

    def clone(self) -> "Model":
        """A private copy (same config, weights, domain and meta) that can be changed freely."""
        other = build_model(self.cfg, classes=self.classes, tokenizer=self.tokenizer_json, eval_drop=self.eval_drop)
        other.load_state_dict(self.state_dict())
        other.meta, other.domain = dict(self.meta), self.domain
        return other.eval()

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def build_model(cfg: ModelConfig, *, classes: dict[str, list[str]], tokenizer: dict | None = None,
                eval_drop: str | None = None) -> Model:
    """The parts ``cfg`` names, assembled into a ``Model``. ``cfg.image_size`` must be set."""
    if not isinstance(cfg.image_size, int):
        raise InputError("image_size must be set to build a model (an experiment resolves it from its data)")
    fusion_cls = get_fusion(cfg.fusion)
    primary = "label" if "label" in cfg.targets else next(iter(cfg.targets), None)
    if fusion_cls.raw_input:
        from mmlab.encoders.raw import RawImage, RawText

        image_encoder, text_encoder = RawImage(cfg.dim, image_size=cfg.image_size), RawText(cfg, tokenizer)
    else:
        image_encoder, text_encoder = build_image_encoder(cfg), build_text_encoder(cfg, tokenizer)
    fusion = build_fusion(cfg.fusion, cfg.dim, num_classes=cfg.targets.get(primary) if primary else None,
                          **cfg.fusion_options)
    # built in this order: the seeded initial weights of every shipped checkpoint depend on it; a strategy with
    # nothing to learn (a zero-shot bridge) decides itself and gets no head
    heads = {t: ClassifierHead(cfg.dim, n) for t, n in cfg.targets.items()} if fusion_cls.trainable else {}
    parts: dict = {}
    if cfg.mask:
        parts["mask_head"] = MaskDecoder(cfg.dim, grid=image_encoder.grid, image_size=cfg.image_size,
                                         from_vector=not fusion_cls.spatial, detail=image_encoder.detail_channels)
    if cfg.contrastive:
        from mmlab.heads.contrastive import ContrastiveHead

        parts["contrastive"] = ContrastiveHead(cfg.dim)
    if cfg.generate:
        from mmlab.heads.generation import CaptionDecoder, ImageDecoder

        if text_encoder.known_words() is None:
            raise InputError("generation needs the word-level text encoder (text_encoder='bigru')")
        parts["caption_decoder"] = CaptionDecoder(cfg.dim, len(text_encoder.tokenizer.vocab))
        parts["image_decoder"] = ImageDecoder(cfg.dim, image_size=cfg.image_size)
    return Model(cfg, image_encoder=image_encoder, text_encoder=text_encoder, fusion=fusion, heads=heads,
                 classes=classes, tokenizer=tokenizer, eval_drop=eval_drop, **parts)
