"""Learn: the fusion levels of seed 003 (early / mid / late, attention, missing modalities), each beside a live demo."""
import pandas as pd
import streamlit as st

from mmlab import viz
from pages import _ui as ui

TABS = ["Early", "Mid", "Attention", "Late", "Missing modality", "Trade-offs"]

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
- ✗ pooled vectors forget *where* things are: a pooled concat model cannot draw the mask of
  "the small red triangle left of the blue circle" (seed 004: outer product IoU 0.20)
""",
    "attention": """
**Attention fusion lets one modality look into the other.** In *text → image cross-attention* every
word is a query over the image patches, so "red triangle" can pick out the patches that hold one.
Position survives, which is why it solves referring masks (seed 004: IoU 0.92–0.96 against 0.20 for
the outer product). A *multimodal transformer* puts [IMG] and [TXT] tokens in one sequence with
modality and position embeddings (seed 003, §5.3).

- ✓ spatial detail, interpretable maps (see the Attention inspector)
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
               "demo on the zoo. Pick a sample once; every tab shows it.")


def family_of(strategy: str) -> str:
    from mmlab.fusion import get

    try:
        return get(strategy).family
    except Exception:  # noqa: BLE001 - a checkpoint of a strategy this install does not know
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


def matching_first(entries: list[dict], sample) -> list[dict]:
    """Checkpoints trained on the sample's dataset first (a shapes model answers a shapes scene)."""
    return sorted(entries, key=lambda e: e.get("dataset") != sample.dataset)


def demo(family: str, sample, *, key: str, drop: str | None = None) -> None:
    """The sample through a zoo checkpoint of this family: answer, map and mask."""
    pool = matching_first([e for e in ui.checkpoints() if family_of(e.get("strategy", "")) == family], sample)
    if not pool:
        st.info(f"No {family}-fusion checkpoint in the zoo yet: train one on the **Train** page.")
        return
    names = [e["name"] for e in pool]
    entry = pool[names.index(st.selectbox("Checkpoint", names, key=key, bind="query-params"))]
    pred = ui.predict_entry(entry, sample, drop)
    if pred is None:
        return
    c1, c2 = st.columns(2)
    result = ui.explain_entry(entry, sample, "attention")
    if result is not None:
        c1.image(viz.overlay(sample.image, result.map, size=ui.SHOW), width="stretch",
                 caption=f"where it looks ({result.method_used})")
    if pred.mask is not None:
        c2.image(viz.mask_overlay(sample.image, pred.mask, size=ui.SHOW), width="stretch", caption="its mask")
    if pred.label is not None:
        st.metric("Answer", pred.label, f"{pred.probs[pred.label]:.0%} sure", delta_color="off", delta_arrow="off")


with st.sidebar:
    sample = ui.pick_input(None, allow_upload=True)
if sample is None:
    st.stop()
st.sidebar.image(viz.resize(sample.image, ui.SHOW), caption=sample.text, width="stretch")

tabs = st.tabs(TABS, key="tab", bind="query-params", on_change="rerun")
for tab, (name, family) in zip(tabs[:4], [("Early", "early"), ("Mid", "mid"), ("Attention", "attention"),
                                          ("Late", "late")]):
    if not tab.open:
        continue
    with tab:
        text, live = st.columns([1.1, 1], gap="large")
        with text:
            st.markdown(CONCEPTS[family])
            strategies_table(family)
        with live:
            st.markdown("#### Live")
            demo(family, sample, key=f"learn_{family}")

if tabs[4].open:
    with tabs[4]:
        text, live = st.columns([1.1, 1], gap="large")
        with text:
            st.markdown(CONCEPTS["missing"])
        with live:
            st.markdown("#### Live: take a modality away")
            pool = matching_first(ui.checkpoints(), sample)
            if not pool:
                ui.no_checkpoint_message()
            else:
                names = [e["name"] for e in pool]
                entry = pool[names.index(st.selectbox("Checkpoint", names, key="learn_missing", bind="query-params"))]
                runs = {}
                for label, drop in (("both", None), ("image only", "text"), ("text only", "image")):
                    pred = ui.predict_entry(entry, sample, drop)
                    if pred is not None and pred.label is not None:
                        runs[label] = pred.probs
                if runs:
                    ui.show_figure(viz.grouped_probs_figure(runs, title="the same pair, with a modality dropped"),
                                   "missing-modality", key="missing-fig")
                    tr = (entry.get("train") or {})
                    st.caption(f"{entry['name']} was trained with text dropout {tr.get('drop_text', 0)} and image "
                               f"dropout {tr.get('drop_image', 0)}; the missing one is replaced by its stand-in.")

if tabs[5].open:
    with tabs[5]:
        st.markdown("#### Early, mid and late fusion compared (seed 003, §5.2)")
        st.dataframe(TRADEOFFS, hide_index=True)
        ui.download_table(TRADEOFFS, "fusion-tradeoffs", key="tradeoffs-csv")
        st.markdown("**Default: mid fusion** (the best balance). Late fusion when modalities are independent or "
                    "often missing; attention when *where* matters; early fusion only as a baseline.")
