"""What the model looks at: text-token -> image-patch maps for one (image, text) pair.

Plain functions returning numpy arrays the app overlays; nothing here draws.

- ``attention_maps``: the raw cross-attention of every layer and head (what ``Model.predict``
  returns), ``{"layer{l}": (H, T, h, w)}``.
- ``rollout``: attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in
  Transformers"), adapted to text -> image cross-attention (see its docstring), ``(T, h, w)``.
- ``relevance``: gradient-weighted attention relevance (Chefer, Gur & Wolf 2021, "Generic
  Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder
  Transformers"), ``(T, h, w)``.
- ``grad_cam``: Grad-CAM (Selvaraju et al. 2017) over the image encoder's patch tokens, for
  every strategy, attention or not, ``(h, w)``.
- ``explain``: one normalised ``(h, w)`` map for the app, falling back to Grad-CAM for
  strategies without attention; ``upsample``, ``map_to_mask`` and ``score_map`` turn a map
  into an overlay or a binary mask scored against a ground-truth mask (IoU / Dice).

Every map is computed on the one forward pass ``Model.run_pair`` (the pass ``predict`` makes,
with the checkpoint's test-time drop). Conventions read from ``FusionOutput``:
``attention["layer{l}"]`` (B, H, T, P) holds text -> image cross-attention (the contract of
``mmlab.types``). A strategy with joint self-attention over one sequence of image and text
tokens (a multimodal transformer) also returns each layer's full, row-stochastic map in
``joint_attention["layer{l}"]`` (B, H, N, N) and says where the image and text tokens sit in
that sequence (``joint_slices(num_patches, num_tokens) -> {"image": slice, "text": slice}``);
rollout and relevance then use those maps (the original, square rules).
"""
from __future__ import annotations

import math
import re
from contextlib import contextmanager
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from mmlab.data.images import ImageLike, load_image
from mmlab.data.letterbox import fit
from mmlab.data.text import clean_text
from mmlab.errors import InputError
from mmlab.viz import normalize  # noqa: F401 - re-exported: explain.normalize / overlay.normalize
from mmlab.metrics import mask_dice, mask_iou

if TYPE_CHECKING:
    from mmlab.model import Model, PairRun

METHODS = ("attention", "rollout", "relevance", "gradcam")


class NoAttentionError(InputError):
    """The strategy exposes no text -> image attention (use ``grad_cam`` instead)."""


class ExplainResult(NamedTuple):
    """map: (h, w) float in [0, 1] (min-max normalised) over the model's square input; method_used: the
    method that made it (``"gradcam"`` when an attention method was asked of a strategy without
    attention); tokens: the text tokens the rows refer to; note: why the method differs from the one
    asked; view: how the picture sits in the model's input (``view.to_original(map)`` draws the map on
    the picture, ``view.peak(map)`` is its peak in the picture's own pixels)."""

    map: np.ndarray
    method_used: str
    tokens: list[str]
    note: str = ""
    view: object = None


def _grid(enc, num_patches: int) -> tuple[int, int]:
    if enc.grid is not None:
        return tuple(enc.grid)
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise InputError(f"the image encoder gives {num_patches} tokens with no patch grid; cannot map them")
    return side, side


def _layer_keys(maps: dict) -> list[str]:
    def index(key: str) -> int:
        m = re.search(r"(\d+)$", key)
        return int(m.group(1)) if m else 0

    return sorted(maps, key=index)


def _self_attention(run: PairRun) -> list[torch.Tensor]:
    maps = run.out.fusion.joint_attention or {}
    return [maps[k] for k in _layer_keys(maps)]


def _cross_attention(run: PairRun) -> list[torch.Tensor]:
    maps = run.out.fusion.attention or {}
    return [maps[k] for k in _layer_keys(maps)]


def _joint_slices(model, num_patches: int, num_tokens: int, n: int) -> tuple[slice, slice]:
    """Where the image patches and the text tokens sit in a joint sequence of ``n``: the strategy says
    (``joint_slices``); a strategy with joint attention must."""
    if not hasattr(model.fusion, "joint_slices"):
        raise InputError(f"fusion {model.cfg.fusion!r} returns joint attention but not where its image and text "
                         "tokens sit (joint_slices)")
    s = model.fusion.joint_slices(num_patches, num_tokens)
    if s["image"].stop > n or s["text"].stop > n:
        raise InputError(f"joint attention over {n} tokens cannot hold {num_patches} patches and {num_tokens} words")
    return s["image"], s["text"]


def _require_attention(model, run: PairRun) -> None:
    if not _self_attention(run) and not _cross_attention(run):
        raise NoAttentionError(
            f"fusion {model.cfg.fusion!r} has no text-to-image attention; use grad_cam for its map")


def _target_scores(model, out, target) -> torch.Tensor:
    """(B,) the scalar per sample that the gradients explain.

    target None: for a mask model, its mask (what it is judged by and what the pages show);
    otherwise the predicted class of the primary target. An int or class name: that class of the primary target; ``"head:class"``
    names a class of another head; ``"mask"``: the sum of mask logits inside the predicted
    mask (probability > 0.5); when the predicted mask is empty, the sum of all mask logits
    weighted by their (constant) probabilities, so the likeliest pixels count most.
    Samples are independent in eval mode, so the gradient of the batch's sum is each sample's own.
    """
    if target is None:
        target = "mask" if model.mask_head is not None else None
    if target == "mask":
        if out.mask is None:
            raise InputError("this model predicts no mask; explain a class instead")
        logits = out.mask.flatten(1)  # (B, S*S)
        inside = (logits > 0).detach()
        weight = torch.where(inside.any(1, keepdim=True), inside.to(logits.dtype), torch.sigmoid(logits).detach())
        return (logits * weight).sum(1)
    head = model.primary
    if head is None:
        raise InputError("this model has no class head; use target='mask'")
    if isinstance(target, str) and ":" in target:
        head, target = target.split(":", 1)
        if head not in out.logits:
            raise InputError(f"unknown head {head!r}; choose one of: {', '.join(out.logits)}")
    logits = out.logits[head]  # (B, C)
    names = model.classes.get(head, [])
    if target is None:
        index = logits.argmax(1)
    elif isinstance(target, str):
        if target not in names:
            raise InputError(f"unknown class {target!r} of {head!r}; choose one of: {', '.join(names)}")
        index = torch.full((len(logits),), names.index(target))
    else:
        if not 0 <= int(target) < logits.shape[1]:
            raise InputError(f"class index {target} out of range for {head!r} ({logits.shape[1]} classes)")
        index = torch.full((len(logits),), int(target))
    return logits.gather(1, index[:, None])[:, 0]


def _grads(score: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """d score / d tensor for each tensor; None where the tensor is not on the score's graph."""
    live = [i for i, t in enumerate(tensors) if t.requires_grad]
    if not score.requires_grad or not live:
        return [None] * len(tensors)
    got = torch.autograd.grad(score, [tensors[i] for i in live], allow_unused=True)
    out: list[torch.Tensor | None] = [None] * len(tensors)
    for i, g in zip(live, got):
        out[i] = g
    return out


@contextmanager
def _with_grad(model):
    """Eval mode under the model's lock, with autograd on even if the caller is in inference mode."""
    with model.evaluating(), torch.inference_mode(False), torch.enable_grad():
        yield


def _to_grid(rows: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    return rows.detach().reshape(*rows.shape[:-1], *grid).float().numpy()  # (..., h, w)


# ---- the rules, on a batch --------------------------------------------------------------
def rollout_rows(model, out, *, residual: float = 0.5) -> torch.Tensor:
    """Attention rollout of a batch's model output: (B, T, P) text-token -> image-patch rows summing to 1.
    See ``rollout`` for the rule."""
    joint = [out.fusion.joint_attention[k] for k in _layer_keys(out.fusion.joint_attention or {})]
    P, T = out.encoded["image"].tokens.shape[1], out.encoded["text"].tokens.shape[1]
    if joint:
        B, N = joint[0].shape[0], joint[0].shape[-1]
        eye = torch.eye(N).expand(B, N, N)
        R = eye
        for A in joint:
            a = residual * eye + (1 - residual) * A.float().mean(1)  # (B, N, N)
            R = (a / a.sum(-1, keepdim=True)) @ R
        image_s, text_s = _joint_slices(model, P, T, N)
        rows = R[:, text_s, image_s]  # (B, T, P)
    else:
        layers = [out.fusion.attention[k] for k in _layer_keys(out.fusion.attention or {})]
        if not layers:
            raise NoAttentionError(f"fusion {model.cfg.fusion!r} has no text-to-image attention")
        L = len(layers)  # the text -> image block of the joint-graph product, in closed form
        rows = sum((1 - residual) * residual ** (L - 1 - i) * A.float().mean(1) for i, A in enumerate(layers))
    return rows / rows.sum(-1, keepdim=True).clamp_min(1e-12)


def relevance_rows(model, out, score: torch.Tensor) -> torch.Tensor:
    """Gradient-weighted relevance (Chefer et al. 2021) of a batch: (B, T, P), non-negative. ``score`` (B,):
    what each sample's relevance explains (``_target_scores``); the output must be on its graph."""
    joint = [out.fusion.joint_attention[k] for k in _layer_keys(out.fusion.joint_attention or {})]
    layers = joint or [out.fusion.attention[k] for k in _layer_keys(out.fusion.attention or {})]
    if not layers:
        raise NoAttentionError(f"fusion {model.cfg.fusion!r} has no text-to-image attention")
    grads = _grads(score.sum(), layers)
    cams = [((torch.zeros_like(A) if g is None else g) * A).clamp(min=0).mean(1).detach().float()
            for A, g in zip(layers, grads)]  # (B, Tq, Tk) each
    if not joint:
        return torch.stack(cams).sum(0)  # (B, T, P)
    P, T = out.encoded["image"].tokens.shape[1], out.encoded["text"].tokens.shape[1]
    B, N = cams[0].shape[0], cams[0].shape[-1]
    R = torch.eye(N).expand(B, N, N)
    for a in cams:
        R = R + a @ R
    image_s, text_s = _joint_slices(model, P, T, N)
    return R[:, text_s, image_s]  # (B, T, P)


def decision_relevance(model, out, score: torch.Tensor, target=None) -> torch.Tensor:
    """Relevance (Chefer et al. 2021) of each image patch for the decision itself: (B, P), non-negative.

    The rule is read at the positions where the decision is made. With joint self-attention (a
    multimodal transformer over [CLS, patches, words]) the class is read from [CLS] and the mask from
    the image patches, and the words' last-layer outputs feed neither: reading the word rows (as for
    cross-attention) shows only what the words took from the image in earlier layers, which is why
    it landed on no shape. So: the [CLS] row for a class, the rows of the patches inside the predicted
    mask (weighted by its probability) for a mask. With text -> image cross-attention the sentence
    decides (its words' outputs are pooled), so it is the mean of the real words' rows.
    """
    joint = [out.fusion.joint_attention[k] for k in _layer_keys(out.fusion.joint_attention or {})]
    if not joint:
        rows = relevance_rows(model, out, score)  # (B, T, P)
        real = out.encoded["text"].mask.to(rows.dtype)  # (B, T)
        return (rows * real[:, :, None]).sum(1) / real.sum(1, keepdim=True).clamp_min(1)
    P, T = out.encoded["image"].tokens.shape[1], out.encoded["text"].tokens.shape[1]
    grads = _grads(score.sum(), joint)
    cams = [((torch.zeros_like(A) if g is None else g) * A).clamp(min=0).mean(1).detach().float()
            for A, g in zip(joint, grads)]
    B, N = cams[0].shape[0], cams[0].shape[-1]
    R = torch.eye(N).expand(B, N, N)
    for a in cams:
        R = R + a @ R
    slices = model.fusion.joint_slices(P, T)
    image_s = slices["image"]
    if (target is None and model.mask_head is not None) or target == "mask":
        grid = out.encoded["image"].grid
        weight = torch.nn.functional.adaptive_avg_pool2d(torch.sigmoid(out.mask.detach().float())[:, None], grid)
        weight = weight.flatten(1)  # (B, P): the predicted mask on the patch grid
        return (weight[:, :, None] * R[:, image_s, image_s]).sum(1) / weight.sum(1, keepdim=True).clamp_min(1e-12)
    return R[:, slices["decision"], image_s].mean(1)  # (B, P): the [CLS] row


def grad_cam_rows(out, score: torch.Tensor, encoded: dict) -> torch.Tensor:
    """Grad-CAM of a batch over the image encoder's patch tokens (before any drop): (B, P), >= 0."""
    tokens, pooled = encoded["image"].tokens, encoded["image"].pooled
    g_tok, g_pool = _grads(score.sum(), [tokens, pooled])
    if g_tok is not None and bool(g_tok.abs().sum() > 0):
        weights = g_tok.float().mean(1)  # (B, D)
    elif g_pool is not None:
        weights = g_pool.float()  # (B, D)
    else:
        weights = torch.zeros(tokens.shape[0], tokens.shape[2])
    return torch.einsum("bpd,bd->bp", tokens.detach().float(), weights).clamp(min=0)  # (B, P)


# ---- the maps of one pair ---------------------------------------------------------------
def attention_maps(model: Model, image: ImageLike, text: str, *, drop=None) -> dict[str, np.ndarray]:
    """Raw text-token -> image-patch attention per layer: ``{"layer{l}": (H, T, h, w)}``.

    Each row (head, token) is a softmax over patches and sums to 1. Empty dict for
    strategies without cross-attention. This is ``Model.predict(...).attention``.
    """
    return model.predict(image, text, drop=drop).attention or {}


def rollout(model: Model, image: ImageLike, text: str, *, drop=None, residual: float = 0.5) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) from each text token to the image patches: (T, h, w).

    Rollout multiplies head-averaged attention through the layers, with the residual
    connection added as identity: ``Â_l = residual * I + (1 - residual) * mean_heads(A_l)``
    (rows renormalised), ``R = Â_L ... Â_1``.

    With joint self-attention (``joint_attention["layer{l}"]``, square maps) this is
    the original rule, and the answer is the text rows / image columns of R.

    Pure text -> image cross-attention maps (T, P) are not square, so the product is taken
    on the joint graph of T text and P image nodes: each layer is the block matrix
    ``[[residual * I_T, (1 - residual) * Ā_l], [0, I_P]]`` (a word keeps part of itself
    through the residual and reads the rest from the patches; the image tokens are not
    updated by text -> image fusion, so they map to themselves). Its text -> image block
    works out to ``(1 - residual) * sum_l residual^(L-l) Ā_l``: later layers weigh more,
    every layer reads the same (unchanged) image tokens, so there is no deeper chain to
    compose. Honest caveat: because of that, for this kind of strategy rollout is a
    depth-weighted average of the raw maps, not new information; the rows are
    renormalised to sum to 1 over patches.
    """
    if not 0.0 <= residual < 1.0:
        raise InputError(f"residual must be in [0, 1), got {residual}")
    with model.evaluating(), torch.no_grad():
        run = model.run_pair(image, text, drop=drop)
    _require_attention(model, run)
    rows = rollout_rows(model, run.out, residual=residual)[0]
    return _to_grid(rows, _grid(run.encoded["image"], rows.shape[-1]))


def relevance(model: Model, image: ImageLike, text: str, *, target=None, drop=None) -> np.ndarray:
    """Gradient-weighted attention relevance (Chefer et al. 2021) of each text token for each
    image patch: (T, h, w), non-negative.

    For each layer's attention A (H, T, P) and the gradient dA of the target score (the
    predicted class logit of the primary target by default; for a mask-only model the sum
    of mask logits inside the predicted mask; see ``target`` below):
    ``Ā_l = mean_heads(clamp(dA ⊙ A, min=0))``.

    Cross-attention (text -> image): ``R = sum_l Ā_l``. This is Chefer's bi-modal rule
    ``R^{ti} += (R̄^{tt})ᵀ Ā R^{ii}`` for an architecture with no self-attention between the
    cross layers (R^{tt} = I, R^{ii} = I), as in ``cross_attention``.
    Joint self-attention (``joint_attention["layer{l}"]``): ``R = I; R += Ā_l R`` per
    layer, and the answer is its text rows / image columns.

    target: None, a class index or name of the primary target, ``"head:class"``, or ``"mask"``.
    The map explains the model's decision, not the truth: where a short-trained model's
    predicted mask misses the object, the mask target's relevance follows the prediction.
    """
    with _with_grad(model):
        run = model.run_pair(image, text, drop=drop)
        _require_attention(model, run)
        rows = relevance_rows(model, run.out, _target_scores(model, run.out, target))[0]
    return _to_grid(rows, _grid(run.encoded["image"], rows.shape[-1]))


def relevance_of_decision(model: Model, image: ImageLike, text: str, *, target=None, drop=None) -> np.ndarray:
    """Relevance of each image patch for the model's decision on one pair (``decision_relevance``): (h, w)."""
    with _with_grad(model):
        run = model.run_pair(image, text, drop=drop)
        _require_attention(model, run)
        row = decision_relevance(model, run.out, _target_scores(model, run.out, target), target)[0]
    return _to_grid(row, _grid(run.encoded["image"], row.shape[-1]))


def grad_cam(model: Model, image: ImageLike, text: str, *, target=None, drop=None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) over the image encoder's patch tokens: (h, w), >= 0.

    Channel weights are the gradients of the target score w.r.t. the patch tokens (1, P, D)
    averaged over patches; the map is ``relu(sum_d weight_d * tokens[p, d])`` on the patch
    grid. Works for every strategy (concat, late fusion, attention), so each has a map. If
    a strategy reads only the pooled image vector and the encoder's pooled vector is not
    computed from its tokens, the pooled vector's gradient stands in for the weights.
    ``target`` as in ``relevance``.
    """
    with _with_grad(model):
        run = model.run_pair(image, text, drop=drop)
        cam = grad_cam_rows(run.out, _target_scores(model, run.out, target), run.encoded)[0]
    return _to_grid(cam, _grid(run.encoded["image"], cam.shape[-1]))  # (h, w)


# ---- one map for the app ----------------------------------------------------------------


def _pick_token(rows: np.ndarray, token: int | None) -> np.ndarray:
    """rows (T, h, w) -> (h, w): one token's row, or the mean over all tokens."""
    if token is None:
        return rows.mean(0)
    T = rows.shape[0]
    if not isinstance(token, (int, np.integer)) or not -T <= token < T:
        raise InputError(f"token must be an index in [0, {T}), got {token!r}")
    return rows[int(token)]


def _pick_attention(maps: dict[str, np.ndarray], layer, head) -> np.ndarray:
    """{"layer{l}": (H, T, h, w)} -> (T, h, w): one layer or the mean of layers, one head or the mean."""
    keys = _layer_keys(maps)
    if layer is None:
        stack = np.stack([maps[k] for k in keys])  # (L, H, T, h, w)
    else:
        key = layer if isinstance(layer, str) else None
        if isinstance(layer, (int, np.integer)) and -len(keys) <= layer < len(keys):
            key = keys[int(layer)]
        if key not in maps:
            raise InputError(f"layer must be one of {', '.join(keys)} or an index below {len(keys)}, got {layer!r}")
        stack = maps[key][None]
    H = stack.shape[1]
    if head is None:
        return stack.mean((0, 1))
    if not isinstance(head, (int, np.integer)) or not -H <= head < H:
        raise InputError(f"head must be an index in [0, {H}), got {head!r}")
    return stack[:, int(head)].mean(0)


def explain(model: Model, image: ImageLike, text: str, method: str = "attention", *, token: int | None = None,
            layer: int | str | None = None, head: int | None = None, target=None, drop=None,
            prediction=None) -> ExplainResult:
    """One (h, w) map in [0, 1] for the app's overlay.

    method: ``"attention"`` (raw maps; ``layer`` index or "layer{l}" key, None = mean over
    layers; ``head`` index, None = mean over heads), ``"rollout"``, ``"relevance"``
    (``target`` as in ``relevance``) or ``"gradcam"``. ``token`` picks one text token's row
    (None = mean over the sentence); layer and head apply to ``"attention"`` only, token
    does not apply to Grad-CAM. Strategies without attention get Grad-CAM, and the result
    says so (``method_used``, ``note``). ``prediction``: this pair's ``Model.predict`` (same ``drop``), when
    the caller has it: the attention maps are read from it instead of a second forward pass.
    """
    if method not in METHODS:
        raise InputError(f"unknown explanation method {method!r}; choose one of: {', '.join(METHODS)}")
    picture = load_image(image)  # validated once; every pass below reads the same picture
    tokens = model.text_encoder.token_strings(clean_text(text))
    view = fit(*picture.size, model.cfg.image_size)
    note = ""
    try:
        if method == "attention":
            pred = prediction if prediction is not None else model.predict(picture, text, drop=drop)
            maps = pred.attention or {}
            if not maps:
                raise NoAttentionError(f"fusion {model.cfg.fusion!r} has no text-to-image attention")
            own = (pred.extras or {}).get("sentence_attention")
            if token is None and layer is None and head is None and own is not None:  # the strategy's own map
                grid = next(iter(maps.values())).shape[-2:]
                return ExplainResult(normalize(np.asarray(own, np.float32).reshape(grid)), method, tokens, view=view)
            return ExplainResult(normalize(_pick_token(_pick_attention(maps, layer, head), token)), method, tokens,
                                 view=view)
        if method == "rollout":
            return ExplainResult(normalize(_pick_token(rollout(model, picture, text, drop=drop), token)), method,
                                 tokens, view=view)
        if method == "relevance":
            if token is None:  # the whole sentence: the relevance of the decision itself
                return ExplainResult(normalize(relevance_of_decision(model, picture, text, target=target, drop=drop)),
                                     method, tokens, view=view)
            rows = relevance(model, picture, text, target=target, drop=drop)
            note = ("in a joint transformer a word's own output feeds neither the class nor the mask, so its "
                    "relevance shows only what it read from the image; the whole sentence shows the decision's"
                    if hasattr(model.fusion, "joint_slices") else "")
            return ExplainResult(normalize(_pick_token(rows, token)), method, tokens, note, view)
    except NoAttentionError:
        note = f"{model.cfg.fusion} has no text-to-image attention, so this is Grad-CAM over the image patches"
    cam = grad_cam(model, picture, text, target=target, drop=drop)
    if token is not None:
        note = (note + "; " if note else "") + "Grad-CAM explains the whole sentence, not one token"
    return ExplainResult(normalize(cam), "gradcam", tokens, note, view)


def word_index(tokens: list[str], word: str | None) -> int | None:
    """The index of ``word`` among the text tokens (case-insensitive; None for the whole sentence)."""
    if word is None or word == "":
        return None
    lowered = [t.lower() for t in tokens]
    if word.lower() not in lowered:
        raise InputError(f"word {word!r} is not among the sentence's tokens: {', '.join(tokens)}")
    return lowered.index(word.lower())


def explain_pair(model: Model, image: ImageLike, text: str, *, method: str = "attention", word: str | None = None,
                 drop=None) -> dict:
    """``mmlab explain``: one map for a word (or the whole sentence) with its peak in the picture's own
    pixels, whether the pair is in the model's domain, and how far this checkpoint's maps can be
    trusted (its faithfulness record). JSON-able:
    {"peak": [x, y], "box": [x0, y0, x1, y1] (the photo model) or None, "map": (h, w) list, "method", "word",
    "tokens", "image_size": [W, H], "grid": [h, w], "in_distribution", "reason", "unknown_words", "note",
    "fidelity"}."""
    from mmlab.faithfulness import fidelity_line

    picture = load_image(image)
    tokens = model.text_encoder.token_strings(clean_text(text))
    pred = model.predict(picture, text, drop=drop)
    result = explain(model, picture, text, method, token=word_index(tokens, word), drop=drop, prediction=pred)
    x, y = result.view.peak(result.map)
    domain = pred.domain
    box = None
    if model.cfg.fusion == "concept_bridge":  # the photo model answers with a place: the region around the peak
        from mmlab.photo import box_around_peak

        box = list(box_around_peak(result.view.to_original(result.map)))
    return {"peak": [x, y], "box": box, "map": np.round(result.map, 4).tolist(), "method": result.method_used,
            "word": word,
            "tokens": tokens, "image_size": list(picture.size), "grid": list(result.map.shape),
            "in_distribution": None if domain is None else domain.in_distribution,
            "reason": "this checkpoint keeps no record of its domain" if domain is None else domain.reason,
            "unknown_words": [] if domain is None else domain.unknown_words, "label": pred.label,
            "note": result.note, "fidelity": fidelity_line(model.meta, result.method_used)}


# ---- overlays and masks -----------------------------------------------------------------
def upsample(map_hw: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (h, w) map to (size, size) (or (H, W)) for overlays."""
    m = np.asarray(map_hw, dtype=np.float32)
    if m.ndim != 2:
        raise InputError(f"map must be 2-D (h, w), got shape {m.shape}")
    out_hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(out_hw) != 2 or min(out_hw) < 1:
        raise InputError(f"size must be a positive int or (H, W), got {size!r}")
    if m.shape == out_hw:
        return m.copy()
    t = torch.from_numpy(np.ascontiguousarray(m))[None, None]  # (1, 1, h, w)
    return F.interpolate(t, size=out_hw, mode="bilinear", align_corners=False)[0, 0].numpy()


def map_to_mask(map_: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Binary mask of where the map, min-max normalised to [0, 1], is >= threshold."""
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be in [0, 1], got {threshold}")
    m = np.asarray(map_)
    if m.ndim != 2:
        raise InputError(f"map must be 2-D (h, w), got shape {m.shape}")
    return normalize(m) >= threshold


def score_map(map_: np.ndarray, gt_mask: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Threshold a map (upsampled to the mask's size first) and score it against a ground-truth
    mask (H, W): {"iou", "dice"} (``mmlab.metrics.mask_iou`` / ``mask_dice``)."""
    gt = np.asarray(gt_mask)
    if gt.ndim != 2:
        raise InputError(f"ground-truth mask must be 2-D (H, W), got shape {gt.shape}")
    pred = map_to_mask(upsample(map_, gt.shape), threshold)
    return {"iou": float(mask_iou(pred, gt > 0)[0]), "dice": float(mask_dice(pred, gt > 0)[0])}
