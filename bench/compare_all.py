"""Compare-all: every zoo checkpoint over 1,000 test pairs, seconds (issue 7 target: <= 5 s).

The target is read per group (dataset · task), the set the Compare page lines up side by side:
``groups`` holds each group's totals, ``total`` the whole zoo's.

Each checkpoint runs ``mmlab.evaluate.predict_dataset`` (batched, ``torch.inference_mode``) over
the first ``--pairs`` pairs of its dataset's test split, three ways:

- cold: the first call in this process (``Prepared``: resize, tokenize, and for frozen encoders
  their features from the on-disk cache, or computed when the cache is empty);
- warm: a second call (frozen features now come from the in-memory cache);
- prepared: a third call reusing the ``Prepared`` of the first (pure batched inference, what a
  page that keeps its prepared split pays).

Loading the checkpoints and the data is timed apart. With an empty zoo, untrained shapes models
of every registered strategy stand in (reported as such). ``--fast`` runs ``predict_dataset(fast=True)``
(a mask model's bfloat16 inference copy where the CPU runs it natively; cold includes making the copy) and reports how far each
checkpoint's metrics moved from float32; ``--group`` keeps the groups whose name contains it.

    python bench/compare_all.py [--quick] [--pairs 1000] [--batch-size 128] [--fresh-cache] [--fast] [--group masks]
"""
from __future__ import annotations

import os
import tempfile
import time

import _common as C


def _models(args) -> list[tuple[str, object, dict | None, str]]:
    """[(name, model, entry or None, source)], loaded (timed by the caller)."""
    from mmlab import fusion

    entries = C.zoo_entries()
    if args.group:
        from mmlab.ui_state import zoo_groups

        entries = [e for e in entries if any(args.group in g for g in zoo_groups([e]))]
    if args.quick:
        entries = entries[:2]
    if entries:
        return [(e["name"], C.load_entry(e), e, f"checkpoint {e['name']}") for e in entries]
    strategies = ["concat", "cross_attention"] if args.quick else fusion.trainable()
    out = []
    for s in strategies:
        model, source = C.untrained(s, dim=32 if args.quick else 64)
        out.append((f"untrained-{s}", model, None, source))
    return out


def _predict(model, data, device, batch_size: int, prepared=None, fast: bool = False):
    from mmlab.evaluate import predict_dataset

    with C.amp(device):
        return C.timed(lambda: predict_dataset(model, data, batch_size=batch_size, prepared=prepared, fast=fast),
                       device)


def _moved(model, data, fast_out, batch_size: int) -> float:
    """The largest change of any metric from the float32 run to the ``fast`` one."""
    from mmlab.evaluate import predict_dataset, score

    exact = score(model, data, predict_dataset(model, data, batch_size=batch_size, prepared=fast_out["prepared"]))
    quick = score(model, data, fast_out)
    return max((abs(v - exact[k]) for k, v in quick.items() if isinstance(v, float) and k in exact), default=0.0)


def bench_one(name: str, model, entry, source: str, args, device, datasets: dict) -> dict:
    import torch

    key_name, options = C.model_dataset(model, entry)
    key = (key_name, tuple(sorted(options.items())))
    t0 = time.perf_counter()
    if key not in datasets:
        datasets[key] = C.test_split(key_name, args.pairs, options)
    data, data_s = datasets[key], time.perf_counter() - t0
    run_on = device
    note = None
    model = C.on_device(model.eval(), device)
    try:
        cold_s, out = _predict(model, data, device, args.batch_size, fast=args.fast)
    except (RuntimeError, TypeError) as e:  # predict_dataset returns numpy: CUDA tensors need .cpu() there
        if device.type == "cpu":
            raise
        note = f"ran on CPU: predict_dataset failed on {device} ({type(e).__name__}: {str(e)[:160]})"
        run_on = torch.device("cpu")
        model = model.cpu()
        cold_s, out = _predict(model, data, run_on, args.batch_size, fast=args.fast)
    warm_s, _ = _predict(model, data, run_on, args.batch_size, fast=args.fast)
    reuse_s, _ = _predict(model, data, run_on, args.batch_size, prepared=out["prepared"], fast=args.fast)
    from mmlab.ui_state import zoo_groups

    group = next(iter(zoo_groups([entry or {"dataset": key_name, "task": "mask" if model.cfg.mask else "classify"}])))
    row = {"name": name, "source": source, "strategy": model.cfg.fusion, "dataset": key_name, "group": group,
           "encoders": {"image": model.cfg.image_encoder, "text": model.cfg.text_encoder},
           "pairs": len(data), "data_seconds": C.rounded(data_s), "cold_seconds": C.rounded(cold_s),
           "warm_seconds": C.rounded(warm_s), "prepared_seconds": C.rounded(reuse_s), "device": str(run_on)}
    if args.fast:
        row["largest_metric_change_from_fast"] = C.rounded(_moved(model, data, out, args.batch_size))
    if note:
        row["note"] = note
    return row


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=None, help="test pairs per checkpoint (default 1000; 64 with --quick)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--fast", action="store_true", help="predict_dataset(fast=True): a mask model in bfloat16 where the CPU runs it")
    p.add_argument("--group", help="only the groups (dataset · task) whose name contains this, e.g. 'masks'")
    p.add_argument("--fresh-cache", action="store_true",
                   help="point MMLAB_CACHE at an empty folder, so cold includes computing frozen features")
    args = p.parse_args()
    args.pairs = args.pairs or (64 if args.quick else 1000)
    if args.fresh_cache:
        os.environ["MMLAB_CACHE"] = tempfile.mkdtemp(prefix="mmlab-bench-cache-")
    device = C.setup(args)
    t0 = time.perf_counter()
    models = _models(args)
    load_s = time.perf_counter() - t0
    rows, datasets = [], {}
    for name, model, entry, source in models:
        C.log(f"compare_all: {name}")
        rows.append({"name": name, **C.run_guarded(
            lambda: bench_one(name, model, entry, source, args, device, datasets))})
    ok = [r for r in rows if "error" not in r]
    totals = {k: C.rounded(sum(r[k] for r in ok)) for k in ("cold_seconds", "warm_seconds", "prepared_seconds",
                                                              "data_seconds")}
    groups: dict[str, dict] = {}  # the Compare page lines up one group (dataset · task) at a time
    for r in ok:
        g = groups.setdefault(r["group"], {"checkpoints": 0, "cold_seconds": 0.0, "warm_seconds": 0.0,
                                           "prepared_seconds": 0.0})
        g["checkpoints"] += 1
        for k in ("cold_seconds", "warm_seconds", "prepared_seconds"):
            g[k] = C.rounded(g[k] + r[k])
    for g in groups.values():
        g["meets_target"] = g["warm_seconds"] <= 5.0
    C.emit("compare_all", args, device, {
        "what": "predict_dataset of every zoo checkpoint over the first N test pairs of its dataset",
        "zoo": C.zoo_root(), "cache": os.environ.get("MMLAB_CACHE", "~/.cache/mmlab"),
        "pairs": args.pairs, "batch_size": args.batch_size, "fast": args.fast, "group_filter": args.group,
        "checkpoints": len(models),
        "trained": any(e is not None for _, _, e, _ in models), "load_seconds": C.rounded(load_s),
        "total": totals, "target_seconds": 5.0, "groups": groups,
        "meets_target_every_group": bool(ok) and all(g["meets_target"] for g in groups.values()), "models": rows,
    })


if __name__ == "__main__":
    main()
