"""State the app keeps outside its widgets, as plain functions and one plain class.

- where checkpoints live: the shipped zoo (``$MMLAB_CHECKPOINTS`` or ``checkpoints/``) and
  the models a user trained in the app (``$MMLAB_USER_CHECKPOINTS`` or ``runs/app/``), read
  at call time so a test can point the app at its own folders;
- the numbers the seeds published, shown beside ours on the Compare page;
- ``TrainJob``: a training run in a background thread with progress, live curves and a
  cancel flag (the Train page keeps one per session in ``st.session_state``).

Nothing here imports Streamlit: the pages are thin over these functions. (Page state in the URL
needs no helper here: the pages bind their widgets with Streamlit's ``bind="query-params"``.)
"""
from __future__ import annotations

import os
import re
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from mmlab.errors import InputError

REPO = Path(__file__).resolve().parent.parent
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# ---- checkpoints --------------------------------------------------------------------------
def shipped_root() -> Path:
    """The shipped zoo: ``$MMLAB_CHECKPOINTS`` if set, else ``checkpoints/`` beside the package."""
    env = os.environ.get("MMLAB_CHECKPOINTS")
    return Path(env) if env else REPO / "checkpoints"


def user_root() -> Path:
    """Where models trained in the app are saved: ``$MMLAB_USER_CHECKPOINTS`` or ``runs/app/``."""
    env = os.environ.get("MMLAB_USER_CHECKPOINTS")
    return Path(env) if env else REPO / "runs" / "app"


def all_checkpoints() -> tuple[list[dict], list[str]]:
    """(entries, problems): manifest entries of the shipped zoo and of the user's own models.

    Each entry is a manifest entry (name, dataset, task, strategy, encoders, metrics, ...) with
    ``dir`` (absolute folder) and ``source`` ("zoo" or "yours"). A user's model whose name is
    also in the zoo is listed as ``"<name> (yours)"``. A broken manifest is reported in
    ``problems`` (one line each) and skipped, so one bad file never hides the others.
    """
    from mmlab import zoo

    entries: list[dict] = []
    problems: list[str] = []
    seen: set[str] = set()
    for source, root in (("zoo", shipped_root()), ("yours", user_root())):
        try:
            found = zoo.list_checkpoints(root)
        except (InputError, OSError, KeyError, TypeError) as e:
            problems.append(f"{root}: {e}")
            continue
        for e in found:
            name = e["name"] if e["name"] not in seen else f"{e['name']} ({source})"
            seen.add(name)
            entries.append({**e, "name": name, "source": source})
    return entries, problems


def checkpoint_label(entry: dict) -> str:
    """One line naming a checkpoint for a picker: name, strategy, its headline metric."""
    metrics = entry.get("metrics") or {}
    best = next((f"{k} {metrics[k]:.2f}" for k in ("iou", "accuracy") if isinstance(metrics.get(k), float)), "")
    mine = " · yours" if entry.get("source") == "yours" else ""
    return f"{entry['name']} — {entry.get('strategy', '?')}{', ' + best if best else ''}{mine}"


TASK_LABELS = {"mask": "referring masks", "multitask": "multi-task", "classify": "classification",
               "contrastive": "contrastive alignment", "generate": "generation"}


def zoo_groups(entries: list[dict]) -> dict[str, list[dict]]:
    """Checkpoints grouped by what they were trained for, "dataset · task", in first-seen order:
    the Compare page lines up strategies that answer the same question."""
    groups: dict[str, list[dict]] = {}
    for e in entries:
        task = e.get("task") or "classify"
        groups.setdefault(f"{e.get('dataset') or '?'} · {TASK_LABELS.get(task, task)}", []).append(e)
    return groups


# ---- the seeds' published numbers (each on the seed's own data, not ours) -------------------
PUBLISHED: list[dict] = [
    {"task": "mask", "strategy": "cross_attention", "metric": "iou", "value": 0.9617,
     "source": "seed 004: cross-attention + BCE, 200 epochs (their referring-mask data)"},
    {"task": "mask", "strategy": "tensor", "metric": "iou", "value": 0.1991,
     "source": "seed 004: cross (outer) product, ResNet-50 + BERT (their data)"},
    {"task": "classify", "dataset": "digits", "strategy": "image_only", "metric": "accuracy", "value": 0.9037,
     "source": "seed 002: image-only model on digits + captions"},
    {"task": "classify", "dataset": "digits", "strategy": "concat", "metric": "accuracy", "value": 1.0,
     "source": "seed 002: multimodal model on digits + captions"},
]


def published_for(entry: dict) -> dict | None:
    """The seed's published number for a checkpoint's (task, strategy[, dataset]), or None."""
    strategy = "image_only" if entry.get("tested_with") == "text dropped" else entry.get("strategy")
    for p in PUBLISHED:
        if p["strategy"] != strategy or p["task"] != entry.get("task"):
            continue
        if "dataset" in p and p["dataset"] != entry.get("dataset"):
            continue
        return p
    return None


# ---- training in the background ---------------------------------------------------------------
TRAIN_OPTIONS = ("dataset", "task", "fusion", "image_encoder", "text_encoder", "dim", "epochs", "batch_size", "lr",
                 "seed", "drop_image", "drop_text", "max_train", "mask_loss", "missing")


def train_argv(request: dict) -> list[str]:
    """The ``mmlab train`` arguments of a training request ({option: value} + ``name``); unknown
    options are refused. The same line is recorded in the manifest so the run can be rebuilt."""
    unknown = set(request) - set(TRAIN_OPTIONS) - {"name"}
    if unknown:
        raise InputError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    name = str(request.get("name", ""))
    if not NAME_RE.match(name):
        raise InputError(f"checkpoint name {name!r}: use letters, digits, '-', '_' or '.' (at most 64)")
    argv = ["train"]
    for key in TRAIN_OPTIONS:
        if request.get(key) is not None:
            argv += [f"--{key.replace('_', '-')}", str(request[key])]
    return argv + ["--name", name, "--val"]


@dataclass
class TrainJob:
    """One training run in a background thread, saved as a checkpoint every page can pick.

    ``request``: options of ``mmlab train`` (``TRAIN_OPTIONS``) plus ``name``; they are parsed by
    the CLI's own parser, so defaults and validation are the CLI's. The thread builds the model
    with ``mmlab.cli.build_for_training``, runs ``mmlab.train.fit`` with a callback that records
    the loss of every step and the metrics of every epoch (on at most 300 validation pairs) and
    stops when ``cancel()`` was called, then evaluates on ``eval_n`` test pairs and saves the
    checkpoint into ``out_root``, recording it in that folder's manifest. A cancelled or failed
    run saves nothing, so earlier checkpoints stay as they were.
    """

    request: dict
    out_root: Path
    eval_n: int = 300
    state: str = "new"  # new | running | done | cancelled | failed
    steps: list = field(default_factory=list)  # (step, loss)
    history: list = field(default_factory=list)  # one dict per epoch (loss, val metrics)
    total_steps: int = 0
    error: str = ""
    entry: dict | None = None  # the manifest entry once saved
    model: object = None
    started: float = 0.0
    seconds: float = 0.0

    def __post_init__(self):
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self.argv = train_argv(self.request)

    # -- control
    def start(self) -> "TrainJob":
        self.state, self.started = "running", time.perf_counter()
        self._thread = threading.Thread(target=self._run, name=f"mmlab-train-{self.request['name']}", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def progress(self) -> float:
        """Share of the steps done, in [0, 1]."""
        if self.state == "done":
            return 1.0
        return min(1.0, self.steps[-1][0] / self.total_steps) if self.steps and self.total_steps else 0.0

    # -- the thread
    def _run(self) -> None:
        import shlex
        from dataclasses import asdict

        from mmlab import checkpoint, zoo
        from mmlab.cli import build_for_training, parser
        from mmlab.data import load_dataset
        from mmlab.evaluate import evaluate
        from mmlab.train import Callback, fit, seed_everything

        job = self

        class Recorder(Callback):
            def on_train_begin(self, total_steps):
                job.total_steps = total_steps
                return job._cancel.is_set()

            def on_step(self, step, total_steps, logs):
                job.steps.append((step, float(logs["loss"])))
                return job._cancel.is_set()

            def on_epoch_end(self, epoch, logs):
                job.history.append(dict(logs))
                return job._cancel.is_set()

        try:
            try:
                args = parser().parse_args(self.argv)
            except SystemExit:
                raise InputError(f"bad training options: {' '.join(self.argv)}") from None
            seed_everything(args.seed)
            model, tcfg, train, val = build_for_training(args)
            if val is not None and len(val) > 300:
                val = val.subset(range(300))  # per-epoch curves, quickly
            self.model = model
            result = fit(model, train, tcfg, val=val, callbacks=(Recorder(),), progress=False)
            if result.stopped:
                self.state = "cancelled"
                return
            test = load_dataset(args.dataset, "test", seed=args.data_seed)
            if len(test) > self.eval_n:
                test = test.subset(range(self.eval_n))
            metrics = evaluate(model, test)
            name = args.name
            command = "mmlab " + " ".join(shlex.quote(a) for a in self.argv)
            meta = {"name": name, "dataset": args.dataset, "task": args.task, "train": asdict(tcfg),
                    "metrics": metrics, "train_seconds": round(result.seconds, 1), "history": result.history,
                    "command": command}
            self.out_root.mkdir(parents=True, exist_ok=True)
            checkpoint.save(model, self.out_root / name, meta=meta)
            entry = {"name": name, "path": name, "dataset": args.dataset, "task": args.task,
                     "strategy": model.cfg.fusion,
                     "encoders": {"image": model.cfg.image_encoder, "text": model.cfg.text_encoder},
                     "metrics": metrics, "train_seconds": round(result.seconds, 1),
                     "parameters": model.num_parameters(), "command": command,
                     "train": {"drop_image": tcfg.drop_image, "drop_text": tcfg.drop_text}}
            zoo.update_manifest(entry, self.out_root)
            self.entry = entry
            self.state = "done"
        except InputError as e:
            self.error, self.state = str(e), "failed"
        except Exception as e:  # noqa: BLE001 - the page shows it; the app keeps serving
            self.error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
            self.state = "failed"
        finally:
            self.seconds = time.perf_counter() - self.started
