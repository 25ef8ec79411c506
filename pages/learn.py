"""Learn: the fusion levels of seed 003 (early / mid / late, attention, missing modalities), each beside a live demo
on a checkpoint trained for the sample's own data, and a lesson on why attention is not explanation."""
import pandas as pd
import streamlit as st

from mmlab import viz
from mmlab.errors import InputError
from pages import _ui as ui

TABS = ["Early", "Mid", "Attention", "Attention ≠ explanation", "Late", "Missing modality", "Trade-offs"]
FAMILIES = {"shapes": "shapes (referring scenes)", "shapes_truth": "shapes_truth (is the sentence true?)",
            "easyvqa": "easy-VQA (questions)", "digits": "digits (noisy captions)"}

CONCEPTS = {
    "early": """
**Early fusion joins the raw inputs.** Pixels and word embeddings are flattened and concatenated
*before* any modality-specific processing; one joint network learns everything from there.

- ✓ nothing is hidden from the model: every interaction can in principle be learned
- ✗ a huge input, a high risk of over-fitting, no use of a CNN's or a language model's structure,
  no pretrained encoders; one noisy modality spoils the whole vector

*When:* tiny, tightly coupled problems, or as a baseline. Almost never in practice (seed 003, §5.1).
""",
    "mid": """
**Mid (feature-level) fusion joins what each encoder found.** Each modality has its own encoder
(here a small CNN and a BiGRU, or the pretrained EfficientNet-Lite0 and MiniLM); their vectors are
projected to one width and combined: **concatenation**, **addition** (agreement), **Hadamard product**
(an AND: both must be large), **bilinear** / **outer product** (all pairwise interactions),
**gates** (learned trust per modality) or **concatenation + attention**.

- ✓ uses pretrained encoders, strong cross-modal interaction, the default choice
- ✗ pooled vectors forget *where* things are: they draw the mask of "the small red triangle left of the
  blue circle" poorly (numbers below)
""",
    "attention": """
**Attention fusion lets one modality look into the other.** In *text → image cross-attention* every
word is a query over the image patches, so "red triangle" can pick out the patches that hold one.
Position survives, which is why it solves referring masks (numbers below). A *multimodal transformer*
puts [IMG] and [TXT] tokens in one sequence with modality and position embeddings (seed 003, §5.3).

- ✓ spatial detail; maps you can look at (see the Attention inspector, and the next tab before trusting them)
- ✗ cost grows with words × patches per layer and head
""",
    "late": """
**Late (decision-level) fusion joins the answers.** Each modality has its own full classifier;
their class probabilities are combined by **averaging**, **weighted averaging**, a normalised
**product** (Bayesian: independent evidence), the **maximum** (optimistic) or a **majority vote**.

- ✓ modular, robust when one modality is missing or noisy, easy to read
- ✗ no cross-modal interaction at all: it cannot answer a question whose answer needs *both*
  modalities together (is *this* sentence true of *this* image?)
""",
    "missing": """
**When a modality is missing at test time** (the photo did not load, the caption is empty):

1. **Modality dropout in training** (seed 001): drop the image or the text of random samples while
   training, so the model learns not to lean on one alone.
2. **A stand-in for the missing features**: zeros, a *learned* "missing" token, or **imputation**:
   a small network predicts the missing modality's features from the other (seed 003, §5.4, solution 3).
3. **Gates** learn how much to trust each modality and can close for a missing one (solution 2).
4. **Late fusion** simply skips the missing branch (solution 1: independent pipelines).
""",
}

TRADEOFFS = pd.DataFrame(
    [["input", "raw data (pixels, words)", "features (vectors)", "predictions (probabilities)"],
     ["computation", "slow", "medium", "fast"],
     ["memory", "very high", "medium", "low"],
     ["over-fitting risk", "high", "moderate", "low"],
     ["cross-modal interaction", "very strong", "strong", "none"],
     ["interpretability", "low", "medium", "high"],
     ["transfer learning", "impossible", "excellent", "good"],
     ["robustness to noise", "poor", "good", "excellent"],
     ["when to use", "rarely", "most tasks", "special cases"]],
    columns=["", "early", "mid", "late"])

ui.page_header("Learn: how to fuse two modalities", "The fusion levels of seed 003 (Chapter 5), each beside a live "
               "demo on the zoo. Pick data and a sample once; every tab shows it, through checkpoints trained on "
               "that data.")


def family_of(strategy: str) -> str:
    from mmlab.fusion import get

    try:
        return get(strategy).family
    except InputError:  # a checkpoint of a strategy this install does not know
        return "?"


def strategies_table(family: str) -> None:
    from mmlab.fusion import REGISTRY, describe

    rows = [{"strategy": n, "what it does": describe(n)} for n, cls in REGISTRY.items() if cls.family == family]
    if rows:
        st.markdown("**In mmlab:**")
        for row in rows:
            first = row["what it does"].split(". ")[0].rstrip(".")
            st.markdown(f"- `{row['strategy']}`: {first}.", help=row["what it does"])
        ui.download_table(pd.DataFrame(rows), f"{family}-strategies", key=f"{family}-csv")


def of_this_data(entry: dict) -> bool:
    """A checkpoint trained on the sample's own kind of data (the same dataset and options; how many pairs it
    was trained on does not matter)."""
    def kind(options: dict) -> dict:
        return {k: v for k, v in (options or {}).items() if k != "n"}

    return entry.get("dataset") == data_name and kind(entry.get("data_options")) == kind(recipe.data_options)


def demo(family: str, sample, *, key: str, drop: str | None = None) -> None:
    """The sample through a checkpoint of this family trained on the sample's data: answer, map and mask."""
    pool = [e for e in ui.checkpoints(of_this_data) if family_of(e.get("strategy", "")) == family]
    if not pool:
        st.info(f"No {family}-fusion checkpoint is trained on {FAMILIES[data_name]}: pick other data in the sidebar, "
                "or train one on the **Train** page.")
        return
    names = [e["name"] for e in pool]
    entry = pool[names.index(st.selectbox("Checkpoint", names, key=key, bind="query-params"))]
    pred = ui.predict_entry(entry, sample, drop)
    if pred is None:
        return
    trusted = ui.domain_notice(pred, entry)
    c1, c2 = st.columns(2)
    result = ui.explain_entry(entry, sample, "attention")
    if result is not None:
        c1.image(viz.overlay(sample.image, result.map, size=ui.SHOW), width="stretch",
                 caption=ui.map_caption(result, None))
        c1.caption(ui.fidelity(entry, result.method_used))
    if pred.mask is not None:
        c2.image(viz.mask_overlay(sample.image, pred.mask, size=ui.SHOW), width="stretch", caption="its mask")
    if pred.label is not None and trusted:
        st.metric("Answer", pred.label, f"{pred.probs[pred.label]:.0%} sure", delta_color="off", delta_arrow="off")


def manifest_number(name: str, metric: str) -> str:
    entry = next((e for e in ui.checkpoints() if e["name"] == name), None)
    value = (entry or {}).get("metrics", {}).get(metric)
    return f"{value:.3f}" if isinstance(value, float) else "not in this zoo"


with st.sidebar:
    from mmlab.zoo import recipes

    data_name = st.selectbox("Data", list(FAMILIES), key="ldata", bind="query-params")
    st.caption(FAMILIES[data_name])
    recipe = recipes()["shapes-mask" if data_name == "shapes" else data_name]
    source = ui.pick_source()
    pool = ui.checkpoints(of_this_data)
    sample = None
    if source == ui.SAMPLE:
        from mmlab.experiment import load_split

        try:
            sample = ui.pick_input(None, source=source, data=load_split(recipe, "test"))
        except InputError as e:
            st.error(str(e))
    else:
        sample = ui.pick_input(None, source=source)
if sample is None:
    st.stop()
st.sidebar.image(viz.shown(sample.image, ui.SHOW), width="stretch")
st.sidebar.text(sample.text)

tabs = st.tabs(TABS, key="tab", bind="query-params", on_change="rerun")
for tab, family in zip(tabs, ["early", "mid", "attention"]):
    if not tab.open:
        continue
    with tab:
        text, live = st.columns([1.1, 1], gap="large")
        with text:
            st.markdown(CONCEPTS[family])
            if family in ("mid", "attention"):
                st.markdown(
                    "**The numbers, measured by mmlab on the shapes referring masks (mask IoU, test split, all "
                    "trained 8 epochs):** pooled concatenation "
                    f"{manifest_number('shapes-mask-concat', 'iou')}, outer product "
                    f"{manifest_number('shapes-mask-tensor', 'iou')}, cross-attention "
                    f"{manifest_number('shapes-mask-cross_attention-bce_dice', 'iou')}. "
                    "**Seed 004's own, on its data** (MagicBrush edits, ResNet-50 + BERT): outer product 0.1991, "
                    "cross-attention 0.9617 after 200 epochs. A pooled model can draw a mask here (its decoder "
                    "still sees the picture's edges), just not reliably the right object.")
            strategies_table(family)
        with live:
            st.markdown("#### Live")
            demo(family, sample, key=f"learn_{family}")

if tabs[3].open:
    with tabs[3]:
        st.markdown("""
#### Attention is not explanation (and how to make it one)
Two checkpoints draw the referring mask equally well. In the first (`cross_attention`), the sentence reaches
the mask decoder through a vector that modulates every patch: the attention is computed, shown, and **not
needed**. In the second (`grounded_cross_attention`), the decoder sees only the patches the words' attention
selects, and training asks the head noun's attention to cover the named object. Same mask quality; very
different maps. The test: give every scene **another scene's attention** and measure the masks again.
""")
        pair = [e for e in ui.checkpoints() if e["name"] in ("shapes-mask-cross_attention",
                                                             "shapes-mask-grounded_cross_attention")]
        rows = []
        for e in pair:
            card = (ui.load_model(e).meta or {}).get("faithfulness") or {}
            att = (card.get("methods") or {}).get("attention") or {}
            inter = card.get("intervention") or {}
            rows.append({"checkpoint": e["name"], "epochs": (e.get("train") or {}).get("epochs"),
                         "mask IoU": e["metrics"].get("iou"), "head noun's attention on the object": att.get(
                             "pointing_head"), "chance": (card.get("chance") or {}).get("pointing"),
                         "IoU with another scene's attention": inter.get("swapped"),
                         "IoU with uniform attention": inter.get("uniform")})
        if rows:
            st.dataframe(pd.DataFrame(rows).round(3), hide_index=True)
            st.caption("Measured by `mmlab faithfulness` on each checkpoint's test split (the attention figure: how "
                       "often the head noun's map, mean of layers and heads, peaks on the named object).")
        if sample.source == "sample" and data_name == "shapes" and pair:
            cols = st.columns(len(pair))
            for col, e in zip(cols, pair):
                with col:
                    st.markdown(f"**{e['name']}**")
                    pred = ui.predict_entry(e, sample)
                    if pred is None:
                        continue
                    word = sample.head if sample.head in pred.tokens else None
                    token = pred.tokens.index(word) if word else None
                    result = ui.explain_entry(e, sample, "attention", token=token)
                    if result is not None:
                        st.image(viz.overlay(sample.image, result.map, size=ui.SHOW), width="stretch",
                                 caption=ui.map_caption(result, word))
                    if pred.mask is not None:
                        st.image(viz.mask_overlay(sample.image, pred.mask, truth=sample.truth, size=ui.SHOW),
                                 width="stretch", caption="its mask (truth outlined)")
        else:
            st.info("Pick a shapes sample in the sidebar to see the two side by side.")

if tabs[4].open:
    with tabs[4]:
        text, live = st.columns([1.1, 1], gap="large")
        with text:
            st.markdown(CONCEPTS["late"])
            strategies_table("late")
        with live:
            st.markdown("#### Live")
            demo("late", sample, key="learn_late")

if tabs[5].open:
    with tabs[5]:
        text, live = st.columns([1.1, 1], gap="large")
        with text:
            st.markdown(CONCEPTS["missing"])
        with live:
            st.markdown("#### Live: take a modality away")
            if not pool:
                ui.no_checkpoint_message()
            else:
                names = [e["name"] for e in pool]
                entry = pool[names.index(st.selectbox("Checkpoint", names, key="learn_missing", bind="query-params"))]
                runs = {}
                for label, drop in (("both", "none"), ("image only", "text"), ("text only", "image")):
                    pred = ui.predict_entry(entry, sample, drop)
                    if pred is not None and pred.label is not None:
                        runs[label] = pred.probs
                if runs:
                    ui.show_figure(viz.grouped_probs_figure(runs, title="the same pair, with a modality dropped"),
                                   "missing-modality", key="missing-fig")
                    tr = entry.get("train") or {}
                    st.caption(f"{entry['name']} was trained with text dropout {tr.get('drop_text', 0)} and image "
                               f"dropout {tr.get('drop_image', 0)}; the missing one is replaced by its stand-in "
                               f"({(entry.get('config') or {}).get('missing', 'learned')}).")

if tabs[6].open:
    with tabs[6]:
        st.markdown("#### Early, mid and late fusion compared (seed 003, §5.2)")
        st.dataframe(TRADEOFFS, hide_index=True)
        ui.download_table(TRADEOFFS, "fusion-tradeoffs", key="tradeoffs-csv")
        st.markdown("**Default: mid fusion** (the best balance). Late fusion when modalities are independent or "
                    "often missing; attention when *where* matters; early fusion only as a baseline.")
