"""Compare strategies: one input through every checkpoint trained for the same question, side by side, and the
test-split table (stored with each checkpoint, re-read for any first n pairs at once)."""
import pandas as pd
import streamlit as st

from mmlab import ui_state, viz
from mmlab.errors import InputError
from pages import _ui as ui

METHODS = ["attention", "rollout", "relevance", "gradcam"]
PICKED = "_compare_picked"  # {group: chosen names}: switching the group keeps each group's choice

ui.page_header("Compare strategies", "The same image and sentence through every strategy trained for one question: "
               "what each answers, its map, the mask it draws, how long it takes. Below, the test-split numbers.")
from mmlab.evaluate import score_mask  # noqa: E402 - after the title: it imports torch, seconds on a cold server

entries = ui.checkpoints(ui.trained)
if not entries:
    ui.no_checkpoint_message()
    st.stop()
groups = ui_state.zoo_groups(entries)
labels = list(groups)
default = next((i for i, g in enumerate(labels) if g.startswith("shapes · referring")), 0)
group = st.sidebar.selectbox("Checkpoints trained for", labels, index=default, key="zoo", bind="query-params")
pool = groups[group]
names = [e["name"] for e in pool]
remembered = st.session_state.setdefault(PICKED, {})
if st.session_state.get("_compare_group") != group:  # a group switch: this group's own earlier choice
    st.session_state["_compare_group"] = group
    st.session_state["pick"] = [n for n in remembered.get(group, names[:6]) if n in names]
chosen = st.sidebar.multiselect("Strategies", names, key="pick", bind="query-params")
remembered[group] = list(chosen)
picked = [e for e in pool if e["name"] in chosen]
method = st.sidebar.selectbox("Map", METHODS, key="method", bind="query-params",
                              help="attention: raw cross-attention; rollout; relevance: gradient-weighted "
                                   "(Chefer et al.); gradcam: for every strategy, attention or not")
if not picked:
    st.info("Pick at least one checkpoint in the sidebar.")
    st.stop()

source = ui.pick_source(st.sidebar)
sample = ui.pick_input(picked[0], source=source)
if sample is None:
    st.stop()

# ---- one input, every strategy --------------------------------------------------------------
answers, runs = {}, []
for e in picked:
    if ui.load_model(e) is None:
        continue
    try:
        pred = ui.predict(e["dir"], ui.mtime(e), sample.image, sample.text, None)
    except InputError as err:
        st.error(f"{e['name']}: {err}")
        continue
    runs.append((e, pred))
    if pred.label is not None and (pred.domain is None or pred.domain.in_distribution):
        answers[e["name"]] = pred.probs
flagged = [e["name"] for e, p in runs if p.domain is not None and not p.domain.in_distribution]
if flagged:
    st.warning(f"This pair is unlike what {len(flagged)} of the {len(runs)} checkpoints were trained on "
               f"({viz.md_escape(runs[0][1].domain.reason if runs and runs[0][1].domain else '')}): their answers are "
               "left out of the comparison below, and their pictures are marked.", icon=":material/warning:")
if answers:
    st.markdown("**Class probabilities per checkpoint**")
    ui.show_probabilities(viz.probs_by_run_table(answers))

cards: list = []  # (map overlay, mask overlay) per checkpoint, for one PNG of the whole comparison
per_row = min(3, max(1, len(runs)))
for start in range(0, len(runs), per_row):
    cols = st.columns(per_row)
    for col, (e, pred) in zip(cols, runs[start:start + per_row]):
        with col.container(border=True):
            st.markdown(f"**{viz.md_escape(e['name'])}** · `{e.get('strategy')}`")
            ok = pred.domain is None or pred.domain.in_distribution
            ms = ui.latency_ms(e["dir"], ui.mtime(e), sample.image, sample.text)
            answer = (f"answers **{viz.md_escape(pred.label)}** ({pred.probs[pred.label]:.0%}) · "
                      if pred.label is not None and ok else "out of its domain · " if not ok else "")
            st.markdown(f"{answer}{ms:.0f} ms",
                        help="median of five warm predictions on this machine, of the first pair with a picture of "
                             "this size (another sentence moves it by a few percent)")
            result = ui.explain_entry(e, sample, method)
            if result is not None:
                note = " (no attention: Grad-CAM)" if result.method_used != method else ""
                heat = viz.overlay(sample.image, result.map, size=ui.SHOW)
                cards.append(heat)
                st.image(heat, width="stretch", caption=f"{ui.map_caption(result, None)}{note}")
            if pred.mask is not None:
                masked = viz.mask_overlay(sample.image, pred.mask, truth=sample.truth, size=ui.SHOW)
                cards.append(masked)
                iou = f" · IoU {score_mask(pred.mask, sample.truth)['iou']:.3f}" if sample.truth is not None else ""
                st.image(masked, width="stretch", caption="mask" + iou)
if cards and len(cards) % max(1, len(runs)) == 0:  # one row per checkpoint: its map, its mask
    sheet = ui.png_later(cards, columns=len(cards) // len(runs))
    st.download_button("Download the pictures (PNG, one row per checkpoint)", sheet, file_name="compare-pictures.png",
                       mime="image/png", key="cards-png", on_click="ignore", icon=":material/download:")

# ---- the test split ---------------------------------------------------------------------------
st.subheader("On the test split")
n = st.select_slider("Test pairs", [100, 200, 500, 1000], value=1000, key="n", bind="query-params",
                     help="the first n pairs of each checkpoint's own test split (with the data options it was "
                          "trained with), re-read from the results stored with it")
rows = []
missing, live = [], []
latency = {e["name"]: ui.latency_ms(e["dir"], ui.mtime(e), sample.image, sample.text) for e, _ in runs}
for e in picked:
    stored = ui.artifacts(e)
    if stored is not None and stored.ablation_pairs:
        metrics = stored.scores(min(n, stored.ablation_pairs))
    else:  # no stored results (a checkpoint trained here): scored now, else the manifest's whole-split numbers
        with st.spinner(f"Scoring {e['name']} on {n} test pairs…"):
            metrics = ui.live_scores(e, n)
        if metrics is not None:
            live.append(e["name"])
        else:
            metrics = dict(e.get("metrics") or {})
            missing.append(e["name"])
    row = {"checkpoint": e["name"], "strategy": e.get("strategy"), "test pairs": metrics.get("n")}
    row.update({k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
    faith = e.get("faithfulness") or {}
    if "attention_pointing_head" in faith:
        row["attention on the named object"] = round(faith["attention_pointing_head"], 3)
        row["chance"] = round(faith.get("chance_pointing", float("nan")), 3)
    row["parameters"] = e.get("parameters")
    row["epochs"] = (e.get("train") or {}).get("epochs")
    row["ms (one pair)"] = round(latency[e["name"]], 2) if e["name"] in latency else None
    published = ui_state.published_for(e)
    if published:
        row[f"seed's {published['metric']}"] = published["value"]
        row["seed's source"] = published["source"]
    rows.append(row)
table = pd.DataFrame(rows)
st.dataframe(table, hide_index=True)
ui.download_table(table, f"compare-{group.split(' · ')[0]}", key="table-csv")
if live:
    st.caption(f"No stored results for {', '.join(live)}: scored just now on the same pairs (a mask model in bfloat16 "
               "where this CPU runs it: on the shipped mask models no metric moves by more than 3e-4 from float32).")
if missing:
    st.caption(f"No stored results for {', '.join(missing)}, and their data is not available here: the numbers shown "
               "for them are their whole test split's from the manifest (`mmlab zoo artifacts` stores the rest).")
st.caption("Click a column header to sort. Compare checkpoints with the same epochs (the column says): a longer "
           "schedule is not a better strategy. The seeds' numbers were measured on their own data, so they are a "
           "reference point, not a like-for-like score.")
