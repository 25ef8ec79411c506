"""The one way to train: an ``Experiment`` (what to train, on what, how) and ``run`` (train it,
round its weights, score it on its test split with its own test-time drop, record its domain, save
the checkpoint and its manifest entry).

The command line (``mmlab train``), the app's Train page and the zoo (``mmlab zoo train``) only
build an ``Experiment`` and call ``run``, so a model trained anywhere is the same model. Every
option is a field of ``Experiment``, ``ModelConfig`` or ``TrainConfig`` (``mmlab.config.option``),
and the CLI flags are made from those fields (``add_arguments`` / ``from_args`` / ``to_argv``):
a new option is one field. Like scikit-learn's estimators, an experiment holds plain values and
does nothing when made; variants are ``dataclasses.replace`` of it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from mmlab.config import ModelConfig, TrainConfig, check_bounds, from_dict, option
from mmlab.errors import InputError

TASKS = ("classify", "mask", "multitask", "contrastive", "generate")
RESUME_SUFFIX = ".resume"


@dataclass(frozen=True)
class Experiment:
    """What to train. ``model`` holds the architecture; its ``targets``, ``mask``, ``contrastive`` and
    ``generate`` are set from ``task`` and the data, and ``image_size`` None means the dataset's own."""

    dataset: str = option("shapes", "dataset to train on (mmlab datasets)")
    data_options: dict = option(factory=dict, help="dataset option, e.g. captions=noisy p_wrong=0.3", flag="--data-opt")
    data_seed: int = option(0, "generator seed of generated datasets (shapes)")
    task: str = option("classify", "what the model learns", choices=TASKS)
    targets: tuple = option((), "target names of a multitask model, comma-separated (e.g. shape,colour)")
    weights: str = option("float16", "precision the checkpoint stores its weights in (the test metrics are "
                                     "measured on exactly those weights)", choices=("float16", "float32"))
    model: ModelConfig = field(default_factory=lambda: ModelConfig(image_size=None))
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, data: dict) -> "Experiment":
        data = dict(data)
        model = from_dict(ModelConfig, data.pop("model", {}))
        train = from_dict(TrainConfig, data.pop("train", {}))
        exp = from_dict(cls, {**data, "model": model, "train": train})
        return replace(exp, targets=tuple(exp.targets))

    def target_names(self, classes: dict[str, list[str]]) -> list[str]:
        """The classification heads this experiment's task asks for, checked against the data's targets."""
        if self.task == "multitask":
            names = list(self.targets)
            if not names:
                raise InputError("task multitask needs targets, e.g. --targets shape,colour")
        elif self.task in ("contrastive", "generate"):
            names = []  # alignment / generation only: no classifier head
        else:
            names = ["label"]
        for t in names:
            if t not in classes:
                raise InputError(f"dataset {self.dataset!r} has no target {t!r}; it has {', '.join(sorted(classes))}")
        return names


def check(exp: Experiment) -> None:
    """Refuse an experiment with a value out of bounds or an unknown name, before anything is loaded."""
    from mmlab.data import available
    from mmlab.fusion import check_options, get

    for part in (exp, exp.model, exp.train):
        check_bounds(part)
    if exp.dataset not in available():
        raise InputError(f"unknown dataset {exp.dataset!r}; choose one of: {', '.join(available())}")
    get(exp.model.fusion)
    check_options(exp.model.fusion, exp.model.dim, exp.model.fusion_options)
    if exp.train.drop_image + exp.train.drop_text > 1:
        raise InputError("drop_image + drop_text must be at most 1 (a sample never loses both)")


def preflight(exp: Experiment) -> None:
    """Refuse, before any training starts, what can be known to fail: bounds, names, and the task against
    the data (a mask task on a dataset without masks, a target the dataset does not have)."""
    check(exp)
    model_config(exp, load_split(exp, "train"))


# ---- building ---------------------------------------------------------------------------------
class Built(NamedTuple):
    """An experiment made concrete: its model (fresh weights) and its training and validation data."""

    model: object  # mmlab.model.Model
    train: object  # mmlab.data.base.MMDataset
    val: object | None


def load_split(exp: Experiment, split: str, *, n: int | None = None, seed: int | None = None):
    """The experiment's dataset split, with its options (``seed``: another generator seed)."""
    from mmlab.data import load_dataset

    data = load_dataset(exp.dataset, split, seed=exp.data_seed if seed is None else seed, **exp.data_options)
    if n is not None and len(data) > n:
        data = data.subset(range(n))
    return data


def model_config(exp: Experiment, train) -> ModelConfig:
    """The complete model config: the experiment's architecture, its heads from the task and data."""
    names = exp.target_names(train.classes)
    if exp.task == "mask" and train.masks is None:
        raise InputError(f"dataset {exp.dataset!r} has no masks; task mask needs one that has (shapes)")
    return replace(exp.model, targets={t: len(train.classes[t]) for t in names}, mask=exp.task == "mask",
                   contrastive=exp.task == "contrastive", generate=exp.task == "generate",
                   image_size=exp.model.image_size or train.image_size)


def eval_drop(exp: Experiment) -> str | None:
    """A modality dropped from every training sample (a unimodal baseline) is dropped at test time too."""
    return "text" if exp.train.drop_text >= 1 else "image" if exp.train.drop_image >= 1 else None


def build(exp: Experiment) -> Built:
    """The experiment's model with fresh weights (drawn from torch's global generator: seed it first) and its data."""
    from mmlab.data.tokenizer import WordTokenizer
    from mmlab.model import build_model

    check(exp)
    train = load_split(exp, "train")
    if exp.train.max_train:
        train = train.subset(range(min(exp.train.max_train, len(train))))
    cfg = model_config(exp, train)
    names = list(cfg.targets)
    tokenizer = WordTokenizer.fit(train.texts).to_json() if cfg.text_encoder == "bigru" else None
    model = build_model(cfg, classes={t: train.classes[t] for t in names}, tokenizer=tokenizer,
                        eval_drop=eval_drop(exp))
    val = load_split(exp, "val", n=exp.train.val_pairs) if exp.train.val_pairs else None
    return Built(model, train, val)


# ---- running ----------------------------------------------------------------------------------
class RunResult(NamedTuple):
    """path: the saved checkpoint (None when cancelled); entry: its manifest entry; metrics: on its test
    split; history: one dict per epoch; seconds: training time; stopped: a callback cancelled it."""

    path: Path | None
    entry: dict | None
    metrics: dict | None
    history: list
    seconds: float
    stopped: bool
    model: object


def _resume_state(resume_dir: Path, model):
    from mmlab.checkpoint import load_with_state
    from mmlab.train import ResumeState

    resumed, extras = load_with_state(resume_dir)
    model.load_state_dict(resumed.state_dict())
    meta = resumed.meta
    return ResumeState(epoch=int(meta.get("epoch", 0)), optimizer=_unflatten(extras, "opt.", meta.get("optimizer")),
                       rng=_unflatten_rng(extras, meta.get("rng")), history=list(meta.get("history", [])),
                       seconds=float(meta.get("seconds", 0.0)))


def _save_resume(resume_dir: Path, exp: Experiment, model, state) -> None:
    from mmlab import checkpoint

    flat, layout = _flatten(state.optimizer, "opt.")
    rng_flat, rng_layout = _flatten_rng(state.rng)
    checkpoint.save(model, resume_dir, meta={"epoch": state.epoch, "optimizer": layout, "rng": rng_layout,
                                             "experiment": exp.to_json(), "seconds": state.seconds,
                                             "history": state.history},
                    extra_tensors={**flat, **rng_flat})


def run(exp: Experiment, out: str | Path, *, name: str | None = None, callbacks=(), progress: bool = False,
        manifest: bool = False, resume: bool = False) -> RunResult:
    """Train ``exp`` and save it as the checkpoint folder ``out`` (``name``: its manifest name, default the
    folder's). After every epoch a resumable state is written beside it (``<out>.resume``); ``resume``
    continues from there, exactly. A cancelled run (a callback returned True) saves nothing.
    ``manifest``: record the checkpoint in ``manifest.json`` of ``out``'s parent folder."""
    import torch

    from mmlab import checkpoint, distributed, zoo
    from mmlab.domain import Domain
    from mmlab.evaluate import evaluate
    from mmlab.train import fit, seed_everything

    out = Path(out)
    name = name or out.name
    if exp.train.threads:
        torch.set_num_threads(exp.train.threads)
    seed_everything(exp.train.seed)
    model, train, val = build(exp)
    resume_dir = out.with_name(out.name + RESUME_SUFFIX)
    state = _resume_state(resume_dir, model) if resume and resume_dir.is_dir() else None
    result = fit(model, train, exp.train, val=val, callbacks=callbacks, progress=progress, resume=state,
                 on_epoch_checkpoint=lambda m, s: _save_resume(resume_dir, exp, m, s))
    if result.stopped:
        return RunResult(None, None, None, result.history, result.seconds, True, model)
    if not distributed.is_main():  # data-parallel (torchrun): rank 0 alone scores and saves
        return RunResult(None, None, None, result.history, result.seconds, False, model)
    checkpoint.round_weights(model, exp.weights)  # the metrics below are those of the weights as stored
    metrics = evaluate(model, load_split(exp, "test"))
    model.domain = Domain.fit(model, train, load_split(exp, "val"))
    seconds = round(result.seconds, 1)
    meta = {"name": name, "experiment": exp.to_json(), "dataset": exp.dataset, "task": exp.task,
            "metrics": metrics, "train_seconds": seconds, "history": result.history}
    checkpoint.save(model, out, meta=meta, weights=exp.weights)
    shutil.rmtree(resume_dir, ignore_errors=True)
    entry = manifest_entry(name, out.name, exp, model, metrics, seconds)
    if manifest:
        zoo.update_manifest(entry, out.parent)
    return RunResult(out, entry, metrics, result.history, result.seconds, False, model)


def manifest_entry(name: str, path: str, exp: Experiment, model, metrics: dict, seconds: float) -> dict:
    """The manifest's record of a checkpoint: the experiment that made it and what it reached. Listing
    fields (dataset, strategy, command, ...) are derived from it when read (``mmlab.zoo``)."""
    return {"name": name, "path": path, "experiment": exp.to_json(), "config": asdict(model.cfg), "metrics": metrics,
            "train_seconds": seconds, "parameters": model.num_parameters()}


# ---- resumable state as tensors + JSON ---------------------------------------------------------
def _flatten(state: dict, prefix: str):
    import torch

    flat, layout = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, st in state["state"].items():
        layout["state"][str(pid)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                flat[f"{prefix}{pid}.{k}"] = v
                layout["state"][str(pid)][k] = "tensor"
            else:
                layout["state"][str(pid)][k] = v
    return flat, layout


def _unflatten(flat: dict, prefix: str, layout: dict | None):
    if not layout:
        raise InputError("the resumable state has no optimizer state")
    state = {int(pid): {k: flat[f"{prefix}{pid}.{k}"] if v == "tensor" else v for k, v in st.items()}
             for pid, st in layout["state"].items()}
    return {"param_groups": layout["param_groups"], "state": state}


def _flatten_rng(rng: dict):
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = rng["numpy"]
    flat = {"rng.torch": rng["torch"], "rng.batches": rng["batches"],
            "rng.numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64))}
    for i, s in enumerate(rng.get("cuda", [])):
        flat[f"rng.cuda.{i}"] = s
    version, internal, gauss_next = rng["python"]
    layout = {"numpy": [kind, int(pos), int(has_gauss), float(gauss)], "python": [version, list(internal), gauss_next],
              "cuda": len(rng.get("cuda", []))}
    return flat, layout


def _unflatten_rng(flat: dict, layout: dict | None) -> dict:
    if not layout:
        raise InputError("the resumable state has no random states (written by an older mmlab): start again")
    kind, pos, has_gauss, gauss = layout["numpy"]
    version, internal, gauss_next = layout["python"]
    state = {"torch": flat["rng.torch"], "batches": flat["rng.batches"],
             "numpy": (kind, flat["rng.numpy"].numpy().astype("uint32"), pos, has_gauss, gauss),
             "python": (version, tuple(internal), gauss_next)}
    if layout.get("cuda"):
        state["cuda"] = [flat[f"rng.cuda.{i}"] for i in range(layout["cuda"])]
    return state


# ---- the command line, made from the fields -----------------------------------------------------
class Option(NamedTuple):
    """One user option: ``name`` (a field name, unique across the three configs), ``where`` ("" for the
    experiment itself, "model" or "train"), its ``field`` (type and help in its metadata), its ``default``."""

    name: str
    where: str
    field: dataclasses.Field
    default: object


def options() -> list[Option]:
    """Every option a user sets, in the order the configs declare them (derived fields left out)."""
    base = Experiment()
    out = [Option(f.name, "", f, getattr(base, f.name)) for f in dataclasses.fields(Experiment)
           if f.name not in ("model", "train")]
    for where, cls in (("model", ModelConfig), ("train", TrainConfig)):
        part = getattr(base, where)
        out += [Option(f.name, where, f, getattr(part, f.name)) for f in dataclasses.fields(cls)
                if not f.metadata.get("derived")]
    return out


def from_options(**values) -> Experiment:
    """An experiment from option values by name (``options()``); the others keep their defaults."""
    by_name = {o.name: o for o in options()}
    unknown = set(values) - set(by_name)
    if unknown:
        raise InputError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    parts: dict[str, dict] = {"": {}, "model": {}, "train": {}}
    for k, v in values.items():
        parts[by_name[k].where][k] = tuple(v) if str(by_name[k].field.type) == "tuple" else v
    base = Experiment()
    return replace(base, **parts[""], model=replace(base.model, **parts["model"]),
                   train=replace(base.train, **parts["train"]))


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _key_values(pairs: list[str] | None, flag: str) -> dict:
    """``KEY=VALUE`` pairs to a dict (values parsed as JSON where they are: numbers, true, lists)."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise InputError(f"{flag} takes key=value, got {pair!r}")
        k, v = pair.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One CLI flag per option field, with the field's help and default."""
    for _, _, f, default in options():
        flag, meta, kind = _flag(f), f.metadata, str(f.type)
        help_ = meta.get("help", "")
        if "dict" in kind:
            p.add_argument(flag, action="append", metavar="KEY=VALUE", dest=f.name, help=f"{help_} (repeatable)")
        elif kind == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, dest=f.name, help=help_)
        elif kind == "tuple":
            p.add_argument(flag, default=None, dest=f.name, help=help_)
        else:
            conv = int if kind.startswith("int") else float if kind.startswith("float") else str
            p.add_argument(flag, type=conv, default=default, dest=f.name, choices=meta.get("choices"),
                           help=f"{help_} (default {default})")


def from_args(args: argparse.Namespace) -> Experiment:
    """The experiment the parsed flags describe."""
    values = {}
    for name, _, f, _ in options():
        v = getattr(args, name)
        if "dict" in str(f.type):
            v = _key_values(v, _flag(f))
        elif str(f.type) == "tuple":
            v = tuple(t.strip() for t in (v or "").split(",") if t.strip())
        values[name] = v
    return from_options(**values)


def to_argv(exp: Experiment) -> list[str]:
    """The ``mmlab train`` flags of ``exp`` (only those that differ from the defaults)."""
    argv: list[str] = []
    for _, where, f, default in options():
        v = getattr(getattr(exp, where) if where else exp, f.name)
        if v == default:
            continue
        flag = _flag(f)
        if isinstance(v, dict):
            for k, x in v.items():
                argv += [flag, f"{k}={x if isinstance(x, str) else json.dumps(x)}"]
        elif isinstance(v, bool):
            argv.append(flag if v else "--no-" + flag[2:])
        elif isinstance(v, tuple):
            argv += [flag, ",".join(v)]
        else:
            argv += [flag, str(v)]
    return argv


def command(exp: Experiment, name: str | None = None, root: str = "checkpoints") -> str:
    """The shell line that trains ``exp`` (into ``root/name`` and its manifest when ``name`` is given)."""
    where = ["--out", f"{root}/{name}", "--name", name, "--manifest"] if name else []
    return "mmlab train " + " ".join(shlex.quote(a) for a in to_argv(exp) + where)
