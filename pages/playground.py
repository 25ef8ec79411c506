"""Playground: one image + one sentence -> prediction, attention per word / head / layer, mask + IoU."""
import numpy as np
import streamlit as st

from mmlab import viz
from mmlab.metrics import mask_dice, mask_iou
from pages import _ui as ui

ALL_WORDS, MEAN = "all words", "mean"

ui.page_header("Playground", "Pick a sample or upload an image, type a sentence, pick a checkpoint: see what the "
               "model answers, where each word looks, and the mask it draws for the object the sentence names.")

entry = ui.pick_checkpoint()
left, right = st.columns([1, 1.25], gap="large")
with left:
    sample = ui.pick_input(entry)
if entry is None:
    st.stop()
model = ui.load_model(entry)
if model is None or sample is None:
    st.stop()
pred = ui.predict_entry(entry, sample)
if pred is None:
    st.stop()

# ---- the answer ---------------------------------------------------------------------------
with right:
    if pred.label is not None:
        c1, c2, c3 = st.columns(3)
        c1.metric("Prediction", pred.label, help="the most probable class of the primary target")
        c2.metric("Confidence", f"{pred.probs[pred.label]:.1%}")
        if sample.label is not None:
            c3.metric("Truth", sample.label, delta="right" if sample.label == pred.label else "wrong",
                      delta_color="green" if sample.label == pred.label else "red", delta_arrow="off")
        ui.show_figure(viz.probs_figure(pred.probs), "probabilities", key="probs")
    for head, probs in (pred.extras or {}).items():
        if isinstance(probs, dict):
            best = max(probs, key=probs.get)
            st.caption(f"head **{head}**: {best} ({probs[best]:.1%})")

# ---- attention ----------------------------------------------------------------------------
st.subheader("Where each word looks")
tokens = pred.tokens
token_options = [ALL_WORDS] + [f"#{i} {t}" for i, t in enumerate(tokens)]
layers = list(pred.attention or {})
heads = int(next(iter(pred.attention.values())).shape[0]) if pred.attention else 0
c = st.columns(4)
token_label = c[0].selectbox("Word", token_options, key="token", bind="query-params")
layer_label = c[1].selectbox("Layer", [MEAN] + layers, key="layer", bind="query-params", disabled=not layers)
head_label = c[2].selectbox("Head", [MEAN] + [str(h) for h in range(heads)], key="head", bind="query-params",
                            disabled=not heads)
alpha = c[3].slider("Overlay strength", 0.0, 1.0, 0.6, 0.05, key="alpha", bind="query-params")
token = None if token_label in (None, ALL_WORDS) else token_options.index(token_label) - 1
layer = None if layer_label in (None, MEAN) else layer_label
head = None if head_label in (None, MEAN) else int(head_label)

result = ui.explain_entry(entry, sample, "attention", token=token, layer=layer, head=head)
a1, a2, a3 = st.columns(3)
with a1:
    ui.show_picture(viz.resize(sample.image, ui.SHOW), "input", caption="input", key="input")
if result is not None:
    what = ALL_WORDS if token is None else f"'{tokens[token]}'"
    if result.method_used != "attention":
        st.info(result.note or f"{entry.get('strategy')} has no cross-attention: showing {result.method_used}.")
    with a2:
        heat = viz.overlay(sample.image, result.map, alpha=alpha, size=ui.SHOW)
        caption = f"{result.method_used}: {what}, layer {layer_label}, head {head_label}"
        ui.show_picture(heat, "attention", caption=caption, key="attention")

# ---- the mask -----------------------------------------------------------------------------
with a3:
    if pred.mask is None:
        st.caption("This checkpoint predicts no mask (a classification model).")
    else:
        truth = None
        if sample.truth is not None:
            truth = viz.resize_map(sample.truth.astype(np.float32), pred.mask.shape, smooth=False) > 0.5
        picture = viz.mask_overlay(sample.image, pred.mask, truth=truth, size=ui.SHOW)
        ui.show_picture(picture, "mask", caption="predicted mask (blue), truth outline (green)", key="mask")
        if truth is not None:
            binary = pred.mask >= 0.5
            m1, m2 = st.columns(2)
            m1.metric("IoU", f"{float(mask_iou(binary, truth)[0]):.3f}")
            m2.metric("Dice", f"{float(mask_dice(binary, truth)[0]):.3f}")
        else:
            st.caption("No ground-truth mask for your own image, so no IoU.")
