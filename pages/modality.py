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

entry, sample = ui.checkpoint_and_input()

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
        m1.metric("Both, clean", clean.label, f"{clean.probs[clean.label]:.0%}", delta_color="off", delta_arrow="off")
        m2.metric("As set", moved.label, f"{moved.probs[moved.label]:.0%}",
                  delta_color="off", delta_arrow="off")
        ui.show_figure(viz.grouped_probs_figure({"both, clean": clean.probs, "as set": moved.probs}),
                       "modality-one-pair", key="onepair")
    if clean.mask is not None and moved.mask is not None:
        m1, m2 = st.columns(2)
        pictures = [viz.mask_overlay(sample.image, clean.mask, size=ui.SHOW),
                    viz.mask_overlay(sample.image, moved.mask, size=ui.SHOW)]
        m1.image(pictures[0], caption="mask, both clean", width="stretch")
        m2.image(pictures[1], caption="mask, as set", width="stretch")
        st.download_button("Both masks (PNG)", viz.png_bytes(viz.montage(pictures, columns=2)),
                           file_name="modality-masks.png", mime="image/png", key="masks-png", on_click="ignore",
                           icon=":material/download:")

# ---- a test split ---------------------------------------------------------------------------------
st.subheader("Over a test split")
dataset_name = entry.get("dataset") or "shapes"
pool = [e for e in ui.checkpoints() if e.get("dataset") == dataset_name]
names = [e["name"] for e in pool]
c1, c2 = st.columns([3, 1])
chosen = c1.multiselect("Checkpoints", names, default=[entry["name"]] if entry["name"] in names else names[:1],
                        key="abl", bind="query-params")
n = c2.select_slider("Test pairs", [100, 200, 500, 1000], value=200, key="abl_n", bind="query-params")


@st.cache_data(show_spinner=False, max_entries=64)
def ablation(model_dir: str, mtime: float, dataset: str, n: int) -> dict:
    """mmlab.ablation.ablate on the first ``n`` test pairs (cached)."""
    from mmlab.ablation import ablate

    data = ui._dataset(dataset, "test")
    data = data.subset(np.arange(min(n, len(data))))
    return ablate(ui._load_model(model_dir, mtime), data)


results = {}
progress = st.progress(0.0, text="ablating…")
for i, e in enumerate(pool):
    if e["name"] not in chosen and e["name"] != entry["name"]:
        continue
    try:
        results[e["name"]] = ablation(e["dir"], ui.mtime(e), dataset_name, int(n))
    except InputError as err:
        st.error(f"{e['name']}: {err}")
    progress.progress(min(1.0, (i + 1) / len(pool)), text=f"ablated {e['name']}")
progress.empty()
shown = {k: v for k, v in results.items() if k in chosen}

if shown:
    metric_cols = ["accuracy", "macro_f1", "iou", "dice"]
    rows = [{"checkpoint": name, "condition": r["condition"],
             **{m: round(r[m], 4) for m in metric_cols if isinstance(r.get(m), float)}}
            for name, res in shown.items() for r in res["table"]]
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True)
    ui.download_table(table, f"ablation-{dataset_name}", key="abl-csv")
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
if res is not None:
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
        data = ui._dataset(dataset_name, "test")
        frame = pd.DataFrame({"index": d["index"], "text": [data.texts[i] for i in d["index"]],
                              "decided": d["decided"], "Δ without image": np.round(d["delta"]["image"], 3),
                              "Δ without text": np.round(d["delta"]["text"], 3)})
        st.dataframe(frame, hide_index=True, height=320)
        ui.download_table(frame, f"decider-{entry['name']}", key="decider-csv")

# ---- dropout-trained vs plain -----------------------------------------------------------------------
st.subheader("Trained with modality dropout vs without")


def dropout_of(e: dict) -> float:
    tr = e.get("train") or {}
    if not tr:
        model = ui.load_model(e)
        tr = (getattr(model, "meta", {}) or {}).get("train", {}) if model is not None else {}
    return float(tr.get("drop_text", 0) or 0) + float(tr.get("drop_image", 0) or 0)


with_drop = [e["name"] for e in pool if dropout_of(e) > 0]
without = [e["name"] for e in pool if dropout_of(e) == 0]
if not with_drop or not without:
    st.info("This needs two checkpoints of the same dataset, one trained with modality dropout and one without. "
            "Train one with 'Drop the text' > 0 on the Train page.")
else:
    c1, c2 = st.columns(2)
    a = c1.selectbox("Trained with dropout", with_drop, key="dropm", bind="query-params")
    by_name = {x["name"]: x for x in pool}
    same = [i for i, nm in enumerate(without) if by_name[nm].get("strategy") == by_name[a].get("strategy")]
    b = c2.selectbox("Trained without", without, index=same[0] if same else 0, key="plainm", bind="query-params")
    side = {}
    for name in (a, b):
        e = next(x for x in pool if x["name"] == name)
        r = results.get(name)
        if r is None:
            r = ablation(e["dir"], ui.mtime(e), dataset_name, int(n))
        side[name] = {row["condition"]: row[r["metric"]] for row in r["table"][:3]}
    conditions = ["both", "image only", "text only"]
    fig = viz.grouped_bars_figure(conditions, {name: [vals[c] for c in conditions] for name, vals in side.items()},
                                  y_title=r["metric"])
    ui.show_figure(fig, "dropout-vs-plain", key="dropvsplain")
    st.caption("With the text missing at test time ('image only'), a model trained with text dropout should keep "
               "more of its accuracy than one trained without it (seed 001).")
