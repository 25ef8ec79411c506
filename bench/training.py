"""Training: seconds to reach IoU 0.90 on shapes masks with cross-attention (issue 7 target:
<= 3 min of CPU), and training samples per second per strategy on shapes classification.

time_to_iou: the zoo's model for ``shapes-mask-cross_attention`` (SmallCNN + BiGRU, dim 64,
batch 64, lr 2e-3) with a cosine schedule of ``--epochs`` (default 12; the shipped checkpoint
trains 16) on the 4,000 training scenes; after every epoch the mask
IoU on the 500 validation scenes (threshold 0.5, as ``mmlab.evaluate``); it stops at the first
epoch with IoU >= ``--target`` or when ``--max-seconds`` have passed. Reported: wall seconds to
that epoch, of which training (validation apart) and data preparation before the first step.

throughput: for every registered strategy, one epoch of ``fit`` on ``--samples`` training scenes
(label head only, dim 64, batch 64); samples per second from the third step on (steady state),
and over the whole epoch.

    python bench/training.py [--quick] [--skip-iou] [--skip-throughput] [--strategies a,b]
                             [--target 0.9] [--max-seconds 900] [--samples 2048]
"""
from __future__ import annotations

import contextlib
import time

import _common as C
from mmlab.train import Callback


class StopAtIoU(Callback):
    """fit callback: validation IoU after each epoch; stop at ``target`` or after ``cap`` seconds."""

    def __init__(self, model, val, device, *, target: float, cap: float):
        self.model, self.val, self.device, self.target, self.cap = model, val, device, target, cap
        self.epochs: list[dict] = []
        self.hit: dict | None = None
        self.prepared = None

    def on_train_begin(self, total_steps: int):
        self.t0, self.val_seconds = time.perf_counter(), 0.0

    def on_epoch_end(self, epoch: int, logs: dict):
        C.sync(self.device)
        t = time.perf_counter()
        iou = self.val_iou()
        now = time.perf_counter()
        self.val_seconds += now - t
        row = {"epoch": epoch, "val_iou": round(iou, 4), "loss": round(logs["loss"], 4),
               "wall_seconds": C.rounded(now - self.t0), "train_seconds": C.rounded(now - self.t0 - self.val_seconds)}
        self.epochs.append(row)
        C.log(f"training: epoch {epoch} val IoU {iou:.3f} after {row['wall_seconds']:.0f} s")
        if iou >= self.target:
            self.hit = row
            return True
        return now - self.t0 > self.cap

    def val_iou(self) -> float:
        """Mean IoU of (sigmoid(mask logits) >= 0.5) on the validation split, on the model's device."""
        import numpy as np
        import torch

        from mmlab import metrics
        from mmlab.train import Prepared, run_model

        was = self.model.training
        self.model.eval()
        if self.prepared is None:
            self.prepared = Prepared(self.model, self.val)
        p, ious = self.prepared, []
        with torch.inference_mode():
            for s in range(0, p.n, 256):
                idx = torch.arange(s, min(s + 256, p.n))
                out = run_model(self.model, p.inputs(idx))
                pred = (torch.sigmoid(out.mask.float()) >= 0.5).cpu().numpy()
                ious.append(metrics.mask_iou(pred, p.masks[idx].numpy()))
        self.model.train(was)
        return float(np.concatenate(ious).mean())


def _shapes_model(fusion: str, train, *, dim: int, mask: bool):
    import torch

    from mmlab.config import ModelConfig
    from mmlab.data.tokenizer import WordTokenizer
    from mmlab.model import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(fusion=fusion, targets={"label": C.SHAPES_CLASSES}, mask=mask, dim=dim),
                 classes={"label": train.classes["label"]}, tokenizer=WordTokenizer.fit(train.texts).to_json())


def _fit(model, data, cfg, device, amp: bool, callbacks=()):
    from mmlab.train import fit

    model = C.on_device(model, device)

    def run():
        with (C.amp(device) if amp else contextlib.nullcontext()):
            return fit(model, data, cfg, callbacks=callbacks, progress=False)

    return C.with_amp_fallback(run, device)


def time_to_iou(args, device) -> dict:
    from mmlab.config import TrainConfig
    from mmlab.data import load_dataset

    n_train, n_val = (256, 64) if args.quick else (None, None)
    train = load_dataset("shapes", "train", n=n_train)
    val = load_dataset("shapes", "val", n=n_val)
    dim = 32 if args.quick else 64
    model = _shapes_model("cross_attention", train, dim=dim, mask=True)
    cfg = TrainConfig(epochs=1 if args.quick else args.epochs, batch_size=64, lr=2e-3, seed=0)
    stop = StopAtIoU(model, val, device, target=args.target, cap=args.max_seconds)
    t0 = time.perf_counter()
    result = _fit(model, train, cfg, device, args.amp, callbacks=(stop,))
    total = time.perf_counter() - t0
    first_step = stop.t0 - t0  # Prepared (resize, tokenize) before the first step
    best = max((e["val_iou"] for e in stop.epochs), default=None)
    return {"strategy": "cross_attention", "dim": dim, "train_samples": len(train), "val_samples": len(val),
            "recipe": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr},
            "target_iou": args.target, "reached": stop.hit is not None,
            "seconds": stop.hit["wall_seconds"] if stop.hit else None,
            "train_seconds": stop.hit["train_seconds"] if stop.hit else None,
            "epochs_to_target": stop.hit["epoch"] if stop.hit else None,
            "best_val_iou": best, "prepare_seconds": C.rounded(first_step), "total_seconds": C.rounded(total),
            "stopped_by_cap": stop.hit is None and result.stopped, "max_seconds": args.max_seconds,
            "target_seconds": 180.0,
            "meets_target": bool(stop.hit and stop.hit["wall_seconds"] <= 180.0), "epochs": stop.epochs}


class StepClock(Callback):
    """fit callback: time from the end of step ``skip`` to the last step (steady-state throughput)."""

    def __init__(self, device, skip: int = 2):
        self.device, self.skip, self.t_skip, self.t_end, self.steps = device, skip, None, None, 0

    def on_step(self, step, total_steps, logs):
        C.sync(self.device)
        self.steps = step
        if step == self.skip:
            self.t_skip = time.perf_counter()
        self.t_end = time.perf_counter()


def throughput(strategy: str, args, device) -> dict:
    from mmlab.config import TrainConfig
    from mmlab.data import load_dataset

    batch = 32 if args.quick else 64
    train = load_dataset("shapes", "train", n=args.samples)
    model = _shapes_model(strategy, train, dim=32 if args.quick else 64, mask=False)
    clock = StepClock(device)
    result = _fit(model, train, TrainConfig(epochs=1, batch_size=batch, seed=0, warmup_steps=5), device, args.amp,
                  callbacks=(clock,))
    steady = None
    if clock.t_skip is not None and clock.steps > clock.skip:
        samples = min(len(train), clock.steps * batch) - clock.skip * batch
        steady = samples / max(clock.t_end - clock.t_skip, 1e-9)
    return {"strategy": strategy, "samples": len(train), "batch_size": batch, "steps": result.steps,
            "parameters": model.num_parameters(),
            "samples_per_second": None if steady is None else round(steady, 1),
            "epoch_samples_per_second": round(len(train) / max(result.seconds, 1e-9), 1),
            "epoch_seconds": C.rounded(result.seconds)}


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--skip-iou", action="store_true", help="skip the time-to-IoU run")
    p.add_argument("--skip-throughput", action="store_true", help="skip the samples/second runs")
    p.add_argument("--strategies", help="comma-separated (default: every registered strategy; 2 with --quick)")
    p.add_argument("--target", type=float, default=0.90, help="validation IoU to reach")
    p.add_argument("--epochs", type=int, default=12,
                   help="length of the cosine schedule (default 12; the run stops at the target IoU, on this CPU "
                        "in epoch 7 at ~100 s; a 6-epoch schedule decays too early and ends at 0.87; the shipped "
                        "checkpoint trains 16)")
    p.add_argument("--max-seconds", type=float, default=None, help="cap of the time-to-IoU run (default 900)")
    p.add_argument("--samples", type=int, default=None, help="training scenes per throughput run (default 2048)")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no bf16 autocast on CUDA")
    args = p.parse_args()
    args.max_seconds = args.max_seconds or (60.0 if args.quick else 900.0)
    args.samples = args.samples or (128 if args.quick else 2048)
    device = C.setup(args)
    from mmlab import fusion

    out: dict = {"what": "seconds to validation IoU 0.90 (shapes masks, cross-attention); training samples per "
                         "second per strategy (shapes classification)"}
    if not args.skip_iou:
        C.log("training: time to IoU")
        out["time_to_iou"] = C.run_guarded(lambda: time_to_iou(args, device))
    if not args.skip_throughput:
        strategies = args.strategies.split(",") if args.strategies else (
            ["concat", "cross_attention"] if args.quick else fusion.trainable())
        rows = []
        for s in strategies:
            C.log(f"training: throughput of {s}")
            rows.append({"strategy": s, **C.run_guarded(lambda: throughput(s, args, device))})
        out["throughput"] = rows
    C.emit("training", args, device, out)


if __name__ == "__main__":
    main()
