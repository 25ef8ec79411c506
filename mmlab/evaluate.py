"""Metrics of a model on a dataset split, with any modality dropped the same way for every strategy."""
from __future__ import annotations

import collections
import copy as _copy
import threading
import weakref

import numpy as np
import torch

from mmlab import metrics
from mmlab.data.base import MMDataset
from mmlab.fusion.base import without_maps
from mmlab.model import Model

RETRIEVAL_POOL = 1000  # image<->text retrieval is scored among this many test pairs
BATCH = 128  # pairs per batch when scoring a split: on 2 cores, 1.2-1.3x faster than 256 (the maps fit the caches)


def bf16_supported() -> bool:
    """Whether this machine runs bfloat16 natively (CUDA, or a CPU with AMX / AVX512-BF16): where a bfloat16
    copy pays."""
    if torch.cuda.is_available():
        return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def batches(n: int, size: int) -> list[torch.Tensor]:
    """Indices of ``n`` samples in batches of at most ``size``, as equal as they can be (1,000 in 128s: eight of
    125, not seven of 128 and one of 104), so the kernels oneDNN builds for the first batch's shape serve all."""
    count = max(1, -(-n // max(1, size)))
    return [idx for idx in torch.arange(n).tensor_split(count) if len(idx)]


_FAST: "weakref.WeakKeyDictionary[Model, tuple[tuple, Model]]" = weakref.WeakKeyDictionary()
_FAST_LOCK = threading.Lock()


def fast_model(model: Model) -> Model:
    """The model to score a whole split with when a page waits on it: for a mask model, a bfloat16 copy where the
    machine runs bfloat16 natively (``bf16_supported``); else ``model`` itself. Kept per model and remade when its
    weights change. The copy's batch norms are folded into its convolutions and its decoder's last stage runs at
    half size (both exact). Measured on the shipped zoo (``bench/compare_all.py --fast``, this project's AMX CPU):
    the mask group's 1,000 pairs take about half the time (4.6-5.0 s against 9.2-10.3 s) and no test metric of a
    mask model moves by more than 3e-4 (an ablation's, up to 3e-3: the transformer's); a weak classifier's
    accuracy moved by up to 0.008 (macro-F1 0.02), and classifiers take at most 2.9 s a group in float32, so
    they stay in float32. The shipped metrics and ``mmlab eval`` are float32."""
    if not model.cfg.mask or not bf16_supported() or model.float_dtype != torch.float32:
        return model
    stamp = tuple((p.data_ptr(), p._version) for p in model.parameters())
    with _FAST_LOCK:
        kept = _FAST.get(model)
        if kept is None or kept[0] != stamp:
            with model._lock:
                copy = _copy.deepcopy(model).eval()
            if copy.mask_head is not None:  # its last stage at half size: no full-size map but the mask
                copy.mask_head.fold_last_stage()
            kept = _FAST[model] = (stamp, _fold_batch_norms(copy).to(torch.bfloat16))
        return kept[1]


def _fold_batch_norms(model: Model) -> Model:
    """Each convolution followed by a BatchNorm (in one ``nn.Sequential``) becomes one convolution with the
    norm's scale and shift in its weights, exact in eval mode (the CNN encoder's four blocks): one pass less
    over every feature map. For an inference copy only: its submodules change, its weights are not saved."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in list(model.modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, norm = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
                seq._modules[a], seq._modules[b] = fuse_conv_bn_eval(conv, norm), nn.Identity()
    return model


@torch.inference_mode()
@without_maps()  # a whole split: no attention maps built only to be thrown away
def predict_dataset(model: Model, data: MMDataset, *, drop=None, batch_size: int = BATCH, prepared=None,
                    fast: bool = False) -> dict:
    """Run the model over a split. Returns {"probs": {target: (N, C)}, "mask": (N, S, S) probs or None,
    "embeddings": {"image","text","fused": (N, D)}}. ``drop``: "image" | "text" | "none", or None for the
    checkpoint's own test-time drop (``Model.resolve_drop``), or {modality: (N,) bool} per sample.
    ``fast``: run ``fast_model(model)`` (a mask model in bfloat16 where the machine has it), for a page waiting."""
    from mmlab.train import Prepared, run_model

    if not isinstance(drop, dict):
        drop = model.resolve_drop(drop)
    model.eval()
    prepared = prepared or Prepared(model, data)
    if fast:
        model = fast_model(model)
    probs: dict[str, list] = {t: [] for t in model.cfg.targets}
    masks, emb, contrast = [], {"image": [], "text": [], "fused": []}, {"image": [], "text": []}
    captions, generated_images = [], []
    for idx in batches(prepared.n, batch_size):
        out = run_model(model, prepared.inputs(idx), {k: v[idx] for k, v in drop.items()} if isinstance(drop, dict)
                        else drop)
        for t, logit in out.logits.items():
            probs[t].append(logit.softmax(-1).float())
        if out.mask is not None:
            masks.append(torch.sigmoid(out.mask).float())
        if out.generated is not None:
            generated_images.append(out.generated["image"].float())
            captions.extend(model.caption_decoder.generate(out.encoded["image"].pooled).tolist())
        if out.contrast is not None:
            contrast["image"].append(out.contrast[0].float())
            contrast["text"].append(out.contrast[1].float())
        emb["image"].append(out.encoded["image"].pooled.float())
        emb["text"].append(out.encoded["text"].pooled.float())
        emb["fused"].append(out.fusion.fused.float())
    return {
        "probs": {t: torch.cat(v).cpu().numpy() for t, v in probs.items() if v},
        "mask": torch.cat(masks).cpu().numpy() if masks else None,
        "embeddings": {k: torch.cat(v).cpu().numpy() for k, v in emb.items()},
        "contrast": {k: torch.cat(v).cpu().numpy() for k, v in contrast.items()} if contrast["image"] else None,
        "generated": {"captions": captions, "images": torch.cat(generated_images).cpu().numpy()}
        if generated_images else None,
        "prepared": prepared,
    }


def score(model: Model, data: MMDataset, outputs: dict, *, threshold: float = 0.5) -> dict:
    """Metrics from ``predict_dataset`` outputs: accuracy and macro-F1 per target, IoU / Dice of masks."""
    result: dict[str, float | int] = {"n": len(data)}
    for t, p in outputs["probs"].items():
        pred, y = p.argmax(1), data.targets[t]
        prefix = "" if t == model.primary else f"{t}_"
        result[f"{prefix}accuracy"] = metrics.accuracy(pred, y)
        result[f"{prefix}macro_f1"] = metrics.macro_f1(pred, y, num_classes=p.shape[1])
    if outputs.get("contrast") is not None:  # retrieval within the first RETRIEVAL_POOL pairs
        n = min(len(data), RETRIEVAL_POOL)
        sim = outputs["contrast"]["image"][:n] @ outputs["contrast"]["text"][:n].T  # (n, n) cosine
        for k in (1, 5):
            result[f"i2t_recall@{k}"] = metrics.recall_at_k(sim, k)
            result[f"t2i_recall@{k}"] = metrics.recall_at_k(sim.T, k)
    if outputs.get("generated") is not None:  # seed 001: BLEU of captions, SSIM of images
        vocab = model.text_encoder.tokenizer.vocab
        hyps = [[vocab[i] for i in row[: row.index(0) if 0 in row else len(row)]]
                for row in outputs["generated"]["captions"]]
        refs = [model.text_encoder.tokenizer.tokens(t) for t in data.texts]
        result["bleu"] = metrics.bleu(refs, hyps)
        result["ssim"] = metrics.ssim(outputs["generated"]["images"],
                                      outputs["prepared"].images.float().numpy() / 255.0)
    if outputs["mask"] is not None:
        target = outputs["prepared"].masks.numpy()
        pred = outputs["mask"] >= threshold
        result["iou"] = float(metrics.mask_iou(pred, target).mean())
        result["dice"] = float(metrics.mask_dice(pred, target).mean())
    return result


def evaluate(model: Model, data: MMDataset, *, drop=None, batch_size: int = BATCH) -> dict:
    """Metrics of ``model`` on ``data``; ``drop`` as in ``predict_dataset`` (default: the checkpoint's own)."""
    return score(model, data, predict_dataset(model, data, drop=drop, batch_size=batch_size))


def score_mask(probs: np.ndarray, truth: np.ndarray, *, threshold: float = 0.5) -> dict[str, float]:
    """One predicted mask against its truth, the way every page scores it: probabilities (S, S) over the
    model's input, truth (H, W) {0, 1} at any size (resized to (S, S), nearest) -> {"iou", "dice"}."""
    p = np.asarray(probs) >= threshold
    t = np.asarray(truth) > 0
    if t.shape != p.shape:
        from mmlab.viz import resize_map

        t = resize_map(t.astype(np.float32), p.shape, smooth=False) > 0.5
    return {"iou": float(metrics.mask_iou(p, t)[0]), "dice": float(metrics.mask_dice(p, t)[0])}


def experiment_of(model: Model):
    """The ``Experiment`` a loaded checkpoint was trained with (``InputError`` when it does not say)."""
    from mmlab.errors import InputError
    from mmlab.experiment import Experiment

    data = (model.meta or {}).get("experiment")
    if not isinstance(data, dict):
        raise InputError("this model does not record the experiment that made it (not a saved checkpoint?)")
    try:
        return Experiment.from_json(data)
    except (TypeError, ValueError) as e:
        raise InputError(f"the checkpoint's experiment record is malformed ({e})") from None


def split_of(model: Model, split: str = "test", *, n: int | None = None, seed: int | None = None) -> MMDataset:
    """The split of the dataset a checkpoint was trained on, with the options it was trained with (image
    noise, caption noise, ...): the data its metrics describe. ``seed``: another generator seed."""
    from mmlab.experiment import load_split

    return load_split(experiment_of(model), split, n=n, seed=seed)


_SHARED: "collections.OrderedDict[str, MMDataset]" = collections.OrderedDict()
_SHARED_LOCK = threading.Lock()
SHARED_SPLITS = 24


def shared_split(model: Model, split: str = "test") -> MMDataset:
    """``split_of(model, split)`` kept for the process (the last ``SHARED_SPLITS``, keyed by the data's
    description, so checkpoints of one dataset share one copy): the app's warm-up generates the default
    checkpoints' splits before anyone asks, and its pages read the same objects. Treat it as read-only."""
    import json

    exp = experiment_of(model)
    key = json.dumps([exp.dataset, exp.data_seed, exp.data_options, split], sort_keys=True, default=str)
    with _SHARED_LOCK:  # a page asking while the warm-up generates waits for it rather than doing it twice
        if key in _SHARED:
            _SHARED.move_to_end(key)
            return _SHARED[key]
        data = split_of(model, split)
        _SHARED[key] = data
        while len(_SHARED) > SHARED_SPLITS:
            _SHARED.popitem(last=False)
        return data


def evaluate_checkpoint(model: Model, *, split: str = "test", n: int | None = None, seed: int | None = None,
                        drop=None) -> dict:
    """``evaluate`` on the checkpoint's own split (``split_of``): what ``mmlab eval`` and Compare show."""
    return evaluate(model, split_of(model, split, n=n, seed=seed), drop=drop)


def first_pairs_scores(model: Model, n: int, *, fast: bool = True) -> dict:
    """``score`` on the first ``n`` pairs of the checkpoint's own test split (``shared_split``), scored live:
    what Compare shows for a checkpoint without stored results. ``fast``: ``fast_model`` (a mask model in
    bfloat16 where the machine has it)."""
    data = shared_split(model, "test")
    data = data.subset(range(min(max(1, int(n)), len(data))))
    return score(model, data, predict_dataset(model, data, fast=fast))
