"""Attention inspector: a word's map per layer and head, rollout and relevance, words per patch, map -> mask."""
import numpy as np
import streamlit as st

from mmlab import viz
from pages import _ui as ui

ALL_WORDS = "all words"
SOURCES = ["attention (mean of layers and heads)", "rollout", "relevance"]
SMALL = 160

ui.page_header("Attention inspector", "Pick a word and see where it looks in every layer and head; compare with "
               "attention rollout and gradient-weighted relevance; pick a patch to see which words look at it; "
               "threshold a map into a mask and grade it against the truth.")

entry, sample = ui.checkpoint_and_input()
pred = ui.predict_entry(entry, sample)
if pred is None:
    st.stop()

tokens = pred.tokens
options = [ALL_WORDS] + [f"#{i} {t}" for i, t in enumerate(tokens)]
choice = st.selectbox("Word", options, key="token", bind="query-params")
token = None if choice in (None, ALL_WORDS) else options.index(choice) - 1
what = ALL_WORDS if token is None else f"'{tokens[token]}'"

if not pred.attention:
    st.warning(f"{entry.get('strategy')} has no text-to-image attention. Its map below is Grad-CAM over the image "
               "patches; pick a cross-attention or transformer checkpoint to inspect heads and layers.")
    result = ui.explain_entry(entry, sample, "gradcam")
    if result is not None:
        ui.show_picture(viz.overlay(sample.image, result.map, size=ui.SHOW), "gradcam", caption="Grad-CAM", key="gc")
    st.stop()

# ---- every layer and head -------------------------------------------------------------------
st.subheader(f"Raw attention of {what}: one row per layer, one column per head")
layers = list(pred.attention)
H = int(pred.attention[layers[0]].shape[0])
pictures, captions = [], []
for layer in layers:
    maps = pred.attention[layer]  # (H, T, h, w)
    for h in range(H):
        m = maps[h].mean(0) if token is None else maps[h, token]
        pictures.append(viz.overlay(sample.image, m, size=SMALL))
        captions.append(f"{layer} · head {h}")
for r, layer in enumerate(layers):
    row = st.columns(H)
    for h in range(H):
        row[h].image(pictures[r * H + h], caption=captions[r * H + h], width="stretch")
grid = viz.montage(pictures, columns=H)
st.download_button("Download the grid (PNG)", viz.png_bytes(grid), file_name="attention-grid.png", mime="image/png",
                   key="grid-png", on_click="ignore", icon=":material/download:")

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
                        caption={"attention": "raw attention, mean of layers and heads",
                                 "rollout": "attention rollout (Abnar & Zuidema)",
                                 "relevance": "relevance (Chefer et al.), for the predicted answer"}[method],
                        key=f"m-{method}")

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
    from mmlab.explain import map_to_mask, score_map, upsample

    size = sample.image.shape[0]
    mask = map_to_mask(upsample(chosen, size), threshold)
    m1, m2, m3 = st.columns([1, 1, 1])
    with m1:
        ui.show_picture(viz.mask_overlay(sample.image, mask.astype(np.float32), truth=sample.truth, size=ui.SHOW),
                        "map-mask", caption="thresholded map (blue), truth (green)", key="mapmask")
    if sample.truth is not None:
        scores = score_map(chosen, sample.truth, threshold)
        m2.metric("IoU", f"{scores['iou']:.3f}")
        m3.metric("Dice", f"{scores['dice']:.3f}")
    else:
        m2.caption("No ground-truth mask for your own image, so no IoU / Dice.")
