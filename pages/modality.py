"""Modality lab: drop or corrupt the image or the text and watch the prediction move; ablation tables and curves."""
import numpy as np
import pandas as pd
import streamlit as st

from mmlab import viz
from mmlab.errors import InputError
from pages import _ui as ui

ui.page_header("Modality lab", "Take a modality away or corrupt it and watch the answer move. Below: the same "
               "ablation over a test split for chosen checkpoints, which modality decided each sample, and a "
               "model trained with modality dropout beside one trained without.")

entry = ui.pick_checkpoint()
sample = ui.pick_input(entry)
if entry is None or sample is None or ui.load_model(entry) is None:
    st.stop()

# ---- one pair -------------------------------------------------------------------------------------
st.subheader("One pair")
c = st.columns(4)
no_image = c[0].toggle("Drop the image", key="noimg", bind="query-params")
no_text = c[1].toggle("Drop the text", key="notxt", bind="query-params")
image_noise = c[2].slider("Image noise (σ)", 0.0, 1.0, 0.0, 0.05, key="inoise", bind="query-params")
word_drop = c[3].slider("Words removed", 0.0, 1.0, 0.0, 0.1, key="wdrop", bind="query-params",
                        help="share of the sentence's words replaced by <unk> (deterministic)")
if no_image and no_text:
    st.warning("Dropping both leaves nothing to see: the model would answer from its stand-ins alone. "
               "Showing the text-only answer.")
    no_image = False
changed_image = viz.noisy_image(sample.image, image_noise, seed=0) if image_noise > 0 else sample.image
words = sample.text.split()
keep = max(1, round(len(words) * (1 - word_drop)))
removed = set(np.random.default_rng(0).permutation(len(words))[: len(words) - keep].tolist())
changed_text = " ".join("<unk>" if i in removed else w for i, w in enumerate(words))
drop = "image" if no_image else "text" if no_text else None
changed = ui.Sample(changed_image, changed_text, sample.truth, sample.label, sample.source)

clean = ui.predict_entry(entry, sample)
moved = ui.predict_entry(entry, changed, drop)
if clean is None or moved is None:
    st.stop()
left, right = st.columns([1, 2])
with left:
    st.image(viz.resize(changed_image, ui.SHOW) if not no_image else np.full((ui.SHOW, ui.SHOW, 3), 235, np.uint8),
             caption="the image the model gets" + (" (dropped)" if no_image else ""), width="stretch")
    st.markdown(f"**Sentence it gets:** {'*(dropped)*' if no_text else changed_text}")
with right:
    if clean.label is not None:
        m1, m2 = st.columns(2)
        m1.metric("Both, clean", clean.label, f"{clean.probs[clean.label]:.0%}", delta_color="off")
        m2.metric("As set", moved.label, f"{moved.probs[moved.label]:.0%}",
                  delta_color="normal" if moved.label == clean.label else "inverse")
        ui.show_figure(viz.grouped_probs_figure({"both, clean": clean.probs, "as set": moved.probs}),
                       "modality-one-pair", key="onepair")
    if clean.mask is not None and moved.mask is not None:
        m1, m2 = st.columns(2)
        m1.image(viz.mask_overlay(sample.image, clean.mask, size=ui.SHOW), caption="mask, both clean", width="stretch")
        m2.image(viz.mask_overlay(sample.image, moved.mask, size=ui.SHOW), caption="mask, as set", width="stretch")
