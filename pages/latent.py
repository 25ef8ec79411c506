"""Latent space: PCA / t-SNE / UMAP of image, text and fused embeddings, the modality gap, your pair in the map.

A checkpoint's layouts of its test split are stored with it, so the default views open at once; another
split, size or projection is computed here, with its progress shown, and your own pair is placed in the map
(and marked when it is unlike what the model was trained on)."""
import numpy as np
import streamlit as st

from mmlab import viz
from mmlab.errors import InputError
from pages import _ui as ui

METHODS = ["pca", "tsne", "umap"]
COLOUR_BY = ["label", "modality", "correctness"]
STORED_POINTS = 500

ui.page_header("Latent space", "Where a split's pairs land in the model's spaces: image and text encoder outputs in "
               "one map (each pair joined by a line: the modality gap), the fused vectors beside them. Colour by "
               "label, modality or correctness; click a point to see its picture and sentence.")

entry = ui.pick_checkpoint(want=ui.trained)
if entry is None or ui.load_model(entry) is None:
    st.stop()
stored = ui.artifacts(entry)

c = st.columns([0.8, 1.2, 1, 1])
split = c[0].selectbox("Split", ["test", "val", "train"], key="split", bind="query-params")
max_points = c[1].select_slider("Pairs (sampled)", [100, 250, 500, 1000, 2000, 5000], value=STORED_POINTS,
                                key="points", bind="query-params")
method = c[2].selectbox("Projection", METHODS, key="method", bind="query-params",
                        help="Stored with the checkpoint for its 500 test pairs: instant. Otherwise PCA is instant, "
                             "t-SNE takes seconds, UMAP tens of seconds the first time in a fresh server.")
colour_by = c[3].selectbox("Colour by", COLOUR_BY, key="colour", bind="query-params")
c = st.columns(3)
lines = c[0].toggle("Join each pair's image and text", value=True, key="lines", bind="query-params")
stacked = c[1].toggle("Project fused with image + text", value=False, key="stacked", bind="query-params",
                      help="off: the fused vectors get their own panel (they live in another space)")
place = c[2].toggle("Place a pair of your own", value=False, key="place", bind="query-params")
fused = "stacked" if stacked else "separate"


@st.cache_data(show_spinner=False, max_entries=32)
def embeddings(model_dir: str, mtime: float, split: str, max_points: int) -> dict:
    from mmlab.project import embed_split

    return embed_split(ui._load_model(model_dir, mtime), ui._split(model_dir, mtime, split), max_points=max_points)


@st.cache_data(show_spinner=False, max_entries=32)
def layout(model_dir: str, mtime: float, split: str, max_points: int, method: str, fused: str) -> dict:
    from mmlab.project import joint_layout

    return joint_layout(embeddings(model_dir, mtime, split, max_points), method, fused=fused)


use_stored = (stored is not None and split == "test" and stored.same_sample(int(max_points))
              and stored.has_layout(method, fused))
try:
    if use_stored:
        emb, lay = stored.embeddings(), stored.layout(method, fused)
    else:
        with st.status(f"Computing the {method.upper()} map of {max_points} {split} pairs…", expanded=False) as status:
            status.write("embedding the pairs with the model")
            emb = embeddings(entry["dir"], ui.mtime(entry), split, int(max_points))
            status.write(f"projecting {3 * emb['count']} points")
            lay = layout(entry["dir"], ui.mtime(entry), split, int(max_points), method, fused)
            status.update(label=f"{method.upper()} map of {emb['count']} {split} pairs", state="complete")
except InputError as e:
    st.error(str(e))
    st.stop()

n = lay["count"]
classes = emb.get("classes")
label_names = np.array([classes[int(v)] if classes and v >= 0 else "?" for v in lay["label"]], dtype=object)
if colour_by == "label":
    colour = label_names
elif colour_by == "modality":
    colour = lay["modality"]
else:
    colour = np.where(lay["correct"], "right", "wrong")
hover = [f"{m} · #{i} · {lab}<br>{t}"
         for m, i, lab, t in zip(lay["modality"], lay["index"], label_names, lay["texts"])]
pairs = np.stack([np.arange(n), n + np.arange(n)], 1) if lines else None  # image row i <-> text row n + i
if pairs is not None and n > 1000:
    pairs = pairs[:: max(1, n // 1000)]

highlight, outside = None, False
if place:
    with st.expander("Your pair", expanded=True):
        source = ui.pick_source()
        mine = ui.pick_input(entry, source=source)
    if mine is not None:
        pred = ui.predict_entry(entry, mine)
        if pred is not None:
            outside = not ui.domain_notice(pred, entry)
            try:
                from mmlab.project import place_in_layout

                highlight = place_in_layout(lay, pred.embeddings)["points"]  # (3, 2): image, text, fused
            except InputError as e:
                st.error(str(e))
            if outside:
                st.caption("Your pair is placed by its nearest neighbours among the model's own pairs, but it is "
                           "unlike all of them: where it lands says little (it is drawn as an open marker).")

st.caption(f"{method.upper()} of {n} of {lay['total']} pairs ({3 * n} points: image ●, text ◆, fused ■)"
           + (", stored with the checkpoint" if use_stored else "")
           + (", drawn with WebGL" if 3 * n > 3000 else "") + ". Left: image and text embeddings in one projection; "
           + ("fused projected with them." if stacked else "right: the fused vectors, projected on their own."))
fig = viz.latent_figure(lay["points"], colour=colour, symbol=lay["modality"], hover=hover, custom=lay["pair"],
                        pairs=pairs, highlight=highlight, highlight_outside=outside)
state = ui.show_figure(fig, f"latent-{method}", key="latent", on_select="rerun", selection_mode="points")

points = []
try:
    points = list(state.selection.points) if state is not None else []
except AttributeError:
    points = []
if points:
    p = points[0]
    pos = p.get("customdata")
    pos = int(pos[0] if isinstance(pos, (list, tuple)) else pos) if pos is not None else None
    if pos is not None and 0 <= pos < n:
        data = ui.checkpoint_split(entry, split)
        if data is not None:
            idx = int(emb["index"][pos])
            c1, c2 = st.columns([1, 3])
            c1.image(viz.shown(data.images[idx], 160), width="stretch")
            c2.markdown(f"**#{idx}** · label **{viz.md_escape(label_names[pos])}** · "
                        f"{'right' if emb['correct'][pos] else 'wrong'}")
            c2.text(data.texts[idx])
