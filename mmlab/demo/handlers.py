"""The demo's handlers: plain functions from the widgets' values to the outputs.

They run without a server (the tests call them directly). Refused input (``InputError``)
becomes ``gr.Error(message)``: a visible message in the page and an error from the API,
never a stack trace; any other failure becomes a short ``gr.Error`` too and is logged.
"""
from __future__ import annotations

import base64
import logging
import os
import threading
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: the demo runs offline

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import mmlab  # noqa: E402
from mmlab import zoo  # noqa: E402
from mmlab.data.images import ImageLike, load_image  # noqa: E402
from mmlab.data.text import clean_text  # noqa: E402
from mmlab import viz  # noqa: E402
from mmlab.errors import InputError  # noqa: E402

log = logging.getLogger(__name__)

DISPLAY_SIDE = 384  # longer side of the pictures the demo shows, in pixels
WHOLE_SENTENCE = "(whole sentence)"
TRAIN_HINT = "mmlab train --task mask --fusion cross_attention --out {root}/shapes-mask-cross_attention --manifest"

# sample photos bundled with scikit-image (no download) and a sentence for each
PHOTOS: tuple[tuple[str, str], ...] = (
    ("chelsea", "the cat"),
    ("astronaut", "the model of the space shuttle"),
    ("astronaut", "the black helmet"),
    ("rocket", "the rocket on the launch pad"),
    ("astronaut", "the woman"),  # a thing ImageNet has no concept for: the model says so
)

_load_lock = threading.Lock()


# ---- checkpoints ------------------------------------------------------------------------
def checkpoint_names(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the zoo's checkpoints under ``root`` (default: the shipped ``checkpoints/``)."""
    return [e["name"] for e in zoo.list_checkpoints(root)]


def headline(entry: dict) -> str:
    """The one figure a checkpoint is known by: its mask IoU, else its accuracy (never a count)."""
    metrics = entry.get("metrics") or {}
    for key in ("iou", "accuracy", "pointing"):
        if isinstance(metrics.get(key), float):
            return f"{key} {metrics[key]:.2f}"
    return ""


def checkpoint_choices(root: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """(shown label, name) per checkpoint, the real-photo model first (the default):
    "name · strategy · task · iou 0.96"."""
    entries = sorted(zoo.list_checkpoints(root), key=lambda e: not e["name"].startswith("photo-"))
    out = []
    for e in entries:
        parts = [e["name"], e.get("strategy"), e.get("task"), headline(e)]
        out.append((" · ".join(str(p) for p in parts if p), e["name"]))
    return out


def no_checkpoint_message(root: str | os.PathLike | None = None) -> str | None:
    """A one-paragraph message when the zoo is empty, else None."""
    if checkpoint_names(root):
        return None
    folder = zoo.root(root)
    return (f"No trained checkpoint found in `{folder}`. Train one first, e.g. "
            f"`{TRAIN_HINT.format(root=folder)}`, then reload this page.")


def load(name: str | None, root: str | os.PathLike | None = None):
    """The zoo's model named ``name`` (loaded once per process, then cached). Only manifest
    names are accepted, never folder paths. Raises ``InputError``."""
    entries = {e["name"]: e for e in zoo.list_checkpoints(root)}
    if not entries:
        raise InputError(no_checkpoint_message(root) or "no checkpoint available")
    if not name:
        raise InputError(f"choose a checkpoint: {', '.join(entries)}")
    if name not in entries:
        raise InputError(f"no checkpoint named {name!r}; choose one of: {', '.join(entries)}")
    with _load_lock:  # concurrent first requests load it once
        return mmlab.load(entries[name]["dir"])


# ---- inputs -----------------------------------------------------------------------------
REFUSED_PATH = "image must be uploaded to this demo (send the picture itself, not a path on the server)"
EXPIRED = "the picture is no longer on the server (uploads are deleted after a while): upload it again"
MAX_DATA_URL_BYTES = 20 * 1024 * 1024  # the same limit as the demo's uploads (``app.MAX_UPLOAD``)


def upload_folders() -> tuple[Path, ...]:
    """Where files uploaded to a Gradio server land (Gradio's cache): the only folder whose files
    the demo opens by path, besides its own examples."""
    from gradio.utils import get_upload_folder

    return (Path(get_upload_folder()),)


def _inside(path: Path, folders) -> bool:
    real = Path(os.path.realpath(path))
    for folder in folders:
        root = Path(os.path.realpath(folder))
        if real != root and real.is_relative_to(root):
            return True
    return False


def image_source(value, allowed=None) -> ImageLike:
    """What the image widget sends (Gradio's file payload dict, a file path, bytes, an array or a
    PIL image) -> something ``load_image`` reads. Raises ``InputError`` when empty or refused.

    A path, given alone or inside a payload, is opened only when it lies inside one of ``allowed``
    (default: Gradio's upload folder), after resolving ``..`` and symbolic links: the handlers run
    with ``preprocess=False``, so a caller of the API could otherwise name any file on the server.
    Every refused path gets the same message, whether or not the file exists (no existence oracle).
    """
    folders = upload_folders() if allowed is None else tuple(allowed)
    if value is None or (isinstance(value, (str, bytes)) and not value):
        raise InputError("no image: pick an example or upload a picture")
    if isinstance(value, dict):
        path, url = value.get("path"), value.get("url") or ""
        if path:
            value = path
        elif isinstance(url, str) and url.startswith("data:") and "," in url:
            encoded = url.split(",", 1)[1]
            if len(encoded) > MAX_DATA_URL_BYTES * 4 // 3 + 4:
                raise InputError(f"image upload too large (limit {MAX_DATA_URL_BYTES // 2**20} MB)")
            try:
                return base64.b64decode(encoded, validate=False)
            except ValueError:
                raise InputError("image data is not valid base64") from None
        elif url:
            raise InputError(REFUSED_PATH)
        else:
            raise InputError("no image: pick an example or upload a picture")
    if isinstance(value, (str, os.PathLike)):
        try:
            if not _inside(Path(value), folders):
                raise InputError(REFUSED_PATH)
            uploaded = os.path.isfile(value)
        except (OSError, ValueError):  # a NUL byte, an unreadable link: refused the same way
            raise InputError(REFUSED_PATH) from None
        if not uploaded:  # inside the upload folder, deleted on schedule (``app.DELETE_CACHE``)
            raise InputError(EXPIRED)
        return str(value)
    return value


def _unique(tokens: list[str]) -> list[str]:
    return list(dict.fromkeys(tokens))


# ---- handlers ---------------------------------------------------------------------------
def _answer(image, text, checkpoint, token, root, allowed):
    from mmlab.explain import explain, word_index
    from mmlab.faithfulness import fidelity_line

    model = load(checkpoint, root)
    text = clean_text(text)
    picture = load_image(image_source(image, allowed))
    rgb = np.asarray(picture, dtype=np.uint8)
    pred = model.predict(picture, text)
    word = None if token in (None, "", WHOLE_SENTENCE) else token
    notes: list[str] = []
    check = pred.domain
    trusted = check is None or check.in_distribution
    photo_model = model.cfg.fusion == "concept_bridge"
    if photo_model:  # the photo model takes any photo: what matters is whether the sentence names a concept
        notes.append(("**Looking for:** " if trusted else "**Not something this model can name.** ")
                     + viz.md_escape(check.reason[0].upper() + check.reason[1:]) + ".")
    elif not trusted:  # said before anything else, and no confident answer in its place
        notes.append(("**Not this model's kind of picture.** " if check.image_ok is False else "**Unknown words.** ")
                     + viz.md_escape(check.reason[0].upper() + check.reason[1:]) + ".")
    notice = model.text_notice(text)
    if notice:
        notes.append(notice[0].upper() + notice[1:] + ".")
    # the same map the app shows: mean over layers and heads (Grad-CAM where there is no attention)
    result = explain(model, picture, text, "attention", token=word_index(pred.tokens, word), prediction=pred)
    att_img = viz.overlay(rgb, result.map, size=DISPLAY_SIDE)
    box = None
    if photo_model:  # its answer is a place: the map's peak (ring) and the region around it (box)
        from mmlab.photo import box_around_peak

        box = box_around_peak(result.view.to_original(result.map))
        att_img = viz.mark(att_img, rgb.shape[:2], point=result.view.peak(result.map), box=box)
    kind = {"attention": "attention (mean of layers and heads)", "gradcam": "Grad-CAM"}.get(result.method_used,
                                                                                            result.method_used)
    fidelity = fidelity_line(model.meta, result.method_used)
    notes.append(f"The map is {kind} of {('the word ' + repr(word)) if word else 'the whole sentence'}: "
                 + (fidelity + "." if fidelity else "how often it lies on the named thing is not measured here."))
    mask_img = viz.mask_overlay(rgb, pred.mask, size=DISPLAY_SIDE) if pred.mask is not None else None
    if photo_model:
        notes.append("The photo model draws no mask: its answer is the ring (the map's peak) and the box around it.")
    elif pred.mask is None:
        notes.append("This checkpoint predicts no mask.")
    if pred.label is None:
        notes.append("This checkpoint predicts no class.")
    x, y = result.view.peak(result.map)
    details = {
        "checkpoint": checkpoint,
        "strategy": model.cfg.fusion,
        "in_distribution": None if check is None else check.in_distribution,
        "reason": None if check is None else check.reason,
        "unknown_words": [] if check is None else check.unknown_words,
        "label": pred.label,
        "probabilities": {c: round(p, 4) for c, p in (sorted(pred.probs.items(), key=lambda kv: -kv[1])[:20]
                                                     if len(pred.probs) > 50 else pred.probs.items())},
        "tokens": list(pred.tokens),
        "token": word or WHOLE_SENTENCE,
        "method": result.method_used,
        "peak": [x, y],  # in the picture's own pixels
        "box": None if box is None else list(box),  # [x0, y0, x1, y1] in the picture's own pixels (photo model)
        "attention": np.round(result.map, 4).tolist(),  # (h, w) over the model's square input
        "mask": None if pred.mask is None else np.round(pred.mask, 3).tolist(),  # (S, S)
        "notes": notes,
    }
    summary = "  \n".join(notes + [f"**Tokens:** {viz.md_escape(' · '.join(pred.tokens) or '(none)')}  \n"
                                    f"**Strategy:** `{model.cfg.fusion}`"])
    if photo_model:  # the answer is the concept it looked for (its place is on the map), not a class probability
        return (pred.label if trusted else {}), att_img, mask_img, details, summary
    return (dict(pred.probs) if trusted else {}), att_img, mask_img, details, summary


def predict(image, text: str, checkpoint: str | None, token: str | None = WHOLE_SENTENCE, *,
            root: str | os.PathLike | None = None, allowed=None):
    """Answer one (image, sentence) pair with one zoo checkpoint.

    Returns (probabilities {class: p} (the photo model: the ImageNet concept it looked for), or {} when
    the pair is not of the model's kind: no confident answer then; the map overlay (H, W, 3) uint8; the mask overlay or None; details (JSON-able:
    in_distribution and reason, label, probabilities, tokens, the map (h, w) and its peak in the
    picture's pixels, mask (S, S), notes); a Markdown summary whose first line is the domain notice).
    H, W: the picture with its shape kept, longer side ``DISPLAY_SIDE``. Raises ``gr.Error`` with a
    one-line message.
    ``allowed``: the folders whose files may be opened by path (``image_source``).
    """
    try:
        return _answer(image, text, checkpoint, token, root, allowed)
    except InputError as e:
        raise gr.Error(str(e), title="Cannot answer", print_exception=False) from None
    except gr.Error:
        raise
    except Exception as e:  # noqa: BLE001 - the server keeps serving; the log has the details
        log.exception("demo prediction failed")
        raise gr.Error(f"prediction failed ({type(e).__name__}); see the server log",
                       print_exception=False) from None


def token_choices(text: str, checkpoint: str | None, *, root: str | os.PathLike | None = None) -> list[str]:
    """Choices of the 'attention of' menu: the whole sentence, then each distinct token.
    Never raises: bad text or no checkpoint gives just the whole sentence."""
    try:
        model = load(checkpoint, root)
        return [WHOLE_SENTENCE] + _unique(model.text_encoder.token_strings(clean_text(text)))
    except InputError:
        return [WHOLE_SENTENCE]


def prepare_examples(directory: str | os.PathLike, *, n_shapes: int = 6) -> list[list[str]]:
    """Write the example pictures to ``directory`` (no network): scikit-image's bundled photos with a
    sentence naming one thing in each (for the photo model, the demo's default), then ``n_shapes`` scenes
    of the shapes test split with their own sentences (for the shapes models). Returns rows [path, sentence]."""
    from mmlab.data import load_dataset

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        import skimage.data
    except ImportError:  # the photos are a bonus; the shapes are enough
        skimage = None
    for name, sentence in PHOTOS if skimage is not None else ():
        try:
            picture = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - a photo the installed version lacks (or would download)
            continue
        path = out / f"{name}.png"
        if not path.exists():
            Image.fromarray(np.asarray(picture, dtype=np.uint8)).save(path)
        rows.append([str(path), sentence])
    data = load_dataset("shapes", "test", n=n_shapes)
    for i in range(len(data)):
        path = out / f"shapes_{i}.png"
        Image.fromarray(data.images[i].transpose(1, 2, 0)).save(path)  # (3, S, S) -> (S, S, 3)
        rows.append([str(path), data.texts[i]])
    return rows
