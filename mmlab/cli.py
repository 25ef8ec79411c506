"""Command line: ``mmlab train / eval / predict / explain / faithfulness / ablate / datasets / zoo / bench
/ app / demo``.

Every refused input prints one line ``error: ...`` and exits with status 2. JSON output is always
valid JSON (a non-finite number is written as null). Only the argparse layer is imported up front:
``mmlab --help``, ``mmlab datasets`` and ``mmlab zoo`` never load torch.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from mmlab.errors import InputError


def dumps(obj) -> str:
    """JSON of ``obj`` with numpy values as plain numbers and NaN / infinity as null (always valid JSON)."""
    def clean(v):
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):  # numpy arrays and scalars
            return clean(v.tolist())
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    return json.dumps(clean(obj), allow_nan=False)


def _emit(result: dict, args) -> None:
    if getattr(args, "json", False):
        print(dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>18}: {v if not isinstance(v, float) else round(v, 4)}")


# ---- training -------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from mmlab import experiment

    exp = experiment.from_args(args)
    out = Path(args.out or f"runs/{args.name or exp.dataset + '-' + exp.model.fusion}")
    resume_dir = out.with_name(out.name + experiment.RESUME_SUFFIX)
    if args.resume and (resume_dir / "config.json").is_file():
        epoch = json.loads((resume_dir / "config.json").read_text()).get("epoch")
        print(f"resuming {args.name or out.name} from epoch {epoch}", file=sys.stderr)
    result = experiment.run(exp, out, name=args.name or out.name, progress=not args.quiet, manifest=args.manifest,
                            resume=args.resume)
    if result.path is not None:
        print(dumps({"name": args.name or out.name, "path": str(out), "metrics": result.metrics,
                     "train_seconds": round(result.seconds, 1)}))
    return 0


# ---- scoring a checkpoint ---------------------------------------------------------------------
def _model_and_split(args):
    """The checkpoint and the split to score it on: its own dataset, with the options it was trained
    with, unless --dataset names another; --seed regenerates generated sets."""
    import mmlab
    from mmlab.data import load_dataset
    from mmlab.evaluate import experiment_of, split_of

    model = mmlab.load(args.checkpoint)
    options = _key_values(args.data_opt)
    own = experiment_of(model) if isinstance(model.meta.get("experiment"), dict) else None
    if args.dataset and (own is None or args.dataset != own.dataset):
        return model, args.dataset, load_dataset(args.dataset, args.split, seed=args.seed or 0, **options)
    if own is None:
        raise InputError("the checkpoint names no dataset: pass --dataset")
    if options:
        from dataclasses import replace

        from mmlab.experiment import load_split

        return model, own.dataset, load_split(replace(own, data_options={**own.data_options, **options}), args.split,
                                              seed=args.seed)
    return model, own.dataset, split_of(model, args.split, seed=args.seed)


def cmd_eval(args) -> int:
    import time

    from mmlab.evaluate import evaluate

    model, name, data = _model_and_split(args)
    t0 = time.perf_counter()
    metrics = evaluate(model, data, drop=args.drop)
    metrics.update({"dataset": name, "split": args.split, "seed": args.seed,
                    "drop": model.resolve_drop(args.drop) or "none", "seconds": round(time.perf_counter() - t0, 3)})
    _emit(metrics, args)
    return 0


def _domain_json(pred) -> dict:
    d = pred.domain
    if d is None:
        return {"in_distribution": None, "reason": "this checkpoint keeps no record of its domain"}
    return {"in_distribution": d.in_distribution, "reason": d.reason, "image_score": d.image_score,
            "unknown_words": d.unknown_words, "unknown_tokens": d.unknown_tokens}


def cmd_predict(args) -> int:
    import time

    import numpy as np

    import mmlab

    model = mmlab.load(args.checkpoint)
    t0 = time.perf_counter()
    pred = model.predict(args.image, args.text, drop=args.drop)
    ms = (time.perf_counter() - t0) * 1000
    out = {"label": pred.label, "probs": pred.probs, "tokens": pred.tokens, **_domain_json(pred),
           "latency_ms": round(ms, 2)}
    if pred.mask is not None:
        full = pred.view.to_original(pred.mask) >= 0.5  # on the input picture, in its own pixels
        ys, xs = np.nonzero(full)
        out["mask"] = {"area": int(full.sum()), "size": list(full.shape),
                       "bbox": [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())] if len(xs) else None}
        if args.mask_out:
            from PIL import Image

            Image.fromarray((full * 255).astype(np.uint8)).save(args.mask_out)
    if pred.attention:
        out["attention"] = {k: list(v.shape) for k, v in pred.attention.items()}
    if pred.extras:  # small side outputs only (gates, unimodal probabilities); full maps stay in Python
        out["extras"] = {k: (v if isinstance(v, (dict, str, float)) else np.asarray(v).round(4).tolist())
                         for k, v in pred.extras.items()
                         if isinstance(v, (dict, str, float)) or np.asarray(v).size <= 64}
    if args.json:
        print(dumps(out))
    else:
        if pred.domain is not None and not pred.domain.in_distribution:
            print(f"note: out of this model's domain: {pred.domain.reason}")
        print(f"{pred.label}  ({pred.probs.get(pred.label, 0):.3f})" if pred.label else "mask only")
        for k, v in out.items():
            if k not in ("label",):
                print(f"{k}: {v}")
    return 0


def cmd_explain(args) -> int:
    import mmlab
    from mmlab.explain import explain_pair

    model = mmlab.load(args.checkpoint)
    result = explain_pair(model, args.image, args.text, method=args.method, word=args.word, drop=args.drop)
    if args.json:
        print(dumps(result))
    else:
        print(f"{result['method']} of {result['word'] or 'the whole sentence'}: peak at x={result['peak'][0]}, "
              f"y={result['peak'][1]} of a {result['image_size'][0]}x{result['image_size'][1]} picture")
        print(f"in distribution: {result['in_distribution']} ({result['reason']})")
        if result.get("fidelity"):
            print(f"fidelity on this checkpoint: {result['fidelity']}")
    return 0


def cmd_faithfulness(args) -> int:
    import mmlab
    from mmlab.faithfulness import scorecard

    model = mmlab.load(args.checkpoint)
    methods = args.method.split(",") if args.method else None
    card = scorecard(model, n=args.n, seed=args.seed, methods=methods, randomization=not args.no_randomization)
    if args.json:
        print(dumps(card))
    else:
        for method, row in card["methods"].items():
            shown = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float))
            print(f"{method:<22} {shown}")
    return 0


def cmd_ablate(args) -> int:
    from mmlab.ablation import ablate, to_json

    model, name, data = _model_and_split(args)
    if args.n:
        data = data.subset(range(min(args.n, len(data))))
    found = ablate(model, data, seed=args.seed or 0)
    found.pop("samples")
    result = to_json(found)
    if not args.per_sample:
        result["decider"] = {k: v for k, v in result["decider"].items() if k in ("counts", "thresholds", "quantity")}
    if args.json:
        print(dumps(result))
    else:
        for row in result["table"]:
            print(f"{row['condition']:<22} {result['metric']} {row[result['metric']]:.4f}")
        print(f"seconds: {result['seconds']:.2f}")
    return 0


# ---- listing and serving ----------------------------------------------------------------------
def cmd_bench(args) -> int:
    from mmlab.bench import run_all

    result = run_all(quick=args.quick, only=args.only.split(",") if args.only else None, timeout=args.timeout,
                     on_start=lambda n: print(f"bench: {n}", file=sys.stderr))
    if args.json:
        print(dumps(result))
    else:
        for name in result["benchmarks"]:
            print(f"{name}: ok")
        for name, why in result["failed"].items():
            print(f"{name}: FAILED {why}")
    return 1 if result["failed"] else 0


def cmd_datasets(args) -> int:
    from mmlab.data import describe_all

    rows = describe_all()
    if args.json:
        print(dumps(rows))
    else:
        for r in rows:
            sizes = ", ".join(f"{k} {v}" for k, v in r["sizes"].items())
            print(f"{r['name']:<14} {sizes:<36} {r['description']}")
    return 0


def cmd_zoo(args) -> int:
    from mmlab import zoo

    if args.action == "plan":  # the command of every checkpoint the zoo should hold
        from mmlab.experiment import command

        have = {e["name"] for e in zoo.list_checkpoints()}
        for name, exp in zoo.plan().items():
            if not (args.missing and name in have) and (not args.only or name == args.only):
                print(command(exp, name) + " --quiet")
        return 0
    if args.action == "train":  # rebuild shipped checkpoints from the experiments in the manifest
        from mmlab.experiment import Experiment, run

        entries = zoo.read_manifest()["checkpoints"]
        if args.only:
            entries = [e for e in entries if e["name"] == args.only]
            if not entries:
                raise InputError(f"no manifest entry named {args.only!r}")
        for e in entries:
            print(f"rebuilding {e['name']}", file=sys.stderr)
            if e.get("experiment") is None:  # built, not trained: the zero-shot photo model
                from mmlab import photo

                if e["name"] != photo.NAME:
                    raise InputError(f"{e['name']} records no experiment to rebuild it from")
                photo.save()
                continue
            run(Experiment.from_json(e["experiment"]), zoo.root() / e.get("path", e["name"]), name=e["name"],
                manifest=True, progress=not args.quiet)
            if not args.no_artifacts:
                from mmlab.artifacts import build as build_artifacts

                build_artifacts(e["name"])
        return 0
    if args.action == "artifacts":  # (re)compute what the pages open on, for every checkpoint or one
        from mmlab import artifacts

        make = {"all": artifacts.build, "ablation": artifacts.refresh_ablation,
                "domain": artifacts.refresh_domain}[args.part]

        entries = [e for e in zoo.list_checkpoints() if not args.only or e["name"] == args.only]
        for e in entries:
            if e.get("experiment") is None:  # the photo model has no split to store results of
                continue
            if args.missing and args.part == "all" and artifacts.load(e["dir"]) is not None:
                continue
            print(f"artifacts ({args.part}): {e['name']}", file=sys.stderr)
            make(e["name"])
        return 0
    rows = zoo.list_checkpoints()
    if args.json:
        print(dumps(rows))
    else:
        for e in rows:
            m = ", ".join(f"{k} {v:.3f}" for k, v in e["metrics"].items() if isinstance(v, float))
            print(f"{e['name']:<40} {e.get('dataset') or '?':<12} {e.get('strategy') or '?':<30} {m}")
    return 0


def cmd_app(args) -> int:
    """The Streamlit app: this process becomes ``serve.py`` (beside app.py; the core never imports Streamlit),
    which runs the server with the background warm-up started once it answers."""
    root = Path(__file__).resolve().parent.parent
    serve = root / "serve.py"
    if not (root / "app.py").is_file() or not serve.is_file():
        raise InputError(f"app.py and serve.py not found next to the mmlab package ({root})")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, str(serve), str(args.port), args.host])  # same process id


def cmd_demo(args) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the app does (app.py); before torch is imported
    from mmlab.demo import launch

    launch(port=args.port, server_name=args.host)
    return 0


def _key_values(pairs) -> dict:
    from mmlab.experiment import _key_values as parse

    return parse(pairs, "--data-opt")


def parser() -> argparse.ArgumentParser:
    from mmlab import experiment

    p = argparse.ArgumentParser(prog="mmlab", description="Multimodal fusion lab")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and save a checkpoint (every option is a config field)")
    experiment.add_arguments(t)
    t.add_argument("--out", help="checkpoint folder (default runs/NAME)")
    t.add_argument("--name", help="the checkpoint's name (default: the folder's)")
    t.add_argument("--manifest", action="store_true", help="record the checkpoint in the manifest beside it")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    def scoring(q):
        q.add_argument("checkpoint", help="a zoo name (mmlab zoo) or a checkpoint folder")
        q.add_argument("--dataset", help="score on another dataset (default: the checkpoint's own)")
        q.add_argument("--split", default="test")
        q.add_argument("--seed", type=int, default=None, help="generator seed of a generated dataset")
        q.add_argument("--data-opt", action="append", metavar="KEY=VALUE", help="dataset option, repeatable")
        q.add_argument("--json", action="store_true")

    drop_help = "drop a modality (default: the checkpoint's own test-time drop; none: keep both)"
    e = sub.add_parser("eval", help="metrics of a checkpoint on its test split (or another)")
    scoring(e)
    e.add_argument("--drop", choices=("image", "text", "none"), default=None, help=drop_help)
    e.set_defaults(func=cmd_eval)

    pr = sub.add_parser("predict", help="predict for one image and sentence")
    pr.add_argument("checkpoint")
    pr.add_argument("--image", required=True)
    pr.add_argument("--text", required=True)
    pr.add_argument("--drop", choices=("image", "text", "none"), default=None, help=drop_help)
    pr.add_argument("--mask-out", help="write the predicted mask (on the picture's own pixels) as a PNG")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("explain", help="where a word (or the sentence) looks: a map and its peak in the picture")
    ex.add_argument("checkpoint")
    ex.add_argument("--image", required=True)
    ex.add_argument("--text", required=True)
    ex.add_argument("--word", help="one word of the sentence (default: the whole sentence)")
    ex.add_argument("--method", default="attention", choices=("attention", "rollout", "relevance", "gradcam"))
    ex.add_argument("--drop", choices=("image", "text", "none"), default=None, help=drop_help)
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=cmd_explain)

    fa = sub.add_parser("faithfulness", help="how far a checkpoint's maps can be trusted: pointing, energy, "
                                             "deletion / insertion, randomization, beside chance")
    fa.add_argument("checkpoint")
    fa.add_argument("--n", type=int, default=200, help="test scenes to score")
    fa.add_argument("--seed", type=int, default=None, help="generator seed of the scenes (default: its test split)")
    fa.add_argument("--method", help="comma-separated map methods (default: all it has)")
    fa.add_argument("--no-randomization", action="store_true", help="skip the model-randomization check")
    fa.add_argument("--json", action="store_true")
    fa.set_defaults(func=cmd_faithfulness)

    ab = sub.add_parser("ablate", help="metrics with each modality dropped or noisy, and who decided")
    scoring(ab)
    ab.add_argument("--n", type=int, default=1000, help="use the first N pairs of the split (0: all)")
    ab.add_argument("--per-sample", action="store_true", help="include the per-sample decider lists")
    ab.set_defaults(func=cmd_ablate)

    b = sub.add_parser("bench", help="run the benchmarks in bench/ and merge their JSON")
    b.add_argument("--quick", action="store_true", help="tiny sizes: checks the scripts work")
    b.add_argument("--only", help="comma-separated benchmark names")
    b.add_argument("--timeout", type=float, default=None, help="seconds per benchmark")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)

    d = sub.add_parser("datasets", help="list the datasets with their sizes")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_datasets)

    z = sub.add_parser("zoo", help="list the shipped checkpoints, rebuild them, or build their artifacts")
    z.add_argument("action", nargs="?", choices=("list", "train", "plan", "artifacts"), default="list",
                   help="list: the shipped checkpoints; train: rebuild them from their experiments (and their "
                        "artifacts); plan: the command of every checkpoint the zoo should hold; artifacts: "
                        "recompute what the pages open on")
    z.add_argument("--only", help="with train, plan or artifacts: only this checkpoint")
    z.add_argument("--missing", action="store_true", help="with plan or artifacts: only those not built yet")
    z.add_argument("--no-artifacts", action="store_true", help="with train: skip the artifacts")
    z.add_argument("--part", choices=("all", "ablation", "domain"), default="all",
                   help="with artifacts: recompute only the stored ablation or domain scores, keeping the rest")
    z.add_argument("--quiet", action="store_true")
    z.add_argument("--json", action="store_true")
    z.set_defaults(func=cmd_zoo)

    a = sub.add_parser("app", help="start the Streamlit app")
    a.add_argument("--port", type=int, default=8501)
    a.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only; "
                                                       "0.0.0.0 to serve a network, see docs/SECURITY.md)")
    a.set_defaults(func=cmd_app)

    dm = sub.add_parser("demo", help="start the one-screen Gradio demo")
    dm.add_argument("--port", type=int, default=7860)
    dm.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    dm.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # argparse: usage errors exit 2 already
        return int(e.code or 0)
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
