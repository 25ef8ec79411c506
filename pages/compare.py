"""Compare strategies: one input through every checkpoint of a dataset, side by side, and a test-split table."""
import time

import numpy as np
import pandas as pd
import streamlit as st

from mmlab import ui_state, viz
from mmlab.metrics import mask_iou
from pages import _ui as ui

METHODS = ["attention", "rollout", "relevance", "gradcam"]

ui.page_header("Compare strategies", "The same image and sentence through every strategy of the zoo: what each "
               "answers, where it looks, the mask it draws, how long it takes. Below, the test-split numbers.")

entries = ui.checkpoints()
if not entries:
    ui.no_checkpoint_message()
    st.stop()
groups = ui_state.zoo_groups(entries)
labels = list(groups)
default = next((i for i, g in enumerate(labels) if g.startswith("shapes · referring")), 0)
group = st.sidebar.selectbox("Checkpoints trained for", labels, index=default, key="zoo", bind="query-params")
pool = groups[group]
dataset_name = group.split(" · ")[0]
names = [e["name"] for e in pool]
chosen = st.sidebar.multiselect("Strategies", names, default=names[:6], key="pick", bind="query-params")
picked = [e for e in pool if e["name"] in chosen]
method = st.sidebar.selectbox("Map", METHODS, key="method", bind="query-params",
                              help="attention: raw cross-attention; rollout; relevance: gradient-weighted "
                                   "(Chefer et al.); gradcam: for every strategy, attention or not")
if not picked:
    st.info("Pick at least one checkpoint in the sidebar.")
    st.stop()

sample = ui.pick_input(picked[0])
if sample is None:
    st.stop()

# ---- one input, every strategy --------------------------------------------------------------
answers, runs = {}, []
for e in picked:
    if ui.load_model(e) is None:
        continue
    try:
        pred, ms = ui.predict(e["dir"], ui.mtime(e), sample.image, sample.text, None)
    except Exception as err:  # noqa: BLE001 - one broken checkpoint must not hide the others
        st.error(f"{e['name']}: {err}")
        continue
    runs.append((e, pred, ms))
    if pred.label is not None:
        answers[e["name"]] = pred.probs

if answers:
    ui.show_figure(viz.grouped_probs_figure(answers, title="Class probabilities per checkpoint"),
                   "compare-probabilities", key="probs")

cards: list = []  # (map overlay, mask overlay) per checkpoint, for one PNG of the whole comparison
per_row = min(3, max(1, len(runs)))
for start in range(0, len(runs), per_row):
    cols = st.columns(per_row)
    for col, (e, pred, ms) in zip(cols, runs[start:start + per_row]):
        with col.container(border=True):
            st.markdown(f"**{e['name']}** · `{e.get('strategy')}`")
            answer = f"answers **{pred.label}** ({pred.probs[pred.label]:.0%}) · " if pred.label is not None else ""
            st.markdown(f"{answer}{ms:.0f} ms", help="latency of one pair on this machine (a warm call)")
            result = ui.explain_entry(e, sample, method)
            if result is not None:
                note = " (no attention: Grad-CAM)" if result.method_used != method else ""
                heat = viz.overlay(sample.image, result.map, size=ui.SHOW)
                cards.append(heat)
                st.image(heat, width="stretch", caption=f"{result.method_used}{note}")
            if pred.mask is not None:
                truth = None
                if sample.truth is not None:
                    truth = viz.resize_map(sample.truth.astype(np.float32), pred.mask.shape, smooth=False) > 0.5
                masked = viz.mask_overlay(sample.image, pred.mask, truth=truth, size=ui.SHOW)
                cards.append(masked)
                st.image(masked, width="stretch",
                         caption="mask" + (f" · IoU {float(mask_iou(pred.mask >= 0.5, truth)[0]):.3f}"
                                           if truth is not None else ""))
if cards and len(cards) % max(1, len(runs)) == 0:  # one row per checkpoint: its map, its mask
    sheet = viz.png_bytes(viz.montage(cards, columns=len(cards) // len(runs)))
    st.download_button("Download the pictures (PNG, one row per checkpoint)", sheet, file_name="compare-pictures.png",
                       mime="image/png", key="cards-png", on_click="ignore", icon=":material/download:")

# ---- the test split ---------------------------------------------------------------------------
st.subheader("On the test split")


@st.cache_data(show_spinner=False, max_entries=64)
def measure(model_dir: str, mtime: float, dataset: str, n: int) -> dict:
    """Metrics of a checkpoint on the first ``n`` test pairs, with milliseconds per pair (batched)."""
    from mmlab.data import load_dataset
    from mmlab.evaluate import evaluate

    model = ui._load_model(model_dir, mtime)
    options = (model.meta.get("data_options") or {}) if model.meta.get("dataset") == dataset else {}
    data = load_dataset(dataset, "test", **options)  # digits: the captions it was trained with
    data = data.subset(np.arange(min(n, len(data))))
    t0 = time.perf_counter()
    drop = model.meta.get("eval_drop")  # a unimodal baseline is scored as it was trained
    metrics = evaluate(model, data, drop=drop)
    metrics["ms per pair"] = (time.perf_counter() - t0) * 1000 / max(1, len(data))
    return metrics


live = st.toggle("Measure here (otherwise: the numbers recorded in the manifest)", key="live", bind="query-params")
n = st.slider("Test pairs", 50, 1000, 200, 50, key="n", bind="query-params", disabled=not live)
rows = []
latency = {e["name"]: ms for e, _, ms in runs}
progress = st.progress(0.0, text="measuring…") if live else None
for i, e in enumerate(picked):
    metrics = dict(e.get("metrics") or {})
    if live:
        try:
            metrics = measure(e["dir"], ui.mtime(e), e.get("dataset") or "shapes", n)
        except Exception as err:  # noqa: BLE001
            st.error(f"{e['name']}: {err}")
        progress.progress((i + 1) / len(picked), text=f"measured {e['name']}")
    row = {"checkpoint": e["name"], "strategy": e.get("strategy"), "task": e.get("task")}
    row.update({k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
    row["parameters"] = e.get("parameters")
    row["ms (one pair)"] = round(latency[e["name"]], 2) if e["name"] in latency else None
    published = ui_state.published_for(e)
    if published:
        row[f"seed's {published['metric']}"] = published["value"]
        row["seed's source"] = published["source"]
    rows.append(row)
if progress is not None:
    progress.empty()
table = pd.DataFrame(rows)
st.dataframe(table, hide_index=True)
ui.download_table(table, f"compare-{dataset_name}", key="table-csv")
st.caption("Click a column header to sort. The seeds' numbers were measured on their own data, so they are "
           "a reference point, not a like-for-like score.")
