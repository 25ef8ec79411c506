"""Data: browse the built-in datasets; load and validate your own folder or zip with metadata.csv."""
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from mmlab import viz
from mmlab.errors import InputError
from pages import _ui as ui

PER_PAGE = 12
COLUMNS = 6
THUMB = 128

ui.page_header("Data", "Browse the built-in datasets: images, sentences, masks and labels. Or load your own data "
               "(a folder or a zip with metadata.csv / metadata.jsonl) and get clear messages about any bad row.")


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
    """A page of thumbnails (the mask outlined in green where there is one), captions below."""
    stop = min(len(data), start + PER_PAGE)
    pictures = []
    for row_start in range(start, stop, COLUMNS):
        cols = st.columns(COLUMNS)
        for col, i in zip(cols, range(row_start, min(stop, row_start + COLUMNS))):
            truth = None if data.masks is None else data.masks[i]
            pic = viz.mask_overlay(data.images[i], None, truth=truth, size=THUMB)
            pictures.append(pic)
            label = data.targets.get("label")
            name = "" if label is None else f" · **{data.classes['label'][int(label[i])]}**"
            col.image(pic, width="stretch")
            col.caption(f"#{i}{name}  \n{data.texts[i]}")
    if pictures:
        sheet = viz.montage(pictures, columns=COLUMNS)
        st.download_button("Download this page (PNG)", viz.png_bytes(sheet), file_name=f"{key}-{start}.png",
                           mime="image/png", key=f"{key}-png", on_click="ignore", icon=":material/download:")


def browse(data, *, key: str) -> None:
    st.caption(f"{len(data)} pairs · images {data.images.shape[-1]}×{data.images.shape[-1]} px · targets: "
               + ", ".join(f"{t} ({len(data.classes.get(t, []))} classes)" for t in data.targets)
               + (" · masks" if data.masks is not None else ""))
    pages = max(1, -(-len(data) // PER_PAGE))
    page = st.number_input(f"Page (1–{pages})", 1, pages, 1, key=f"{key}_page", bind="query-params")
    gallery(data, (int(page) - 1) * PER_PAGE, key=key)
    table = split_table(data)
    with st.expander("All pairs as a table"):
        st.dataframe(table, hide_index=True)
    ui.download_table(table, key, key=f"{key}-csv")


built_in, yours = st.tabs(["Built-in datasets", "Your own data"], key="dtab", bind="query-params",
                          on_change="rerun")

if built_in.open:
    with built_in:
        from mmlab.data import DATASETS

        names = [n for n in DATASETS if n not in ui.SKIP_DATASETS]
        c1, c2 = st.columns(2)
        name = c1.selectbox("Dataset", names, key="data", bind="query-params")
        info = DATASETS[name]
        split = c2.selectbox("Split", list(info.splits), index=list(info.splits).index("test")
                             if "test" in info.splits else 0, key="split", bind="query-params")
        st.markdown(f"**{name}**: {info.description}")
        data = ui.dataset(name, split)
        if data is not None:
            browse(data, key=f"{name}-{split}")

if yours.open:
    with yours:
        st.markdown(
            "A folder of images plus **metadata.csv** (or metadata.jsonl) with the columns `file_name` (relative "
            "to the folder), `text`, `label`, and optionally `mask_file` and `split`, the Hugging Face ImageFolder "
            "convention. Zip the folder and upload it, or give its path on this machine. Every row is checked: "
            "missing files, bad images and paths that leave the folder are reported with their row numbers.")
        upload = st.file_uploader("Upload a zip", type=["zip"], key="zip")
        path = st.text_input("…or a folder on this machine", key="folder", placeholder="/path/to/my-data")
        loaded = None
        try:
            if upload is not None:
                from mmlab.data.folder import load_zip

                with tempfile.TemporaryDirectory(prefix="mmlab-upload-") as tmp:
                    loaded = load_zip(upload.getvalue(), Path(tmp) / "data", split="all")
            elif path.strip():
                from mmlab.data.folder import load_folder

                loaded = load_folder(path.strip(), split="all")
        except InputError as e:
            st.error(f"This dataset cannot be used: {e}")
        if loaded is not None:
            st.session_state["user_data"] = loaded
            st.success(f"Loaded {len(loaded)} pairs, {len(loaded.classes['label'])} labels. The Playground and "
                       f"the other pages now list it as “{ui.USER_DATA}”.")
        current = st.session_state.get("user_data")
        if current is not None:
            browse(current, key="your-data")
