"""Training runs started from the app: ``TrainJob``, one ``mmlab.experiment.run`` in a background thread.

A job belongs to the browser tab that started it: the tab's page calls ``touch()`` while it is open
(every second, from a fragment), and a job whose tab has not been seen for ``HEARTBEAT_SECONDS`` is
cancelled at its next step and saves nothing. At most ``MAX_RUNNING`` jobs run at once on a server
(the others are refused with a message). A job saves under the name it asked for unless another
checkpoint already has it, in which case it takes the first free ``name-2``, ``name-3``, ... and says
so: two tabs never overwrite each other. Nothing here imports Streamlit.
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

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_RUNNING = int(os.environ.get("MMLAB_MAX_TRAINING_JOBS", "2"))  # 2 cores: more would only share them
HEARTBEAT_SECONDS = 30.0

_lock = threading.Lock()
_running: dict[int, "TrainJob"] = {}  # id(job) -> job, while it runs
_reserved: set[str] = set()  # checkpoint folders a running job will save into


def user_root() -> Path:
    """Where models trained in the app are saved: ``$MMLAB_USER_CHECKPOINTS``, else
    ``$XDG_DATA_HOME/mmlab/models`` (``~/.local/share/mmlab/models``): outside the repository."""
    env = os.environ.get("MMLAB_USER_CHECKPOINTS")
    if env:
        return Path(env)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "mmlab" / "models"


def running_jobs() -> int:
    with _lock:
        return len(_running)


def _free_name(root: Path, wanted: str) -> str:
    """``wanted``, or the first ``wanted-2``, ``wanted-3``, ... that no checkpoint has and no job reserved."""
    name, k = wanted, 1
    while (root / name).exists() or str(root / name) in _reserved:
        k += 1
        name = f"{wanted}-{k}"
    return name


@dataclass
class TrainJob:
    """One training run of ``experiment`` saved as ``name`` under ``out_root``, in a background thread.

    state: new | running | done | cancelled | failed; steps: (step, loss) of every step; history: one
    dict per epoch (loss and the validation metrics); entry: the manifest entry once saved; saved_as:
    the name it was saved under (``name`` unless taken); error: why it failed (one line for a person).
    """

    experiment: object  # mmlab.experiment.Experiment
    name: str
    out_root: Path
    state: str = "new"
    steps: list = field(default_factory=list)
    history: list = field(default_factory=list)
    total_steps: int = 0
    error: str = ""
    entry: dict | None = None
    saved_as: str = ""
    started: float = 0.0
    seconds: float = 0.0
    last_seen: float = field(default_factory=time.monotonic)
    abandoned: bool = False

    def __post_init__(self):
        if not NAME_RE.match(str(self.name)):
            raise InputError(f"checkpoint name {self.name!r}: use letters, digits, '-', '_' or '.' (at most 64)")
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    # -- control
    def start(self) -> "TrainJob":
        """Start the run; refused (``InputError``) when ``MAX_RUNNING`` jobs already run on this server."""
        from mmlab.experiment import preflight

        preflight(self.experiment)
        with _lock:
            if len(_running) >= MAX_RUNNING:
                raise InputError(f"{len(_running)} trainings are already running on this server (the limit is "
                                 f"{MAX_RUNNING}); wait for one to finish")
            self.out_root.mkdir(parents=True, exist_ok=True)
            self.saved_as = _free_name(self.out_root, self.name)
            _reserved.add(str(self.out_root / self.saved_as))
            _running[id(self)] = self
        self.state, self.started = "running", time.perf_counter()
        self.touch()
        self._thread = threading.Thread(target=self._run, name=f"mmlab-train-{self.saved_as}", daemon=True)
        self._thread.start()
        return self

    def touch(self) -> None:
        """The tab that owns the job is still open."""
        self.last_seen = time.monotonic()

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

    def _stop_now(self) -> bool:
        if time.monotonic() - self.last_seen > HEARTBEAT_SECONDS:
            self.abandoned = True  # its tab went away: nobody will see the result
            return True
        return self._cancel.is_set()

    # -- the thread
    def _run(self) -> None:
        from mmlab.experiment import run
        from mmlab.train import Callback

        job = self

        class Recorder(Callback):
            def on_train_begin(self, total_steps):
                job.total_steps = total_steps
                return job._stop_now()

            def on_step(self, step, total_steps, logs):
                job.steps.append((step, float(logs["loss"])))
                return job._stop_now()

            def on_epoch_end(self, epoch, logs):
                job.history.append(dict(logs))
                return job._stop_now()

        try:
            result = run(self.experiment, self.out_root / self.saved_as, name=self.saved_as, callbacks=(Recorder(),),
                         manifest=True)
            if result.stopped:
                self.state = "cancelled"
                return
            self.entry = result.entry
            self.state = "done"
        except InputError as e:
            self.error, self.state = str(e), "failed"
        except Exception as e:  # noqa: BLE001 - the page shows one line; the log keeps the traceback
            import logging

            logging.getLogger(__name__).error("training job failed\n%s", traceback.format_exc())
            self.error, self.state = f"{type(e).__name__}: {e}", "failed"
        finally:
            self.seconds = time.perf_counter() - self.started
            import shutil

            if self.state != "done":  # nothing of a cancelled or failed run stays behind
                shutil.rmtree(self.out_root / (self.saved_as + ".resume"), ignore_errors=True)
            with _lock:
                _running.pop(id(self), None)
                _reserved.discard(str(self.out_root / self.saved_as))


def _train_size(exp) -> int | None:
    from mmlab.data import DATASETS

    info = DATASETS.get(exp.dataset)
    size = None
    if info is not None and info.sizes is not None and exp.dataset != "folder":
        n = info.sizes().get("train")
        size = n if isinstance(n, int) else None
    if exp.data_options.get("n"):
        size = int(exp.data_options["n"])
    if exp.train.max_train:
        size = min(size, exp.train.max_train) if size else exp.train.max_train
    return size


def estimate(exp, entries: list[dict]) -> str | None:
    """How long ``exp`` should take, from what the zoo's own runs took: their seconds per training pair
    per epoch, for the same strategy at the same input size (else any strategy at that size), times this
    run's pairs and epochs. A range, with where it comes from; None when nothing comparable was measured."""
    from mmlab.experiment import Experiment

    pairs = _train_size(exp)
    if not pairs:
        return None
    size = exp.model.image_size
    rates: dict[str, list[float]] = {"same": [], "size": []}
    for e in entries:
        try:
            other = Experiment.from_json(e["experiment"])
        except (KeyError, TypeError, ValueError, InputError):
            continue
        n = _train_size(other)
        seconds = e.get("train_seconds")
        other_size = (e.get("config") or {}).get("image_size")
        if not n or not isinstance(seconds, (int, float)) or seconds <= 0 or (size and other_size != size):
            continue
        rate = seconds / (n * other.train.epochs)
        rates["size"].append(rate)
        if other.model.fusion == exp.model.fusion and other.model.image_encoder == exp.model.image_encoder:
            rates["same"].append(rate)
    basis = "same" if rates["same"] else "size"
    if not rates[basis]:
        return None
    low, high = (min(rates[basis]) * pairs * exp.train.epochs, max(rates[basis]) * pairs * exp.train.epochs)

    def fmt(s: float) -> str:
        return f"{s / 60:.0f} min" if s >= 90 else f"{max(1, round(s))} s"

    what = f"{exp.model.fusion}" if basis == "same" else "strategies"
    span = fmt(low) if fmt(low) == fmt(high) else f"{fmt(low)} to {fmt(high)}"
    return (f"about {span} for {pairs:,} pairs x {exp.train.epochs} epochs (the zoo's {len(rates[basis])} "
            f"run(s) of {what}{f' at {size} px' if size else ''} on a 2-core CPU; longer while the machine is busy, "
            "plus the time to prepare the data)")
