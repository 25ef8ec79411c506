"""Modality lab: drop or corrupt the image or the text and watch the answer move; the ablation of the test split
(stored with each checkpoint, re-read at once for any first n pairs); dropout-trained beside plain."""
import numpy as np
import pandas as pd
import streamlit as st

from mmlab import viz
from mmlab.data.text import corrupt_words
from mmlab.errors import InputError
from pages import _ui as ui

ui.page_header("Modality lab", "Take a modality away or corrupt it and watch the answer move. Below: the same "
               "ablation over the test split for chosen checkpoints, which modality decided each sample, and a "
               "model trained with modality dropout beside one trained without.")

entry, sample = ui.checkpoint_and_input(want=ui.trained)

# ---- one pair -------------------------------------------------------------------------------------
st.subheader("One pair")
c = st.columns(4)
no_image = c[0].toggle("Drop the image", key="noimg", bind="query-params")
no_text = c[1].toggle("Drop the text", key="notxt", bind="query-params")
image_noise = c[2].slider("Image noise (σ)", 0.0, 1.0, 0.0, 0.05, key="inoise", bind="query-params")
word_drop = c[3].slider("Words removed", 0.0, 1.0, 0.0, 0.1, key="wdrop", bind="query-params",
                        help="share of the sentence's words replaced by <unk> (the same words every time)")
if no_image and no_text:
    st.warning("Dropping both leaves nothing to see: the model would answer from its stand-ins alone. "
               "Only the text is dropped here: showing the image-only answer.")
    no_image = False
changed_image = viz.noisy_image(sample.image, image_noise, seed=0) if image_noise > 0 else sample.image
changed_text = corrupt_words(sample.text, word_drop, seed=0)
drop = "image" if no_image else "text" if no_text else "none"
changed = ui.Sample(changed_image, changed_text, sample.truth, sample.label, sample.source)

clean = ui.predict_entry(entry, sample)
moved = ui.predict_entry(entry, changed, drop)
if clean is None or moved is None:
    st.stop()
ui.domain_notice(clean, entry)
left, right = st.columns([1, 2])
with left:
    st.image(viz.shown(changed_image, ui.SHOW) if not no_image else np.full((ui.SHOW, ui.SHOW, 3), 235, np.uint8),
             caption="the image the model gets" + (" (dropped)" if no_image else ""), width="stretch")
    st.markdown("**Sentence it gets:**" + (" *(dropped)*" if no_text else ""))
    if not no_text:
        st.text(changed_text)
with right:
    if clean.label is not None:
        m1, m2 = st.columns(2)
        m1.metric("Both, clean", clean.label, f"{clean.probs[clean.label]:.0%}", delta_color="off", delta_arrow="off")
        m2.metric("As set", moved.label, f"{moved.probs[moved.label]:.0%}", delta_color="off", delta_arrow="off")
        ui.show_figure(viz.grouped_probs_figure({"both, clean": clean.probs, "as set": moved.probs}),
                       "modality-one-pair", key="onepair")
    if clean.mask is not None and moved.mask is not None:
        m1, m2 = st.columns(2)
        pictures = [viz.mask_overlay(sample.image, clean.mask, size=ui.SHOW),
                    viz.mask_overlay(sample.image, moved.mask, size=ui.SHOW)]
        m1.image(pictures[0], caption="mask, both clean", width="stretch")
        m2.image(pictures[1], caption="mask, as set", width="stretch")
        st.download_button("Both masks (PNG)", ui.png_later(pictures, columns=2),
                           file_name="modality-masks.png", mime="image/png", key="masks-png", on_click="ignore",
                           icon=":material/download:")

# ---- the test split -------------------------------------------------------------------------------
st.subheader("Over the test split")
same_kind = [e for e in ui.checkpoints() if e.get("dataset") == entry.get("dataset")
             and e.get("data_options") == entry.get("data_options")]
names = [e["name"] for e in same_kind]
c1, c2 = st.columns([3, 1])
chosen = c1.multiselect("Checkpoints (trained on the same data)", names,
                        default=[entry["name"]] if entry["name"] in names else names[:1], key="abl",
                        bind="query-params")
n = c2.select_slider("Test pairs", [100, 200, 500, 1000], value=1000, key="abl_n", bind="query-params",
                     help="the first n pairs of the checkpoint's own test split")


@st.cache_data(show_spinner=False, max_entries=64)
def live_ablation(model_dir: str, mtime: float, n: int) -> dict:
    """mmlab.ablation.ablate on the checkpoint's own first n test pairs (for checkpoints without stored results)."""
    from mmlab.ablation import ablate

    data = ui._split(model_dir, mtime, "test")
    return ablate(ui._load_model(model_dir, mtime), data.subset(np.arange(min(n, len(data)))), fast=True)


def ablation(e: dict) -> dict | None:
    stored = ui.artifacts(e)
    if stored is not None and 0 < n <= stored.ablation_pairs:
        return stored.ablation(n)
    with st.spinner(f"Ablating {e['name']} on {n} pairs (no stored results for it)…"):
        try:
            return live_ablation(e["dir"], ui.mtime(e), int(n))
        except InputError as err:
            st.error(f"{e['name']}: {err}")
            return None


by_name = {e["name"]: e for e in same_kind}
results = {}
for name in dict.fromkeys([entry["name"], *chosen]):  # the checkpoint itself, for "which modality decided"
    if name in by_name and (found := ablation(by_name[name])) is not None:
        results[name] = found
shown = {k: v for k, v in results.items() if k in chosen}
if shown:
    metric_cols = ["accuracy", "macro_f1", "iou", "dice"]
    rows = [{"checkpoint": name, "condition": r["condition"],
             **{m: round(r[m], 4) for m in metric_cols if isinstance(r.get(m), float)}}
            for name, res in shown.items() for r in res["table"]]
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True)
    ui.download_table(table, f"ablation-{entry.get('dataset')}", key="abl-csv")
    series, rates = {}, None
    for name, res in shown.items():
        for m, points in res["curves"].items():
            rates = [r for r, _ in points]
            series[f"{name}: {m} missing"] = [v for _, v in points]
    metric = next(iter(shown.values()))["metric"]
    ui.show_figure(viz.curves_figure(rates, series, x_title="share of samples missing the modality", y_title=metric,
                                     title=f"{metric} as a modality goes missing"), "missing-rate-curves",
                   key="curves")

# ---- which modality decided -------------------------------------------------------------------------
res = results.get(entry["name"])
data = ui.checkpoint_split(entry)
if res is not None and data is not None:
    st.subheader(f"Which modality decided ({entry['name']})")
    d = res["decider"]
    counts = d["counts"]
    c1, c2 = st.columns([1, 2])
    with c1:
        ui.show_figure(viz.bar_figure(list(counts), list(counts.values()), y_title="samples"), "decider-counts",
                       key="decider")
        st.caption(f"Measured as the {d['quantity']}. 'either': removing one alone changes nothing; 'both': it "
                   "needs the two together.")
    with c2:
        frame = pd.DataFrame({"index": d["index"], "text": [data.texts[i] for i in d["index"]],
                              "decided": d["decided"], "Δ without image": np.round(d["delta"]["image"], 3),
                              "Δ without text": np.round(d["delta"]["text"], 3)})
        st.dataframe(frame, hide_index=True, height=320)
        ui.download_table(frame, f"decider-{entry['name']}", key="decider-csv")

# ---- dropout-trained vs plain -----------------------------------------------------------------------
st.subheader("Trained with modality dropout vs without")


def dropout_of(e: dict) -> float:
    tr = e.get("train") or {}
    return float(tr.get("drop_text", 0) or 0) + float(tr.get("drop_image", 0) or 0)


# unimodal baselines (a modality dropped from every sample) are not "trained with dropout"
with_drop = [e["name"] for e in same_kind if 0 < dropout_of(e) and not e.get("eval_drop")]
without = [e["name"] for e in same_kind if dropout_of(e) == 0]
if not with_drop or not without:
    st.info("This needs two checkpoints of the same data, one trained with modality dropout and one without. "
            "Train one with 'Drop the text' > 0 on the Train page.")
else:
    c1, c2 = st.columns(2)
    a = c1.selectbox("Trained with dropout", with_drop, key="dropm", bind="query-params")
    same = [i for i, nm in enumerate(without) if by_name[nm].get("strategy") == by_name[a].get("strategy")]
    b = c2.selectbox("Trained without", without, index=same[0] if same else 0, key="plainm", bind="query-params")
    side = {}
    for name in (a, b):
        r = results.get(name) or ablation(by_name[name])
        if r is not None:
            side[name] = {row["condition"]: row[r["metric"]] for row in r["table"][:3]}
    if len(side) == 2:
        conditions = ["both", "image only", "text only"]
        fig = viz.grouped_bars_figure(conditions, {nm: [vals[c] for c in conditions] for nm, vals in side.items()},
                                      y_title=r["metric"])
        ui.show_figure(fig, "dropout-vs-plain", key="dropvsplain")
        tr = by_name[a].get("train") or {}
        st.caption(f"{a} was trained with text dropout {tr.get('drop_text', 0)} and image dropout "
                   f"{tr.get('drop_image', 0)}; {b} with none. With the text missing at test time ('image only'), "
                   "the model trained with text dropout should keep more of its accuracy (seed 001).")
