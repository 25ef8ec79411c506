"""Attention inspector: a word's map per layer and head, rollout and relevance beside it, each with how far it can
be trusted on this checkpoint; which words look at a patch; map -> mask -> IoU."""
import numpy as np
import streamlit as st

from mmlab import viz
from pages import _ui as ui

ALL_WORDS = "all words"
SOURCES = ["attention (mean of layers and heads)", "rollout", "relevance"]
SMALL = 160

ui.page_header("Attention inspector", "Pick a word and see what it attends to in every layer and head; compare with "
               "attention rollout and gradient-weighted relevance, each with how often it lies on the named object "
               "on this checkpoint; pick a patch to see which words look at it; threshold a map into a mask.")

entry, sample = ui.checkpoint_and_input(want=ui.trained)
pred = ui.predict_entry(entry, sample)
if pred is None:
    st.stop()
ui.domain_notice(pred, entry)

tokens = pred.tokens
options = [ALL_WORDS] + [f"#{i} {t}" for i, t in enumerate(tokens)]
default = 0
if sample.head and sample.head in tokens:  # open on the word that names the object
    default = tokens.index(sample.head) + 1
choice = st.selectbox("Word", options, index=default, key="token", bind="query-params",
                      help="the head noun (the word that names the object) is picked when you open a sample")
token = None if choice in (None, ALL_WORDS) else options.index(choice) - 1
word = None if token is None else tokens[token]
what = ALL_WORDS if token is None else f"'{word}'"

if not pred.attention:
    st.warning(f"{entry.get('strategy')} has no text-to-image attention. Its map below is Grad-CAM over the image "
               "patches; pick a cross-attention or transformer checkpoint to inspect heads and layers.")
    result = ui.explain_entry(entry, sample, "gradcam")
    if result is not None:
        ui.show_picture(viz.overlay(sample.image, result.map, size=ui.SHOW), "gradcam", caption="Grad-CAM", key="gc")
        st.caption(ui.fidelity(entry, "gradcam"))
    st.stop()

# ---- every layer and head -------------------------------------------------------------------
st.subheader(f"Raw attention of {what}: one row per layer, one column per head")
model = ui.load_model(entry)
card = (model.meta or {}).get("faithfulness") or {}
per_head = card.get("per_head") or {}
layers = list(pred.attention)
H = int(pred.attention[layers[0]].shape[0])
pictures, captions = [], []
for layer in layers:
    maps = pred.attention[layer]  # (H, T, h, w)
    for h in range(H):
        m = maps[h].mean(0) if token is None else maps[h, token]
        pictures.append(viz.overlay(sample.image, m, size=SMALL))
        hit = (per_head.get(layer) or [None] * H)[h]
        captions.append(f"{layer} · head {h}" + (f" · on the object {hit:.0%}" if hit is not None else ""))
for r, layer in enumerate(layers):
    row = st.columns(H)
    for h in range(H):
        row[h].image(pictures[r * H + h], caption=captions[r * H + h], width="stretch")
if per_head:
    st.caption(f"'on the object': how often that head's map of the head noun peaks on the named object, over "
               f"{card.get('n')} test scenes (chance {card['chance']['pointing']:.0%}).")
st.download_button("Download the grid (PNG)", ui.png_later(pictures, columns=H), file_name="attention-grid.png",
                   mime="image/png", key="grid-png", on_click="ignore", icon=":material/download:")

# ---- rollout and relevance --------------------------------------------------------------------
st.subheader(f"Across layers: rollout and gradient-weighted relevance of {what}")
maps = {}
c = st.columns(3)
for col, method in zip(c, ["attention", "rollout", "relevance"]):
    result = ui.explain_entry(entry, sample, method, token=token)
    if result is None:
        continue
    maps[method] = result.map
    with col:
        ui.show_picture(viz.overlay(sample.image, result.map, size=ui.SHOW), f"{method}",
                        caption=ui.map_caption(result, word) + (" (mean of layers and heads)" if method == "attention"
                                                                else ""), key=f"m-{method}")
        st.caption(ui.fidelity(entry, method))
        if result.note:
            st.caption(viz.md_escape(result.note))

# ---- which words look at a patch ------------------------------------------------------------
st.subheader("Which words look at a patch")
gh, gw = pred.attention[layers[0]].shape[-2:]
c1, c2, c3 = st.columns([1, 1, 2])
row = c1.slider("Patch row", 0, gh - 1, gh // 2, key="prow", bind="query-params")
col = c2.slider("Patch column", 0, gw - 1, gw // 2, key="pcol", bind="query-params")
layer_pick = c3.selectbox("Layer", ["mean"] + layers, key="player", bind="query-params")
stack = np.stack([pred.attention[k] for k in (layers if layer_pick == "mean" else [layer_pick])])  # (L, H, T, h, w)
weights = stack[..., row, col].mean((0, 1))  # (T,)
left, right = st.columns(2)
with left:
    ui.show_figure(viz.token_bars_figure(tokens, weights, title=f"attention to patch ({row}, {col})"),
                   "words-per-patch", key="words")
with right:
    whole = stack.mean((0, 1))  # (T, h, w)
    ui.show_figure(viz.heatmap_figure(whole.mean(0) if token is None else whole[token], mark=(row, col),
                                      title=f"{what} on the patch grid"), "patch-grid", key="patchgrid")

# ---- map -> mask -> IoU -------------------------------------------------------------------------
st.subheader("Turn a map into a mask")
c1, c2 = st.columns(2)
source = c1.selectbox("Map", SOURCES, key="msrc", bind="query-params")
threshold = c2.slider("Threshold", 0.0, 1.0, 0.5, 0.05, key="thr", bind="query-params")
chosen = maps.get({"rollout": "rollout", "relevance": "relevance"}.get(source, "attention"))
if chosen is not None:
    from mmlab.explain import map_to_mask, score_map

    mask = map_to_mask(chosen, threshold).astype(np.float32)  # on the patch grid of the model's input
    m1, m2, m3 = st.columns([1, 1, 1])
    with m1:
        ui.show_picture(viz.mask_overlay(sample.image, mask, truth=sample.truth, size=ui.SHOW),
                        "map-mask", caption="thresholded map (blue), truth (green)", key="mapmask")
    if sample.truth is not None:
        scores = score_map(chosen, sample.truth, threshold)
        m2.metric("IoU", f"{scores['iou']:.3f}")
        m3.metric("Dice", f"{scores['dice']:.3f}")
    else:
        m2.caption("No ground-truth mask for your own picture, so no IoU / Dice.")
