"""Command line: ``mmlab train / eval / predict / datasets / zoo / app / demo``.

Every refused input prints one line ``error: ...`` and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from mmlab.errors import InputError

TASKS = ("classify", "mask", "multitask", "contrastive", "generate")


def data_options(pairs: list[str] | None) -> dict:
    """``--data-opt key=value`` pairs to loader options (numbers parsed, the rest kept as text)."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise InputError(f"--data-opt takes key=value, got {pair!r}")
        k, v = pair.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def _resolve(ckpt: str):
    from mmlab import zoo

    return zoo.load_model(ckpt)


def build_for_training(args):
    """Model + train config + data from CLI arguments (also used by ``mmlab zoo train``)."""
    from mmlab.config import ModelConfig, TrainConfig
    from mmlab.data import load_dataset
    from mmlab.data.tokenizer import WordTokenizer
    from mmlab.model import Model

    opts = data_options(args.data_opt)
    train = load_dataset(args.dataset, "train", seed=args.data_seed, **opts)
    val = load_dataset(args.dataset, "val", seed=args.data_seed, **opts) if args.val else None
    if args.task == "multitask":
        names = [t.strip() for t in (args.targets or "").split(",") if t.strip()]
        if not names:
            raise InputError("--task multitask needs --targets, e.g. --targets shape,colour")
    elif args.task in ("contrastive", "generate"):
        names = []  # alignment / generation only: no classifier head
    else:
        names = ["label"]
    for t in names:
        if t not in train.targets:
            raise InputError(f"dataset {args.dataset!r} has no target {t!r}; it has {', '.join(sorted(train.targets))}")
    if args.task == "mask" and train.masks is None:
        raise InputError(f"dataset {args.dataset!r} has no masks; --task mask needs one that has (shapes)")
    targets = {t: len(train.classes[t]) for t in names}
    options = json.loads(args.fusion_options) if args.fusion_options else {}
    cfg = ModelConfig(fusion=args.fusion, fusion_options=options, image_encoder=args.image_encoder,
                      text_encoder=args.text_encoder, dim=args.dim, image_size=args.image_size or train.image_size,
                      targets=targets, mask=args.task == "mask", missing=args.missing,
                      contrastive=args.task == "contrastive", generate=args.task == "generate")
    tok = WordTokenizer.fit(train.texts).to_json() if cfg.text_encoder == "bigru" else None
    model = Model(cfg, classes={t: train.classes[t] for t in names}, tokenizer=tok)
    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       drop_image=args.drop_image, drop_text=args.drop_text, mask_loss=args.mask_loss,
                       max_train=args.max_train, threads=args.threads,
                       loss_weights={k: float(v) for k, v in data_options(args.loss_weight).items()})
    return model, tcfg, train, val


def cmd_train(args) -> int:
    from mmlab import checkpoint, zoo
    from mmlab.data import load_dataset
    from mmlab.evaluate import evaluate
    from mmlab.train import fit, seed_everything

    seed_everything(args.seed)
    model, tcfg, train, val = build_for_training(args)
    out = Path(args.out or f"runs/{args.name or args.dataset + '-' + args.fusion}")
    name = args.name or out.name
    start_epoch, opt_state, earlier_history, earlier_seconds = 0, None, [], 0.0
    resume_dir = out.with_name(out.name + ".resume")
    if args.resume and resume_dir.is_dir():
        from mmlab.checkpoint import load as load_ckpt

        resumed, extras = load_ckpt(resume_dir, with_extras=True)
        model.load_state_dict(resumed.state_dict())
        start_epoch = int(resumed.meta.get("epoch", 0))
        earlier_history = list(resumed.meta.get("history", []))
        earlier_seconds = float(resumed.meta.get("seconds", 0.0))
        opt_state = _unflatten_optimizer(extras, resumed.meta.get("optimizer"))
        print(f"resuming {name} from epoch {start_epoch}", file=sys.stderr)

    t_start = time.perf_counter()

    def save_resume(epoch, m, opt, history):  # atomic per-epoch checkpoint an interrupted run resumes from
        flat, layout = _flatten_optimizer(opt.state_dict())
        seconds = earlier_seconds + time.perf_counter() - t_start
        checkpoint.save(m, resume_dir, meta={"epoch": epoch, "optimizer": layout, "train": asdict(tcfg),
                                             "seconds": seconds, "history": earlier_history + history}, extra_tensors=flat)

    result = fit(model, train, tcfg, val=val, progress=not args.quiet, on_epoch_checkpoint=save_resume,
                 start_epoch=start_epoch, optimizer_state=opt_state)
    from mmlab import distributed

    if not distributed.is_main():  # data-parallel (torchrun): rank 0 alone evaluates, saves and prints
        return 0
    result.history = earlier_history + result.history
    result.seconds += earlier_seconds
    data_opts = data_options(args.data_opt)
    test = load_dataset(args.dataset, "test", seed=args.data_seed, **data_opts)
    # a modality dropped in every training sample (a unimodal baseline) is dropped at test time too
    eval_drop = "text" if tcfg.drop_text >= 1 else "image" if tcfg.drop_image >= 1 else None
    checkpoint.round_weights(model, args.weights)  # metrics below are those of the weights as stored
    metrics = evaluate(model, test, drop=eval_drop)
    command = "mmlab " + " ".join(shlex.quote(a) for a in args.argv)
    meta = {"name": name, "dataset": args.dataset, "data_options": data_opts, "task": args.task, "train": asdict(tcfg),
            "eval_drop": eval_drop, "metrics": metrics, "train_seconds": round(result.seconds, 1), "history": result.history,
            "command": command}
    checkpoint.save(model, out, meta=meta, weights=args.weights)
    import shutil

    shutil.rmtree(resume_dir, ignore_errors=True)
    if args.manifest:
        zoo.update_manifest({
            "name": name, "path": out.name, "dataset": args.dataset, "task": args.task,
            "strategy": model.cfg.fusion, "encoders": {"image": model.cfg.image_encoder, "text": model.cfg.text_encoder},
            "data_options": data_opts, "config": asdict(model.cfg), "metrics": metrics, "train_seconds": round(result.seconds, 1), "parameters": model.num_parameters(),
            "command": command, **({"tested_with": f"{eval_drop} dropped"} if eval_drop else {}),
        }, out.parent)
    print(json.dumps({"name": name, "path": str(out), "metrics": metrics, "train_seconds": round(result.seconds, 1)}))
    return 0


def _flatten_optimizer(state: dict):
    import torch

    flat, layout = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, st in state["state"].items():
        layout["state"][str(pid)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                flat[f"opt.{pid}.{k}"] = v
                layout["state"][str(pid)][k] = "tensor"
            else:
                layout["state"][str(pid)][k] = v
    return flat, layout


def _unflatten_optimizer(flat: dict, layout: dict | None):
    if not layout:
        return None
    state = {}
    for pid, st in layout["state"].items():
        state[int(pid)] = {k: flat[f"opt.{pid}.{k}"] if v == "tensor" else v for k, v in st.items()}
    return {"param_groups": layout["param_groups"], "state": state}


def _model_and_split(args):
    """The checkpoint and the split to score it on: its own dataset (with the options it was trained
    with) unless --dataset names another; --seed regenerates generated sets."""
    from mmlab.data import load_dataset

    model = _resolve(args.checkpoint)
    name = args.dataset or model.meta.get("dataset")
    if not name:
        raise InputError("the checkpoint names no dataset: pass --dataset")
    opts = dict(model.meta.get("data_options") or {}) if name == model.meta.get("dataset") else {}
    opts.update(data_options(args.data_opt))
    return model, name, load_dataset(name, args.split, seed=args.seed, **opts)


def cmd_eval(args) -> int:
    from mmlab.evaluate import evaluate

    model, name, data = _model_and_split(args)
    t0 = time.perf_counter()
    metrics = evaluate(model, data, drop=None if args.drop == "none" else args.drop)
    metrics.update({"dataset": name, "split": args.split, "seed": args.seed, "drop": args.drop,
                    "seconds": round(time.perf_counter() - t0, 3)})
    if args.json:
        print(json.dumps(metrics))
    else:
        for k, v in metrics.items():
            print(f"{k:>16}: {v}")
    return 0


def cmd_predict(args) -> int:
    import numpy as np

    model = _resolve(args.checkpoint)
    t0 = time.perf_counter()
    pred = model.predict(args.image, args.text, drop=None if args.drop == "none" else args.drop)
    ms = (time.perf_counter() - t0) * 1000
    out = {"label": pred.label, "probs": pred.probs, "tokens": pred.tokens, "latency_ms": round(ms, 2)}
    if pred.mask is not None:
        m = pred.mask >= 0.5
        ys, xs = np.nonzero(m)
        out["mask"] = {"area": int(m.sum()), "size": list(m.shape),
                       "bbox": [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())] if len(xs) else None}
        if args.mask_out:
            from PIL import Image

            Image.fromarray((m * 255).astype(np.uint8)).save(args.mask_out)
    if pred.attention:
        out["attention"] = {k: list(v.shape) for k, v in pred.attention.items()}
    if pred.extras:  # small side outputs only (gates, unimodal probabilities); full maps stay in Python
        out["extras"] = {k: (v if isinstance(v, dict) else np.asarray(v).round(4).tolist())
                         for k, v in pred.extras.items() if isinstance(v, dict) or np.asarray(v).size <= 64}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{pred.label}  ({pred.probs.get(pred.label, 0):.3f})" if pred.label else "mask only")
        for k, v in out.items():
            if k not in ("label",):
                print(f"{k}: {v}")
    return 0


def cmd_ablate(args) -> int:
    from mmlab.ablation import ablate, to_json

    model, name, data = _model_and_split(args)
    if args.n:
        data = data.subset(range(min(args.n, len(data))))
    result = to_json(ablate(model, data, seed=args.seed))
    if not args.per_sample:
        result["decider"] = {k: v for k, v in result["decider"].items() if k in ("counts", "thresholds", "quantity")}
    if args.json:
        print(json.dumps(result))
    else:
        for row in result["table"]:
            print(f"{row['condition']:<22} {result['metric']} {row[result['metric']]:.4f}")
        print(f"seconds: {result['seconds']:.2f}")
    return 0


def cmd_bench(args) -> int:
    from mmlab.bench import run_all

    result = run_all(quick=args.quick, only=args.only.split(",") if args.only else None, timeout=args.timeout,
                     on_start=lambda n: print(f"bench: {n}", file=sys.stderr))
    if args.json:
        print(json.dumps(result))
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
        print(json.dumps(rows))
    else:
        for r in rows:
            vals = set(map(str, r["sizes"].values()))
            sizes = vals.pop() if len(vals) == 1 and not str(next(iter(r["sizes"].values()))).isdigit() \
                else ", ".join(f"{k} {v}" for k, v in r["sizes"].items())
            print(f"{r['name']:<14} {sizes:<36} {r['description']}")
    return 0


def cmd_zoo(args) -> int:
    from mmlab import zoo

    if args.action == "plan":  # the commands that build the whole zoo (one per line, for xargs -P)
        have = {e["name"] for e in zoo.list_checkpoints()}
        for name, command in zoo.plan().items():
            if not (args.missing and name in have) and (not args.only or name == args.only):
                print(command)
        return 0
    if args.action == "train":  # rebuild shipped checkpoints from the commands in the manifest
        entries = zoo.read_manifest()["checkpoints"]
        if args.only:
            entries = [e for e in entries if e["name"] == args.only]
            if not entries:
                raise InputError(f"no manifest entry named {args.only!r}")
        for e in entries:
            argv = shlex.split(e["command"])[1:]
            print(f"rebuilding {e['name']}: {e['command']}", file=sys.stderr)
            code = main(argv)
            if code:
                return code
        return 0
    rows = zoo.list_checkpoints()
    if args.json:
        print(json.dumps(rows))
    else:
        for e in rows:
            m = ", ".join(f"{k} {v:.3f}" for k, v in e["metrics"].items() if isinstance(v, float))
            print(f"{e['name']:<36} {e['dataset']:<10} {e['strategy']:<24} {m}")
    return 0


def cmd_app(args) -> int:
    import subprocess

    app = Path(__file__).resolve().parent.parent / "app.py"
    if not app.is_file():
        raise InputError(f"app.py not found next to the mmlab package ({app})")
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    return subprocess.call(cmd)


def cmd_demo(args) -> int:
    from mmlab.demo import launch

    launch(port=args.port)
    return 0


def parser() -> argparse.ArgumentParser:
    from mmlab import fusion

    p = argparse.ArgumentParser(prog="mmlab", description="Multimodal fusion lab")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and save a checkpoint")
    t.add_argument("--dataset", default="shapes")
    t.add_argument("--task", choices=TASKS, default="classify")
    t.add_argument("--targets", help="comma-separated target names for --task multitask")
    t.add_argument("--fusion", default="cross_attention", help=f"one of: {', '.join(fusion.available())}")
    t.add_argument("--fusion-options", help='JSON keyword options of the strategy, e.g. \'{"heads": 4}\'')
    t.add_argument("--image-encoder", default="cnn")
    t.add_argument("--text-encoder", default="bigru")
    t.add_argument("--dim", type=int, default=64)
    t.add_argument("--image-size", type=int, default=None)
    t.add_argument("--missing", choices=("zeros", "learned", "impute"), default="learned")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--data-seed", type=int, default=0)
    t.add_argument("--data-opt", action="append", metavar="KEY=VALUE",
                   help="dataset option, repeatable: captions=noisy, p_wrong=0.3, path=DIR")
    t.add_argument("--drop-image", type=float, default=0.0)
    t.add_argument("--drop-text", type=float, default=0.0)
    t.add_argument("--mask-loss", default="bce_dice", help="bce | dice | iou | bce_dice | bce_iou (seed 004)")
    t.add_argument("--loss-weight", action="append", metavar="TARGET=W",
                   help="weight of a target's loss, repeatable (multi-task, seed 000): shape=1.0 colour=0.5")
    t.add_argument("--max-train", type=int, default=None)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--val", action="store_true", help="score the val split after every epoch")
    t.add_argument("--out", help="checkpoint folder (default runs/NAME)")
    t.add_argument("--name")
    t.add_argument("--manifest", action="store_true", help="record the checkpoint in the manifest beside it")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
    t.add_argument("--weights", choices=["float16", "float32"], default="float16",
                   help="precision the checkpoint stores its weights in (the test metrics are measured on "
                        "exactly those weights; float16 halves the file)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="metrics of a checkpoint on a dataset split")
    e.add_argument("checkpoint")
    e.add_argument("--dataset")
    e.add_argument("--split", default="test")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--drop", choices=("image", "text", "none"), default="none")
    e.add_argument("--data-opt", action="append", metavar="KEY=VALUE", help="dataset option, repeatable")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)

    pr = sub.add_parser("predict", help="predict for one image and sentence")
    pr.add_argument("checkpoint")
    pr.add_argument("--image", required=True)
    pr.add_argument("--text", required=True)
    pr.add_argument("--drop", choices=("image", "text", "none"), default="none")
    pr.add_argument("--mask-out", help="write the predicted mask as a PNG")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_predict)

    ab = sub.add_parser("ablate", help="metrics with each modality dropped or noisy, and who decided")
    ab.add_argument("checkpoint")
    ab.add_argument("--dataset")
    ab.add_argument("--split", default="test")
    ab.add_argument("--seed", type=int, default=0)
    ab.add_argument("--n", type=int, default=1000, help="use the first N pairs of the split (0: all)")
    ab.add_argument("--data-opt", action="append", metavar="KEY=VALUE", help="dataset option, repeatable")
    ab.add_argument("--per-sample", action="store_true", help="include the per-sample decider lists")
    ab.add_argument("--json", action="store_true")
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

    z = sub.add_parser("zoo", help="list the shipped checkpoints, or rebuild them (zoo train)")
    z.add_argument("action", nargs="?", choices=("list", "train", "plan"), default="list",
                   help="list: the shipped checkpoints; train: rebuild them from the manifest's commands; "
                        "plan: print the command of every checkpoint the zoo should hold")
    z.add_argument("--only", help="with train or plan: only this checkpoint")
    z.add_argument("--missing", action="store_true", help="with plan: only those not built yet")
    z.add_argument("--json", action="store_true")
    z.set_defaults(func=cmd_zoo)

    a = sub.add_parser("app", help="start the Streamlit app")
    a.add_argument("--port", type=int, default=8501)
    a.set_defaults(func=cmd_app)

    dm = sub.add_parser("demo", help="start the one-screen Gradio demo")
    dm.add_argument("--port", type=int, default=7860)
    dm.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # argparse: usage errors exit 2 already
        return int(e.code or 0)
    args.argv = argv
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
