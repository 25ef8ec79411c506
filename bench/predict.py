"""predict with attention maps, per strategy: p50 / p95 ms for one (image, sentence) pair, warm.

For every strategy of the registry: its shipped checkpoint when the zoo has one (the mask
model when there is one, the heaviest case: 64 px and a mask decoder; else the first entry with
that strategy), else an untrained shapes model of the zoo's config; which one is
reported as "source". One test pair of the model's dataset is predicted ``--warmup`` times,
then timed ``--reps`` times: ``Model.predict`` end to end (validate and resize the image, clean
and tokenize the sentence, encoders, fusion, heads, softmax, mask, attention maps reshaped to
the patch grid, embeddings), under ``torch.inference_mode``. Target (issue 7): p95 <= 50 ms.

    python bench/predict.py [--quick] [--strategies concat,cross_attention] [--reps 200]
"""
from __future__ import annotations

import time

import _common as C


def bench_strategy(strategy: str, entries: list[dict], args, device) -> dict:
    import numpy as np

    mine = [e for e in entries if e.get("strategy") == strategy]
    entry = next((e for e in mine if e.get("task") == "mask"), mine[0] if mine else None)
    t0 = time.perf_counter()
    if entry is not None:
        model, source = C.load_entry(entry), f"checkpoint {entry['name']}"
    else:
        model, source = C.untrained(strategy, dim=32 if args.quick else 64)
    load_s = time.perf_counter() - t0
    model = C.on_device(model.eval(), device)
    name, options = C.model_dataset(model, entry)
    data = C.test_split(name, 4, options)
    image, text = np.ascontiguousarray(data.images[0].transpose(1, 2, 0)), data.texts[0]  # (S, S, 3) uint8
    first_s, pred = C.with_amp_fallback(lambda: C.timed(lambda: C.predict_pair(model, image, text, device), device),
                                        device)
    for _ in range(args.warmup):
        C.predict_pair(model, image, text, device)
    times = [C.timed(lambda: C.predict_pair(model, image, text, device), device)[0] for _ in range(args.reps)]
    row = {"strategy": strategy, "source": source, "trained": entry is not None, "dataset": name,
           "encoders": {"image": model.cfg.image_encoder, "text": model.cfg.text_encoder}, "dim": model.cfg.dim,
           "parameters": model.num_parameters(), "load_seconds": C.rounded(load_s),
           "first_call_ms": round(first_s * 1000, 3), **C.summary_ms(times),
           "attention": {k: list(v.shape) for k, v in (pred.attention or {}).items()} or None,
           "mask": pred.mask is not None}
    row["meets_target_p95_50ms"] = row["p95_ms"] <= 50.0
    return row


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--strategies", help="comma-separated (default: every registered strategy; 2 with --quick)")
    p.add_argument("--reps", type=int, default=None, help="timed calls per strategy (default 200; 5 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 20; 2 with --quick)")
    args = p.parse_args()
    device = C.setup(args)
    from mmlab import fusion

    args.reps = args.reps or (5 if args.quick else 200)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 20)
    strategies = args.strategies.split(",") if args.strategies else (
        ["concat", "cross_attention"] if args.quick else fusion.trainable())
    entries = C.zoo_entries()
    rows = []
    for s in strategies:
        C.log(f"predict: {s}")
        rows.append({"strategy": s, **C.run_guarded(lambda: bench_strategy(s, entries, args, device))})
    C.emit("predict", args, device, {
        "what": "Model.predict for one pair with attention maps, warm, torch.inference_mode",
        "zoo": C.zoo_root(), "reps": args.reps, "warmup": args.warmup, "target_p95_ms": 50.0,
        "strategies": rows,
    })


if __name__ == "__main__":
    main()
