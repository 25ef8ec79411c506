"""Streamlit pieces every page shares: the checkpoint and input pickers, cached calls into ``mmlab``, the
notices every answer and map owes its reader, downloads.

Widget state a teacher may want to share lives in the URL (``bind="query-params"``): ``ckpt``
(checkpoint), ``src`` (sample or your image), ``sample`` (index), ``text`` (the sentence), and each page's
own controls. A built-in sample always comes from the checkpoint's own test split (its dataset, with the
options it was trained with): a model is only run on inputs of its own kind, and anything else (your
picture, an unknown word) is named as such before any answer. User text is never read as Markdown.
"""
from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import streamlit as st

from mmlab import ui_state, viz
from mmlab.errors import InputError

IMAGE_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"]
SHOW = 256  # pixels a picture is shown at (its longer side)
SAMPLE, UPLOAD = "built-in sample", "your image"
FLAGSHIP = "shapes-mask-cross_attention"


class Sample(NamedTuple):
    """One input pair as the pages see it.

    image: (H, W, 3) uint8; text: the cleaned sentence; truth: the referred object's mask (S, S) uint8 or
    None; label: the true class name or None; source: "sample" or "upload"; dataset / index: where a sample
    came from; head: the sentence's head noun (the word that names the object) or None.
    """

    image: np.ndarray
    text: str
    truth: np.ndarray | None
    label: str | None
    source: str
    dataset: str | None = None
    index: int | None = None
    head: str | None = None


# ---- checkpoints ------------------------------------------------------------------------------
def _mtime(entry: dict) -> float:
    from pathlib import Path

    cfg = Path(entry["dir"]) / "config.json"
    return cfg.stat().st_mtime if cfg.exists() else 0.0


def mtime(entry: dict) -> float:
    return _mtime(entry)


def _load_model(directory: str, mtime: float):
    """The model of a checkpoint folder: ``mmlab.load`` keeps one shared, read-only copy per folder and
    modification time (thread-safe: ``predict`` holds the model's lock)."""
    import mmlab

    return mmlab.load(directory)


def load_model(entry: dict, where=None):
    """The model of a checkpoint entry (cached), or None after showing why it could not load."""
    try:
        return _load_model(entry["dir"], _mtime(entry))
    except InputError as e:
        (where or st).error(f"Cannot load checkpoint {entry['name']}: {e}")
        return None


def artifacts(entry: dict):
    """The checkpoint's stored results (``mmlab.artifacts``), or None when it has none for its weights."""
    from mmlab.artifacts import load

    return load(entry["dir"])


def checkpoints(want=None) -> list[dict]:
    """Every checkpoint (zoo + the user's), optionally filtered by ``want(entry) -> bool``."""
    entries, problems = ui_state.all_checkpoints()
    for p in problems:
        st.sidebar.warning(f"Skipped a broken manifest: {p}")
    return [e for e in entries if want is None or want(e)]


def no_checkpoint_message(where=None) -> None:
    (where or st).info(
        "No checkpoint to show yet. Train one on the **Train** page, or build the shipped zoo with "
        "`mmlab zoo train`; then pick it here.")


def is_photo(entry: dict | None) -> bool:
    """Is this the real-photo model (the zero-shot ImageNet bridge)?"""
    return bool(entry) and entry.get("strategy") == "concept_bridge"


def photo_checkpoint(entries: list[dict]) -> dict | None:
    """The real-photo model (``checkpoints/photo-*``), the default for your own pictures."""
    return next((e for e in entries if e["name"].startswith("photo-")), None)


def _default(entries: list[dict], prefer: str | None) -> int:
    """``prefer``, else the flagship, else the first shapes cross-attention mask model, else the first."""
    names = [e["name"] for e in entries]
    for name in (prefer, FLAGSHIP):
        if name in names:
            return names.index(name)
    for i, e in enumerate(entries):
        if e.get("dataset") == "shapes" and e.get("strategy") == "cross_attention" and e.get("task") == "mask":
            return i
    return 0


def pick_checkpoint(*, key: str = "ckpt", label: str = "Checkpoint", want=None, where=None,
                    prefer: str | None = None) -> dict | None:
    """A checkpoint picker (state in the URL as ``?{key}=name``); None with a message when there is none.
    ``prefer``: the name picked when the URL names none."""
    where = where or st.sidebar
    entries = checkpoints(want)
    if not entries:
        no_checkpoint_message(where)
        return None
    names = [e["name"] for e in entries]
    by_name = {e["name"]: e for e in entries}
    if key in st.session_state and st.session_state[key] not in names:  # picked on a page that offers more
        st.session_state[key] = names[_default(entries, prefer)]
    name = where.selectbox(label, names, index=_default(entries, prefer), key=key, bind="query-params")
    entry = by_name.get(name, entries[0])
    where.caption(ui_state.checkpoint_label(entry))
    with where.expander("About this checkpoint"):
        st.write({k: entry.get(k) for k in ("dataset", "data_options", "task", "strategy", "encoders", "parameters",
                                            "train_seconds", "tested_with") if entry.get(k)})
        st.write({k: round(v, 4) if isinstance(v, float) else v for k, v in (entry.get("metrics") or {}).items()})
        if entry.get("command"):
            st.code(entry["command"], language="bash")
    return entry


# ---- the input pair -------------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the model's test split…", max_entries=24)
def _split(model_dir: str, mtime: float, split: str):
    from mmlab.evaluate import shared_split

    return shared_split(_load_model(model_dir, mtime), split)  # the warm-up may have made it already


def checkpoint_split(entry: dict, split: str = "test"):
    """The checkpoint's own split (its dataset, with the options it was trained with; cached, read-only), or
    None after showing why not."""
    try:
        return _split(entry["dir"], _mtime(entry), split)
    except InputError as e:
        st.error(f"{entry['name']}: its data is not available here ({e})")
        return None


@st.cache_data(show_spinner=False, max_entries=64)
def _live_scores(model_dir: str, mtime: float, n: int) -> dict:
    from mmlab.evaluate import first_pairs_scores

    return first_pairs_scores(_load_model(model_dir, mtime), n)


def live_scores(entry: dict, n: int) -> dict | None:
    """A checkpoint's metrics on the first ``n`` pairs of its test split, computed now (bfloat16 where the CPU
    has it), or None when its data is not available here."""
    try:
        return _live_scores(entry["dir"], _mtime(entry), n)
    except InputError:
        return None


def _sync_sentence(key: tuple, sentence: str) -> None:
    """Put the sample's sentence in the text box when the sample changes (not on the first run of a shared
    link that carries its own ``?text=``)."""
    last = st.session_state.get("_sentence_for")
    if last is None:
        st.session_state["_sentence_for"] = key
        if "text" not in st.query_params and not st.session_state.get("text"):
            st.session_state["text"] = sentence
        return
    if last != key:
        st.session_state["_sentence_for"] = key
        st.session_state["text"] = sentence


def pick_source(where=None, *, allow_upload: bool = True) -> str:
    """Built-in sample or your image (in the URL as ``?src=``)."""
    if not allow_upload:
        return SAMPLE
    return (where or st).segmented_control("Input", [SAMPLE, UPLOAD], default=SAMPLE, key="src", bind="query-params",
                                           required=True) or SAMPLE


UPLOADED = "_uploaded"  # {"id", "name", "bytes", "text"}: the picture uploaded last in this session and the sentence
# typed for it; every page offers both


def _upload_changed() -> None:
    """The uploader's file removed by its x: forget the kept picture too (a page switch does not call this)."""
    if st.session_state.get("upload") is None:
        st.session_state.pop(UPLOADED, None)


def pick_input(entry: dict | None, *, source: str = SAMPLE, where=None, data=None) -> Sample | None:
    """A sample of the checkpoint's own test split (or ``data``), or an uploaded picture, plus a sentence.
    Shows the reason and returns None for bad input."""
    from mmlab.data.images import load_image
    from mmlab.data.text import clean_text

    where = where or st
    image, truth, label, ds_name, index, head = None, None, None, None, None, None
    if source == SAMPLE:
        if data is None:
            if entry is None:
                return None
            data = checkpoint_split(entry)
        if data is None or len(data) == 0:
            return None
        index = int(where.number_input(f"Sample of {data.name} (0–{len(data) - 1})", min_value=0,
                                       max_value=len(data) - 1, value=0, step=1, key="sample", bind="query-params"))
        image = viz.to_rgb(data.images[index])
        truth = None if data.masks is None else data.masks[index]
        label_t = data.targets.get("label")
        label = None if label_t is None else data.classes["label"][int(label_t[index])]
        heads = data.info.get("head_word")
        head = heads[index] if heads is not None else None
        ds_name = data.name
        _sync_sentence((ds_name, tuple(sorted((entry or {}).get("data_options", {}).items())), index), data.texts[index])
    else:
        upload = where.file_uploader("Upload a picture", type=IMAGE_TYPES, key="upload", on_change=_upload_changed,
                                     help="PNG, JPEG, GIF, BMP, WebP or TIFF. It stays in this session only.")
        kept = st.session_state.get(UPLOADED)
        arrived = st.session_state.get("_upload_page") != st.session_state.get("_page")  # first run of this page
        st.session_state["_upload_page"] = st.session_state.get("_page")
        if upload is not None and (kept is None or kept["id"] != upload.file_id):
            kept = st.session_state[UPLOADED] = {"id": upload.file_id, "name": upload.name, "bytes": upload.getvalue(),
                                                 "text": kept["text"] if kept else ""}
        if kept is None:
            where.info("Upload a picture, or switch to a built-in sample.")
        elif upload is None:  # uploaded on another page: a widget's file (and sentence) is gone once its page is left
            where.caption(f"Your picture from earlier in this session: {kept['name']}. Upload another to replace it.")
            if arrived and kept["text"] and "text" not in st.query_params:  # a shared link's own sentence stands
                st.session_state["text"] = kept["text"]
        if kept is not None:
            try:
                image = viz.to_rgb(load_image(kept["bytes"]))
            except InputError as e:
                st.session_state.pop(UPLOADED, None)  # other pages ask for a picture rather than repeat this
                where.error(f"This upload cannot be used: {e}")
    # drawn on every run, with or without a picture: a widget left out of one run loses its value (a new upload
    # replacing the last one runs the page once without any file, which emptied the sentence)
    raw = where.text_input("Sentence", key="text", bind="query-params", max_chars=2000,
                           help="Name one thing in the picture, e.g. 'the small red triangle left of the blue "
                                "circle' (a shapes scene) or 'the cat' (a photo).")
    if source != SAMPLE and UPLOADED in st.session_state:
        st.session_state[UPLOADED]["text"] = raw  # the sentence goes with the picture to the other pages
    if image is None:
        return None
    try:
        text = clean_text(raw)
    except InputError as e:
        where.error(f"{e}")
        return None
    return Sample(image=image, text=text, truth=truth, label=label, source="sample" if source == SAMPLE else "upload",
                  dataset=ds_name, index=index, head=head)


def trained(entry: dict) -> bool:
    """A checkpoint trained on a dataset (every one but the zero-shot photo model): the pages that ablate,
    project or compare a test split offer only these."""
    return not is_photo(entry)


def checkpoint_and_input(*, prefer_upload_default: bool = True, want=None) -> tuple[dict, Sample]:
    """The input source, then the checkpoint (the photo model by default for your own pictures, where
    ``want`` keeps it), then the pair; stops the page (after its message) when any is missing."""
    source = pick_source(st.sidebar)
    entry = pick_checkpoint(prefer=default_for(source, want) if prefer_upload_default else None, want=want)
    sample = pick_input(entry, source=source)
    if entry is None or sample is None or load_model(entry) is None:
        st.stop()
    return entry, sample


def default_for(source: str, want=None) -> str | None:
    """The checkpoint a source opens on: the photo model for your own pictures, the flagship for samples.
    A switch of source moves an automatically chosen checkpoint along (never one the user picked)."""
    entries = checkpoints(want)
    photo = photo_checkpoint(entries)
    wanted = photo["name"] if source == UPLOAD and photo else FLAGSHIP
    previous = st.session_state.get("_auto_ckpt")
    current = st.session_state.get("ckpt")
    if current is None or current == previous:
        if current != wanted and "ckpt" in st.session_state and current == previous:
            st.session_state["ckpt"] = wanted
        st.session_state["_auto_ckpt"] = wanted
    return wanted


# ---- cached model calls ---------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=256)
def predict(model_dir: str, mtime: float, image: np.ndarray, text: str, drop: str | None = None):
    """The Prediction for one pair (cached); raises InputError for bad input."""
    return _load_model(model_dir, mtime).predict(image, text, drop=drop)


@st.cache_data(show_spinner=False, max_entries=256)
def _latency_ms(model_dir: str, mtime: float, shape: tuple, repeats: int, _image: np.ndarray, _text: str) -> float:
    model = _load_model(model_dir, mtime)
    model.predict(_image, _text)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.predict(_image, _text)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def latency_ms(model_dir: str, mtime: float, image: np.ndarray, text: str, repeats: int = 5) -> float:
    """The median of ``repeats`` warm predictions of one pair, in milliseconds (a first call warms up), measured
    once per checkpoint and picture size: another sentence moves it by 3-7 % (5.0 against 5.4 ms for 2 and 14
    words on the flagship), and remeasuring six checkpoints cost Compare 36 passes per new sentence."""
    return _latency_ms(model_dir, mtime, tuple(np.shape(image)), repeats, _image=image, _text=text)


def predict_entry(entry: dict, sample: Sample, drop: str | None = None):
    """Prediction for a sample with a checkpoint entry; None after showing the error."""
    try:
        pred = predict(entry["dir"], _mtime(entry), sample.image, sample.text, drop)
    except InputError as e:
        st.error(f"{e}")
        return None
    notice = _load_model(entry["dir"], _mtime(entry)).text_notice(sample.text)
    if notice:
        st.info(notice[0].upper() + notice[1:] + ".")
    return pred


def domain_notice(pred, entry: dict, where=None) -> bool:
    """Say first when the pair is unlike what the checkpoint was trained on (the picture, or words it never
    saw). Returns True when the answer can be shown as an answer."""
    where = where or st
    check = pred.domain
    if is_photo(entry) and check is not None:  # the photo model takes any photo; the question is the words
        if check.in_distribution:
            where.success(viz.md_escape(check.reason[0].upper() + check.reason[1:]) + ".", icon=":material/search:")
            return True
        where.warning(f"**Not something this model can name.** {viz.md_escape(check.reason)}. It knows the 1,000 "
                      "ImageNet concepts (animals, objects, food, vehicles…), not people, sky, trees or flags.",
                      icon=":material/warning:")
        return False
    if check is None or check.in_distribution:
        return True
    if check.image_ok is False:
        where.warning(f"**Not this model's kind of picture.** {entry['name']} only ever saw "
                      f"{viz.md_escape(entry.get('dataset') or 'its training')} pictures, and this one is unlike "
                      f"them ({viz.md_escape(check.reason)}). What it answers below is not to be trusted."
                      + (" For a photo, pick the photo model." if not entry["name"].startswith("photo-") else ""),
                      icon=":material/warning:")
    else:
        where.warning(f"**Words this model never saw:** {', '.join(viz.md_escape(w) for w in check.unknown_words)}. "
                      "It reads them as unknown tokens; its answer ignores what they mean.", icon=":material/warning:")
    return False


@st.cache_data(show_spinner="Computing the map…", max_entries=256)
def explain(model_dir: str, mtime: float, image: np.ndarray, text: str, method: str, token: int | None,
            layer: int | None, head: int | None):
    """mmlab.explain.explain for one pair (cached): ExplainResult(map (h, w) in [0, 1], method_used, tokens, note)."""
    from mmlab.explain import explain as _explain

    # the pass already made: called exactly as predict_entry calls it (Streamlit keys a cached call by the arguments
    # as passed, so predict(..., text) and predict(..., text, None) would be two entries and two forward passes)
    pred = predict(model_dir, mtime, image, text, None) if method == "attention" else None
    return _explain(_load_model(model_dir, mtime), image, text, method, token=token, layer=layer, head=head,
                    prediction=pred)


def explain_entry(entry: dict, sample: Sample, method: str = "attention", *, token=None, layer=None, head=None):
    try:
        return explain(entry["dir"], _mtime(entry), sample.image, sample.text, method, token, layer, head)
    except InputError as e:
        st.error(f"{e}")
        return None


METHOD_NAMES = {"attention": "raw attention", "rollout": "attention rollout", "relevance": "relevance (Chefer et al.)",
                "gradcam": "Grad-CAM"}


def fidelity(entry: dict, method: str) -> str:
    """How far this checkpoint's maps of ``method`` can be trusted, measured on its test split; or why there is
    no such measure."""
    from mmlab.faithfulness import fidelity_line

    model = load_model(entry)
    line = fidelity_line(model.meta if model is not None else None, method)
    if line:
        return line[0].upper() + line[1:] + "."
    return ("Not graded on this checkpoint (its data names no object with a mask), so nothing says how often "
            "it lies on what the sentence names.")


def map_caption(result, word: str | None) -> str:
    """What a map is, never "where the model looks": its method and whose map it is."""
    who = f"'{word}'" if word else "the whole sentence"
    return f"{METHOD_NAMES.get(result.method_used, result.method_used)} of {who}"


# ---- showing and downloading ------------------------------------------------------------------
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def show_figure(fig, name: str, *, key: str, where=None, on_select=None, **kw):
    """A plotly figure (PNG from its camera button) plus an HTML download (opens offline)."""
    where = where or st
    config = {**PLOTLY_CONFIG, "toImageButtonOptions": {**PLOTLY_CONFIG["toImageButtonOptions"], "filename": name}}
    if on_select is not None:
        state = where.plotly_chart(fig, key=key, config=config, on_select=on_select, **kw)
    else:
        state = where.plotly_chart(fig, key=key, config=config, **kw)
    where.download_button("Download figure (HTML)", data=lambda: viz.figure_html(fig), file_name=f"{name}.html",
                          mime="text/html", key=f"{key}-html", on_click="ignore", icon=":material/download:")
    return state


def show_probabilities(table: dict, *, where=None) -> None:
    """Class probabilities (``viz.probs_table``, ``viz.probs_by_run_table``) as a table of bars: every column but
    the first (the class, or the run) a probability."""
    bars = st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0)
    (where or st).dataframe(table, hide_index=True, column_config={c: bars for c in list(table)[1:]})


def png_later(rgb: np.ndarray, columns: int | None = None):
    """A download's PNG made when the button is clicked, not on every run (encoding a photo: 0.1-0.4 s on machine
    B); ``columns``: ``rgb`` is a list of pictures, laid out in a montage of that many columns."""
    pictures = rgb if columns is None else list(rgb)

    def png() -> bytes:
        return viz.png_bytes(pictures if columns is None else viz.montage(pictures, columns=columns))

    return png


def show_picture(rgb: np.ndarray, name: str, *, caption: str | None = None, key: str, where=None) -> None:
    """A picture plus a PNG download."""
    where = where or st
    where.image(rgb, caption=caption, width="stretch")
    where.download_button("PNG", data=png_later(rgb), file_name=f"{name}.png", mime="image/png",
                          key=f"{key}-png", on_click="ignore", icon=":material/download:")


def download_table(df, name: str, *, key: str, where=None) -> None:
    (where or st).download_button("Download table (CSV)", data=df.to_csv(index=False).encode(), file_name=f"{name}.csv",
                                  mime="text/csv", key=key, on_click="ignore", icon=":material/download:")


def ensure_router() -> None:
    """Make sure ``app.py``'s ``st.navigation`` routes this session.

    Streamlit starts a server in its legacy "pages/ directory" mode when a ``pages/`` folder sits
    beside the entry file, and leaves it only once ``st.navigation`` has run. If the first request
    of a fresh server is a page's own URL (a shared link such as ``/playground?ckpt=...``), the
    page file runs without the router (plain sidebar, narrow layout) and the server stays in that
    mode. Switching the mode off and rerunning lets ``app.py`` route the same URL.

    Not under ``AppTest``: it resets that mode before every run, so each run would rerun once
    and drop the run's button clicks; there the page files run directly, which is what they test.
    """
    from streamlit import config
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and not config.get_option("global.appTest"):
        PagesManager.uses_pages_directory = False
        st.rerun()


def page_header(title: str, intro: str) -> None:
    ensure_router()
    st.session_state["_page"] = title  # the page this run draws (pick_input: what carries over from another)
    st.title(title)
    st.caption(intro)


# ---- training options ---------------------------------------------------------------------------
def trainable_datasets() -> dict[str, tuple[str, dict]]:
    """{shown name: (dataset, options)}: the built-in datasets a model trains on, then the user's uploads."""
    from mmlab.data import trainable, user

    out = {name: (name, {}) for name in trainable()}
    out.update({f"yours: {name}": ("folder", user.options(name)) for name in user.names()})
    return out


def option_widgets(*, exclude: set[str], key: str = "t_opt") -> dict:
    """A widget for every training option (``mmlab.experiment.options``) not in ``exclude``, from its type,
    choices, bounds and help: a new option in the configs appears here by itself. Returns {name: value}."""
    from mmlab.experiment import options

    values = {}
    for opt in options():
        if opt.name in exclude:
            continue
        meta, kind, label = opt.field.metadata, str(opt.field.type), opt.name.replace("_", " ")
        help_, k = meta.get("help") or None, f"{key}_{opt.name}"
        if meta.get("choices"):
            choices = list(meta["choices"])
            values[opt.name] = st.selectbox(label, choices, index=choices.index(opt.default), key=k, help=help_)
        elif kind == "bool":
            values[opt.name] = st.checkbox(label, value=opt.default, key=k, help=help_)
        elif kind.startswith("int") or kind.startswith("float"):
            is_int = kind.startswith("int")
            lo, hi = meta.get("low"), meta.get("high")
            values[opt.name] = st.number_input(label, min_value=lo, max_value=hi, value=opt.default,
                                               step=1 if is_int else None, format=None if is_int else "%g",
                                               key=k, help=help_)
        elif kind == "dict":
            values[opt.name] = st.text_input(label, value=", ".join(f"{a}={b}" for a, b in (opt.default or {}).items()),
                                             key=k, help=(help_ or "") + " (key=value, comma-separated)")
        elif kind == "tuple":
            values[opt.name] = st.text_input(label, value=",".join(opt.default), key=k, help=help_)
        else:
            values[opt.name] = st.text_input(label, value=opt.default or "", key=k, help=help_)
    return values


def experiment_from_form(dataset: tuple[str, dict], *, more: dict, **values):
    """The ``Experiment`` of the Train form: the dataset (name, options), the main widgets' values and the
    "More options" widgets' (dict options typed as key=value text, lists as comma-separated text)."""
    from mmlab.experiment import _key_values, from_options, options

    kinds = {o.name: str(o.field.type) for o in options()}
    parsed = {}
    for name, v in more.items():
        if kinds[name] == "dict" and isinstance(v, str):
            v = _key_values([p.strip() for p in v.split(",") if p.strip()], name)
        elif kinds[name] == "tuple" and isinstance(v, str):
            v = tuple(t.strip() for t in v.split(",") if t.strip())
        elif kinds[name].startswith("int") and isinstance(v, float) and v.is_integer():
            v = int(v)
        parsed[name] = v
    name, data_options = dataset
    parsed["data_options"] = {**data_options, **(parsed.get("data_options") or {})}
    return from_options(dataset=name, **{**parsed, **values})


def photo_answer(entry: dict, sample: Sample, pred, *, alpha: float = 0.6, where=None) -> None:
    """The photo model's answer: what it looked for, and where it found it (map, peak, box) on the photo itself,
    with how often its peak lands on the named thing on photos it never saw."""
    from mmlab.photo import located

    where = where or st
    model = load_model(entry)
    if model is None:
        return
    found = located(pred, model.image_encoder.grid)
    concept, weight = next(iter(found.looked_for.items()))
    where.metric("Looking for", concept, help="the ImageNet concept the sentence's main word names (MiniLM "
                 "similarity between the word and the 1,000 class names)")
    square = np.asarray(pred.extras["sentence_attention"], np.float32).reshape(model.image_encoder.grid)
    picture = viz.overlay(sample.image, square, alpha=alpha, size=SHOW)
    picture = viz.mark(picture, sample.image.shape[:2], point=found.peak, box=found.box)
    show_picture(picture, "found", caption="where it finds it: the map, its peak (ring) and the region around "
                 "the peak (box)", key="found", where=where)
    line = fidelity(entry, "attention")
    if line:
        where.caption(line)
