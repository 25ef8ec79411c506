"""The one training loop: ``fit(model, data, cfg, callbacks=...)``.

The task's differences come from the model's heads and the losses named in the config, not
from branches here. Progress goes to a tqdm bar and to callbacks (the app's progress bar,
live curves and cancel button are callbacks).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from mmlab import distributed, losses
from mmlab.config import TrainConfig
from mmlab.data.base import MMDataset
from mmlab.errors import InputError
from mmlab.fusion.base import LossTargets
from mmlab.model import Model


class Callback:
    """Hooks of the loop; return True from a hook to stop training early (cancel)."""

    def on_train_begin(self, total_steps: int) -> bool | None: ...
    def on_step(self, step: int, total_steps: int, logs: dict) -> bool | None: ...
    def on_epoch_end(self, epoch: int, logs: dict) -> bool | None: ...


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one dict per epoch: loss, val metrics
    seconds: float = 0.0
    stopped: bool = False  # True when a callback cancelled the run
    steps: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class ResumeState:
    """Where an interrupted run stands after its last finished epoch: enough to continue it exactly.

    epoch: epochs done; optimizer: AdamW's state dict; rng: every random state the loop draws from
    (``capture_rng``): torch's global generator (dropout), the batch-order generator, NumPy's and
    Python's; history / seconds: of the epochs done.
    """

    epoch: int
    optimizer: dict
    rng: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def capture_rng(batches: torch.Generator) -> dict:
    """Every random state of the loop: {"torch", "batches", "numpy", "python" (, "cuda")}."""
    state = {"torch": torch.get_rng_state(), "batches": batches.get_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, batches: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    batches.set_state(state["batches"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Prepared:
    """A dataset turned into tensors once: resized images, tokenized texts, targets, masks; or, when
    both encoders are frozen, their cached outputs (so each epoch only runs fusion and heads)."""

    def __init__(self, model: Model, data: MMDataset):
        cfg = model.cfg
        self.n = len(data)
        images = torch.from_numpy(data.images)
        if images.shape[-1] != cfg.image_size:
            images = F.interpolate(images.float(), size=(cfg.image_size, cfg.image_size), mode="bilinear",
                                   align_corners=False).round().clamp(0, 255).to(torch.uint8)
        self.images = images  # (N, 3, S, S) uint8
        self.text = model.tokenize(data.texts)  # {name: (N, T)}
        self.targets = {t: torch.from_numpy(data.targets[t]) for t in cfg.targets if t in data.targets}
        missing = [t for t in cfg.targets if t not in data.targets]
        if missing:
            raise InputError(f"dataset {data.name!r} has no target(s) {missing}; it has {sorted(data.targets)}")
        self.masks = None
        if cfg.mask:
            if data.masks is None:
                raise InputError(f"dataset {data.name!r} has no masks; train a mask model on one that has")
            masks = torch.from_numpy(data.masks)
            if masks.shape[-1] != cfg.image_size:
                masks = F.interpolate(masks[:, None].float(), size=(cfg.image_size,) * 2, mode="nearest")[:, 0]
            self.masks = masks.to(torch.uint8)  # (N, S, S)
        # frozen encoders: their backbone features are computed once per dataset and cached
        self.features: dict[str, dict[str, torch.Tensor]] = {}
        for m in ("image", "text"):
            if model.encoder(m).frozen:
                from mmlab.features import extract_cached

                self.features[m] = extract_cached(model, m, data, self)
        self._data, self._model, self._head = data, model, None

    @property
    def head(self) -> torch.Tensor | None:
        """(N,) int64: the index of each sentence's named word (``data.info["head_word"]``, the head noun)
        among the model's text tokens, -1 where it is not among them; None when the data does not say."""
        words = self._data.info.get("head_word")
        if words is None:
            return None
        if self._head is None:
            index = []
            for text, word in zip(self._data.texts, words):
                tokens = self._model.text_encoder.token_strings(text)
                index.append(tokens.index(word) if word is not None and word in tokens else -1)
            self._head = torch.tensor(index, dtype=torch.long)
        return self._head

    def inputs(self, idx: torch.Tensor) -> dict:
        """The model's inputs for the samples ``idx``: {"images", "text", "features"}."""
        out: dict = {"images": None, "text": None, "features": {}}
        for m, feats in self.features.items():
            out["features"][m] = {k: v[idx] for k, v in feats.items()}
        if "image" not in self.features:
            out["images"] = self.images[idx].float() / 255.0
        if "text" not in self.features:
            text = {k: v[idx] for k, v in self.text.items()}
            mask_key = "mask" if "mask" in text else "attention_mask" if "attention_mask" in text else None
            if mask_key:  # trim padding to the longest text of the batch
                T = int(text[mask_key].sum(1).max().clamp_min(1))
                text = {k: v[:, :T] if v.dim() == 2 else v for k, v in text.items()}
            out["text"] = text
        return out


def run_model(model: Model, inputs: dict, drop=None):
    """The model on ``Prepared.inputs``; inputs and drop masks follow a model that is not on the CPU."""
    device = distributed.model_device(model)
    if device.type != "cpu":
        inputs, drop = distributed.move(inputs, device), distributed.move(drop, device)
    return model(inputs["images"], inputs["text"], drop=drop, features=inputs["features"])


def compute_loss(model: Model, out, prepared: Prepared, idx: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """The heads' losses (classes, mask, generation, alignment) plus the fusion strategy's own (``Fusion.loss``)."""
    total = out.fusion.fused.new_zeros(())
    for t, logits in out.logits.items():
        y = prepared.targets[t][idx].to(logits.device)
        total = total + cfg.loss_weights.get(t, 1.0) * losses.cross_entropy(logits, y)
    masks = None
    if out.mask is not None:
        if cfg.mask_loss not in losses.MASK:
            raise InputError(f"unknown mask loss {cfg.mask_loss!r}; choose one of: {', '.join(losses.MASK)}")
        masks = prepared.masks[idx].to(out.mask.device)
        total = total + cfg.mask_weight * losses.MASK[cfg.mask_loss](out.mask, masks)
    if out.generated is not None:  # seed 001: CE for the caption, MSE for the image
        ids = out.generated["ids"]
        B, T = ids.shape
        lengths = (ids != 0).sum(1)  # (B,)
        target = torch.cat([ids, ids.new_zeros(B, 1)], dim=1)  # (B, T + 1): words, then the end (id 0)
        after_end = torch.arange(T + 1, device=ids.device)[None, :] > lengths[:, None]
        target = target.masked_fill(after_end, -100)  # nothing to learn past the end
        logits = out.generated["caption_logits"]
        total = total + F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
        real = prepared.images[idx].to(logits.device).float() / 255.0
        total = total + F.mse_loss(out.generated["image"], real)
    if out.contrast is not None:  # CLIP-style InfoNCE over the batch (seed 001)
        total = total + losses.info_nce(*out.contrast, model.contrastive.logit_scale)
    head = prepared.head if cfg.attention_supervision > 0 else None
    batch = LossTargets(labels={t: v[idx] for t, v in prepared.targets.items()}, primary=model.primary,
                        masks=None if prepared.masks is None else prepared.masks[idx],
                        head=None if head is None else head[idx], weights={"attention": cfg.attention_supervision})
    extra = model.fusion.loss(out.fusion, out.encoded, batch)
    if extra is not None:
        total = total + extra
    return total


def sample_drop(B: int, cfg: TrainConfig, gen: torch.Generator) -> dict[str, torch.Tensor] | None:
    """Per-sample modality dropout (seed 001, seed 003 §5.4); never both modalities of one sample."""
    if cfg.drop_image <= 0 and cfg.drop_text <= 0:
        return None
    u = torch.rand(B, generator=gen)
    image = u < cfg.drop_image
    text = (u >= cfg.drop_image) & (u < cfg.drop_image + cfg.drop_text)
    return {"image": image, "text": text}


def fit(model: Model, data: MMDataset, cfg: TrainConfig, *, val: MMDataset | None = None,
        callbacks: tuple[Callback, ...] = (), progress: bool = True, on_epoch_checkpoint=None,
        resume: ResumeState | None = None) -> FitResult:
    """Train ``model`` on ``data``. ``on_epoch_checkpoint(model, ResumeState)`` is called after every epoch
    (``mmlab.experiment.run`` writes a resumable checkpoint there); ``resume`` continues such a run
    exactly where it stopped: same batches, same dropout draws, same optimizer moments, so the result
    is the one an uninterrupted run reaches.

    Launched by torchrun (``WORLD_SIZE`` > 1), or inside a process group made beforehand, the same
    call trains data-parallel (``mmlab.distributed``): every rank draws the same permutation, takes
    ``batch[rank::world]`` of each global batch of ``cfg.batch_size`` and steps a DDP model; the
    logged loss is the global mean; only rank 0 shows progress and gets ``on_epoch_checkpoint``.
    """
    with distributed.session() as ctx:
        home = distributed.model_device(model)
        net = distributed.wrap(model, ctx)  # the model itself, or its DDP wrapper when data-parallel
        try:
            return _fit(model, net, data, cfg, ctx, val=val, callbacks=callbacks, progress=progress,
                        on_epoch_checkpoint=on_epoch_checkpoint, resume=resume)
        finally:
            distributed.unwrap(model, ctx, home)


def _fit(model: Model, net: torch.nn.Module, data: MMDataset, cfg: TrainConfig, ctx: distributed.Context, *,
         val, callbacks, progress, on_epoch_checkpoint, resume: ResumeState | None) -> FitResult:
    from tqdm.auto import tqdm

    from mmlab.evaluate import evaluate

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    if cfg.max_train:
        data = data.subset(np.arange(min(cfg.max_train, len(data))))
    prepared = Prepared(model, data)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch = resume.epoch if resume is not None else 0
    if resume is not None:
        opt.load_state_dict(resume.optimizer)
    steps_per_epoch = math.ceil(prepared.n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs

    def lr_at(step: int) -> float:  # linear warm-up, then cosine to 5 %
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    offset = start_epoch * steps_per_epoch  # a resumed run continues the schedule where it stopped
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s + offset))
    gen = torch.Generator().manual_seed(cfg.seed)  # batch order and modality-dropout draws
    if resume is not None:  # every random state as it was after the last finished epoch
        restore_rng(resume.rng, gen)
    result = FitResult(history=list(resume.history) if resume is not None else [])
    t0 = time.perf_counter()
    if ctx.any(any(cb.on_train_begin(total) for cb in callbacks)):
        result.stopped = True
        return result
    bar = tqdm(total=total, initial=start_epoch * steps_per_epoch, disable=not progress or not ctx.is_main,
               desc="train", leave=False)
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = torch.randperm(prepared.n, generator=gen)
        running, seen = 0.0, 0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if len(idx) < max(2, ctx.world):
                continue
            drop = sample_drop(len(idx), cfg, gen)
            scale = 1.0
            if ctx.active:  # this rank's share of the global batch (the same draws on every rank)
                idx, drop, scale = ctx.shard(idx, drop)
            out = run_model(net, prepared.inputs(idx), drop)
            loss = compute_loss(model, out, prepared, idx, cfg)
            opt.zero_grad(set_to_none=True)
            (loss * scale if ctx.active else loss).backward()  # DDP averages the ranks' gradients
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            step += 1
            step_loss, n = float(loss.detach()), len(idx)
            if ctx.active:  # the global batch's mean loss, as a single process would log it
                loss_sum, n = ctx.all_sum([step_loss * n, n])
                step_loss, n = loss_sum / n, int(n)
            running += step_loss * n
            seen += n
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{running / seen:.4f}")
            if ctx.any(any(cb.on_step(step, total, {"loss": step_loss, "epoch": epoch}) for cb in callbacks)):
                result.stopped = True
                break
        ctx.sync_buffers(model)  # data-parallel: every rank ends the epoch with rank 0's model
        earlier = resume.seconds if resume is not None else 0.0
        logs = {"epoch": epoch + 1, "loss": running / max(seen, 1), "seconds": earlier + time.perf_counter() - t0}
        if val is not None and not result.stopped:
            logs.update({f"val_{k}": v for k, v in evaluate(model, val).items() if isinstance(v, float)})
        result.history.append(logs)
        if on_epoch_checkpoint is not None and not result.stopped and ctx.is_main:
            on_epoch_checkpoint(model, ResumeState(epoch + 1, opt.state_dict(), capture_rng(gen), list(result.history),
                                                   logs["seconds"]))
        if result.stopped or ctx.any(any(cb.on_epoch_end(epoch + 1, logs) for cb in callbacks)):
            result.stopped = True
            break
    bar.close()
    model.eval()
    result.seconds = (resume.seconds if resume is not None else 0.0) + time.perf_counter() - t0
    result.steps = step
    return result
