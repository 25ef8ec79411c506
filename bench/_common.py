"""What every benchmark in ``bench/`` shares: options, the machine record, the device, timing,
the models to measure (shipped checkpoints where they exist, else untrained models of the same
config), and the one JSON object each script prints.

Each script runs as ``python bench/<name>.py [--quick]`` and prints ONE JSON object on stdout
(everything else goes to stderr). ``--quick`` shrinks every size so that the script only checks
that it works; its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing: `python bench/x.py`
    sys.path.insert(1, str(ROOT))

SHAPES_CLASSES = 4


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: --quick, --threads, --device."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script works (numbers meaningless)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's own; 1 with --quick)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA (with bf16 autocast) when available, else CPU")
    return p


def setup(args: argparse.Namespace):
    """Apply --threads; return the torch.device to run on."""
    import torch

    threads = args.threads if args.threads else (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch.cuda.is_available() is False")
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    return torch.device("cuda") if use_cuda else torch.device("cpu")


def machine(device=None) -> dict[str, Any]:
    """The machine a figure was taken on."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": cuda,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
        "device": str(device) if device is not None else ("cuda" if cuda else "cpu"),
        "mixed_precision": ("bf16 autocast" if _AMP["on"] else _AMP["note"])
        if device is not None and device.type == "cuda" else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def emit(name: str, args: argparse.Namespace, device, result: dict) -> None:
    """Print the benchmark's one JSON object on stdout."""
    out = {"benchmark": name, "quick": bool(args.quick), "machine": machine(device), **result}
    sys.stdout.write(json.dumps(out, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(v):
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def log(*parts) -> None:
    """Progress for a person watching: stderr, never stdout."""
    print(*parts, file=sys.stderr, flush=True)


_AMP = {"on": True, "note": None}


def amp(device):
    """bf16 autocast on CUDA (unless ``with_amp_fallback`` switched it off); nothing on the CPU."""
    import torch

    if device is not None and device.type == "cuda" and _AMP["on"]:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def with_amp_fallback(fn: Callable[[], Any], device) -> Any:
    """``fn()``; on CUDA, if it fails under bf16 autocast, switch autocast off for the rest of the
    run, note why (``amp_note()``) and call ``fn()`` again in full precision."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - retried once without autocast, else raised
        if device is None or device.type != "cuda" or not _AMP["on"]:
            raise
        _AMP.update(on=False, note=f"bf16 autocast failed ({type(e).__name__}: {str(e)[:200]}); ran in float32")
        log(_AMP["note"])
        return fn()


def amp_note() -> str | None:
    return _AMP["note"]


def sync(device) -> None:
    import torch

    if device is not None and device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device=None) -> tuple[float, Any]:
    """(seconds, result) of one call, with CUDA synchronised around it."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """p50 / p95 / mean / min in milliseconds of repeated timings."""
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, max(0, int(round(0.95 * len(ms))) - 1))]
    return {"p50_ms": round(statistics.median(ms), 3), "p95_ms": round(p95, 3),
            "mean_ms": round(statistics.fmean(ms), 3), "min_ms": round(ms[0], 3), "n": len(ms)}


def rounded(seconds: float) -> float:
    return round(float(seconds), 4)


# ---- models ----------------------------------------------------------------------------------
def zoo_entries() -> list[dict]:
    """The shipped trained checkpoints (``mmlab.zoo.list_checkpoints()``; ``$MMLAB_CHECKPOINTS`` moves the zoo):
    the photo model, which has no split to score, has its own benchmark (``bench/photo.py``)."""
    from mmlab import zoo

    return [e for e in zoo.list_checkpoints() if e.get("experiment")]


def zoo_root() -> str:
    from mmlab import zoo

    return str(zoo.root())


def load_entry(entry: dict):
    """A zoo checkpoint as a fresh model (not the process-wide cache, so timings start cold)."""
    from mmlab.checkpoint import load

    return load(entry["dir"])


def untrained(fusion: str, *, dim: int = 64, mask: bool = True, seed: int = 0):
    """An untrained shapes model of the zoo's config (SmallCNN + BiGRU, ``dim``, label head, mask
    decoder), for a strategy that has no shipped checkpoint. Returns (model, description)."""
    import torch

    from mmlab.config import ModelConfig
    from mmlab.data import load_dataset
    from mmlab.data.tokenizer import WordTokenizer
    from mmlab.model import build_model

    train = load_dataset("shapes", "train", n=512)
    torch.manual_seed(seed)
    cfg = ModelConfig(fusion=fusion, targets={"label": SHAPES_CLASSES}, mask=mask, dim=dim)
    model = build_model(cfg, classes={"label": train.classes["label"]}, tokenizer=WordTokenizer.fit(train.texts).to_json())
    model.eval()
    return model, f"untrained {fusion}: shapes, cnn + bigru, dim {dim}, mask {mask}"


def model_dataset(model, entry: dict | None) -> tuple[str, dict]:
    """(dataset name, options) the model was trained on; shapes for an untrained model."""
    meta = getattr(model, "meta", None) or {}
    name = (entry or {}).get("dataset") or meta.get("dataset") or "shapes"
    return name, dict(meta.get("data_options") or {})


def test_split(name: str, n: int, options: dict | None = None, split: str = "test"):
    """The first ``n`` pairs of a dataset's test split (loading only those where the loader can)."""
    from mmlab.data import load_dataset
    from mmlab.errors import InputError

    options = dict(options or {})
    try:
        data = load_dataset(name, split, **{**options, "n": n})
    except (InputError, TypeError):
        data = load_dataset(name, split, **options)
    return data.subset(range(min(n, len(data)))) if len(data) > n else data


def on_device(model, device):
    """The model on ``device`` (a no-op on the CPU)."""
    return model if device.type == "cpu" else model.to(device)


def predict_pair(model, image, text: str, device):
    """``Model.predict`` for one pair, on ``device``. On the CPU it is ``model.predict`` itself;
    on CUDA the same steps (clean, preprocess, tokenize, forward under bf16 autocast, outputs back
    to the CPU, ``Model._prediction``), because ``Model.predict`` builds its tensors on the CPU."""
    if device.type == "cpu":
        return model.predict(image, text)
    import torch

    from mmlab.data.text import clean_text
    from mmlab.distributed import move

    text = clean_text(text)
    with torch.inference_mode(), amp(device):
        x = model.preprocess([image])[0].to(device)
        out = model(x, move(model.tokenize([text]), device))
        out = move(out, torch.device("cpu"))
    return model._prediction(out, text)


def run_guarded(fn: Callable[[], dict]) -> dict:
    """``fn()``; an exception becomes {"error": "<type>: <message>"} so one failure does not hide the rest."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - a benchmark reports what failed and goes on
        return {"error": f"{type(e).__name__}: {e}"[:500]}
