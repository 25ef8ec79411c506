"""Data: browse the built-in datasets; add your own (a zip with metadata.csv / metadata.jsonl, or a folder from the
server's data folder when its owner set one), checked row by row, kept so you can train on it and compare."""
import numpy as np
import pandas as pd
import streamlit as st

from mmlab import viz
from mmlab.errors import InputError
from pages import _ui as ui

PER_PAGE = 12
COLUMNS = 6
THUMB = 128

ui.page_header("Data", "Browse the built-in datasets: images, sentences, masks and labels. Or add your own data "
               "(a zip with metadata.csv / metadata.jsonl) and get clear messages about any bad row; it is kept "
               "so you can train on it (Train page) and compare models on it.")


def split_table(data) -> pd.DataFrame:
    """One row per pair: index, sentence, every target by class name."""
    rows = {"index": np.arange(len(data)), "text": data.texts}
    for t, values in data.targets.items():
        names = data.classes.get(t)
        rows[t] = [names[int(v)] if names else int(v) for v in values]
    if data.masks is not None:
        rows["mask pixels"] = data.masks.reshape(len(data), -1).sum(1)
    return pd.DataFrame(rows)


def gallery(data, start: int, *, key: str) -> None:
    """A page of thumbnails (the mask outlined in green where there is one), captions below (as plain text)."""
    stop = min(len(data), start + PER_PAGE)
    pictures = []
    for row_start in range(start, stop, COLUMNS):
        cols = st.columns(COLUMNS)
        for col, i in zip(cols, range(row_start, min(stop, row_start + COLUMNS))):
            truth = None if data.masks is None else data.masks[i]
            pic = viz.mask_overlay(data.images[i], None, truth=truth, size=THUMB)
            pictures.append(pic)
            label = data.targets.get("label")
            name = "" if label is None else f" · {data.classes['label'][int(label[i])]}"
            col.image(pic, width="stretch")
            col.caption(viz.md_escape(f"#{i}{name}  {data.texts[i]}"))
    if pictures:
        st.download_button("Download this page (PNG)", ui.png_later(pictures, columns=COLUMNS),
                           file_name=f"{key}-{start}.png", mime="image/png", key=f"{key}-png", on_click="ignore",
                           icon=":material/download:")


def browse(data, *, key: str) -> None:
    st.caption(f"{len(data)} pairs · images {data.images.shape[-1]}×{data.images.shape[-1]} px · targets: "
               + ", ".join(f"{viz.md_escape(t)} ({len(data.classes.get(t, []))} classes)" for t in data.targets)
               + (" · masks" if data.masks is not None else ""))
    pages = max(1, -(-len(data) // PER_PAGE))
    page = st.number_input(f"Page (1–{pages})", 1, pages, 1, key=f"{key}_page", bind="query-params")
    gallery(data, (int(page) - 1) * PER_PAGE, key=key)
    table = split_table(data)
    with st.expander("All pairs as a table"):
        st.dataframe(table, hide_index=True)
    ui.download_table(table, key, key=f"{key}-csv")


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=12)
def _dataset(name: str, split: str):
    from mmlab.data import load_dataset

    return load_dataset(name, split)


@st.cache_resource(show_spinner="Loading your dataset…", max_entries=12)
def _yours(name: str):
    from mmlab.data import user
    from mmlab.data.folder import load_folder

    return load_folder(user.options(name)["path"], split="all")


built_in, yours = st.tabs(["Built-in datasets", "Your own data"], key="dtab", bind="query-params",
                          on_change="rerun")

if built_in.open:
    with built_in:
        from mmlab.data import DATASETS, trainable

        names = trainable()
        c1, c2 = st.columns(2)
        name = c1.selectbox("Dataset", names, key="data", bind="query-params")
        info = DATASETS[name]
        split = c2.selectbox("Split", list(info.splits), index=list(info.splits).index("test")
                             if "test" in info.splits else 0, key="split", bind="query-params")
        st.markdown(f"**{name}**: {viz.md_escape(info.description)}")
        try:
            data = _dataset(name, split)
        except InputError as e:
            st.error(f"Dataset {name!r} is not available: {e}")
            data = None
        if data is not None:
            browse(data, key=f"{name}-{split}")

if yours.open:
    with yours:
        from mmlab.data import user
        from mmlab.data.folder import data_folders, load_folder, resolve_data_folder

        st.markdown(
            "A folder of images plus **metadata.csv** (or metadata.jsonl) with the columns `file_name` (relative "
            "to the folder), `text`, `label`, and optionally `mask_file` and `split`, the Hugging Face ImageFolder "
            "convention. Zip the folder and upload it. Every row is checked: missing files, bad images and paths "
            "that leave the folder are reported with their row numbers.")
        upload = st.file_uploader("Upload a zip", type=["zip"], key="zip")
        try:
            served = data_folders()
        except InputError:
            served = None
        picked_folder = None
        if served:
            picked_folder = st.selectbox("…or a folder of this server's data folder", [""] + served, key="folder",
                                         help="the folders under the data folder its owner set (MMLAB_DATA_ROOT)")
        loaded = None
        try:
            if upload is not None:
                done = st.session_state.setdefault("_saved_uploads", {})  # each upload is kept once
                if upload.file_id not in done:
                    saved_as, _ = user.save_zip(upload.getvalue(), upload.name.rsplit(".", 1)[0])
                    done[upload.file_id] = saved_as
                    st.session_state["mine"] = saved_as
                loaded = _yours(done[upload.file_id])
                st.success(f"Loaded {len(loaded)} pairs, {len(loaded.classes['label'])} labels, kept as "
                           f"“yours: {done[upload.file_id]}”: pick it on the Train page to train a model on it.")
            elif picked_folder:
                loaded = load_folder(resolve_data_folder(picked_folder), split="all")
                st.success(f"Loaded {len(loaded)} pairs, {len(loaded.classes['label'])} labels.")
        except InputError as e:
            st.error(f"This dataset cannot be used: {e}")
        kept = user.names()
        if picked_folder and loaded is not None:
            browse(loaded, key="your-data")
        elif kept:
            if st.session_state.get("mine") not in kept:
                st.session_state["mine"] = kept[-1]
            name = st.selectbox("Your datasets", kept, key="mine")
            try:
                browse(_yours(name), key="your-data")
            except InputError as e:
                st.error(f"{e}")
