"""Playground: one picture + one sentence -> the answer (after saying whether the pair is of the model's kind),
a map per word / head / layer with how far it can be trusted on this checkpoint, and the mask with its IoU."""
import streamlit as st

from mmlab import viz
from pages import _ui as ui

ALL_WORDS, MEAN = "all words", "mean"

ui.page_header("Playground", "Pick a sample or upload a picture, type a sentence, pick a checkpoint: see what the "
               "model answers, what its maps show (and how far they can be trusted), and the mask it draws for "
               "the object the sentence names.")
from mmlab.evaluate import score_mask  # noqa: E402 - after the title: it imports torch, seconds on a cold server

source = ui.pick_source(st.sidebar)
entry = ui.pick_checkpoint(prefer=ui.default_for(source))
left, right = st.columns([1, 1.25], gap="large")
with left:
    sample = ui.pick_input(entry, source=source)
if entry is None:
    st.stop()
model = ui.load_model(entry)
if model is None or sample is None:
    st.stop()
with right:
    pred = ui.predict_entry(entry, sample)
if pred is None:
    st.stop()

# ---- the answer: first whether the pair is of the model's kind, then what it says -------------------------
with right:
    trusted = ui.domain_notice(pred, entry)
    answer = st.container() if trusted else st.expander("Show the answer anyway (not to be trusted)")
    with answer:
        if ui.is_photo(entry):  # the answer is a place: what it looked for and where it found it
            ui.photo_answer(entry, sample, pred)
        elif pred.label is not None:
            c1, c2, c3 = st.columns(3)
            c1.metric("Prediction", pred.label, help="the most probable class of the primary target")
            c2.metric("Confidence", f"{pred.probs[pred.label]:.1%}",
                      help="the model's own probability: on inputs unlike its training data it means nothing")
            if sample.label is not None:
                c3.metric("Truth", sample.label, delta="right" if sample.label == pred.label else "wrong",
                          delta_color="green" if sample.label == pred.label else "red", delta_arrow="off")
            ui.show_probabilities(viz.probs_table(pred.probs, top=10))
        for head, probs in (pred.extras or {}).items():
            if isinstance(probs, dict):
                best = max(probs, key=probs.get)
                st.caption(f"head {viz.md_escape(head)}: {viz.md_escape(best)} ({probs[best]:.1%})")

# ---- the maps -----------------------------------------------------------------------------------------
photo_model = ui.is_photo(entry)
st.subheader("Each word's map: where the concept it names is" if photo_model else
             "Attention maps: what each word attends to")
tokens = pred.tokens
token_options = [ALL_WORDS] + [f"#{i} {t}" for i, t in enumerate(tokens)]
layers = list(pred.attention or {})
heads = int(next(iter(pred.attention.values())).shape[0]) if pred.attention else 0
c = st.columns(4)
token_label = c[0].selectbox("Word", token_options, key="token", bind="query-params")
layer_label = c[1].selectbox("Layer", [MEAN] + layers, key="layer", bind="query-params",
                             disabled=not layers or photo_model)
head_label = c[2].selectbox("Head", [MEAN] + [str(h) for h in range(heads)], key="head", bind="query-params",
                            disabled=not heads or photo_model)
alpha = c[3].slider("Overlay strength", 0.0, 1.0, 0.6, 0.05, key="alpha", bind="query-params")
token = None if token_label in (None, ALL_WORDS) else token_options.index(token_label) - 1
layer = None if layer_label in (None, MEAN) else layer_label
head = None if head_label in (None, MEAN) else int(head_label)

result = ui.explain_entry(entry, sample, "attention", token=token, layer=layer, head=head)
if result is not None and photo_model:
    st.caption("Each word's map is the class activation map (Zhou et al. 2016) of the ImageNet concepts the word "
               "names: where the photo classifier sees them. How often the sentence's map lands on the named "
               "thing is said under the answer above.")
elif result is not None:
    st.caption(ui.fidelity(entry, result.method_used) + " An attention map shows where a word's query matched the "
               "picture's keys; it is not, by itself, an explanation of the answer (see Learn → Attention).")
a1, a2, a3 = st.columns(3)
with a1:
    ui.show_picture(viz.shown(sample.image, ui.SHOW), "input", caption="input", key="input")
if result is not None:
    if result.method_used != "attention":
        st.info(result.note or f"{entry.get('strategy')} has no cross-attention: showing {result.method_used}.")
    with a2:
        heat = viz.overlay(sample.image, result.map, alpha=alpha, size=ui.SHOW)
        word = None if token is None else tokens[token]
        caption = (f"class activation map of {repr(word) if word else 'the whole sentence'}" if photo_model
                   else f"{ui.map_caption(result, word)}, layer {layer_label}, head {head_label}")
        ui.show_picture(heat, "map", caption=caption, key="attention")

# ---- the mask -------------------------------------------------------------------------------------------
with a3:
    if ui.is_photo(entry):
        st.caption("The photo model draws no mask: its answer is the map's peak and the box around it (above).")
    elif pred.mask is None:
        st.caption("This checkpoint predicts no mask (a classification model).")
    else:
        truth = sample.truth
        picture = viz.mask_overlay(sample.image, pred.mask, truth=truth, size=ui.SHOW)
        ui.show_picture(picture, "mask", caption="predicted mask (blue)" + (", truth outline (green)" if truth is not
                                                                             None else ""), key="mask")
        if truth is not None:
            scores = score_mask(pred.mask, truth)
            m1, m2 = st.columns(2)
            m1.metric("IoU", f"{scores['iou']:.3f}")
            m2.metric("Dice", f"{scores['dice']:.3f}")
        else:
            st.caption("No ground-truth mask for your own picture, so no IoU.")
if pred.domain is not None and any(pred.domain.unknown_tokens):
    st.caption("Words it never saw: " + ", ".join(viz.md_escape(t) for t, u in zip(tokens, pred.domain.unknown_tokens)
                                                   if u))
