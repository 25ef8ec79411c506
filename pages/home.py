"""Home: what the lab is, the way to each page, and the checkpoints it can show."""
import pandas as pd
import streamlit as st

from pages import _ui as ui

ui.page_header("mmlab · a lab for multimodal fusion", "Image + text fusion, made visible.")
st.markdown(
    "Give a model an **image** and a **sentence**, pick how the two are **fused**, and see what it "
    "predicts, where its cross-attention looks, the mask it draws for the object the sentence names, "
    "what happens when one modality is missing, and how the joint latent space is laid out. "
    "Everything runs offline on the shipped checkpoints and the built-in datasets."
)

PAGES = [
    ("pages/playground.py", "Playground", ":material/science:",
     "One picture + one sentence → the answer, the map of each word with how far it can be trusted, the mask. "
     "Upload a photo: the photo model finds what the sentence names in it."),
    ("pages/compare.py", "Compare strategies", ":material/compare:",
     "Every strategy of the zoo on the same input, side by side, and a sortable table of test metrics."),
    ("pages/attention.py", "Attention inspector", ":material/visibility:",
     "Maps per layer and head, rollout and gradient relevance; which words look at a patch; map → mask → IoU."),
    ("pages/modality.py", "Modality lab", ":material/tune:",
     "Drop or corrupt the image or the text and watch the prediction move; ablation tables and curves."),
    ("pages/latent.py", "Latent space", ":material/scatter_plot:",
     "PCA / t-SNE / UMAP of image, text and fused embeddings; the modality gap; your own pair placed in the map."),
    ("pages/train.py", "Train", ":material/model_training:",
     "Train a model in the app with live curves and a cancel button; it becomes a checkpoint every page can pick."),
    ("pages/learn.py", "Learn", ":material/school:",
     "Early, mid and late fusion and missing-modality methods, each beside a live mini-demo, to project in class."),
    ("pages/data.py", "Data", ":material/dataset:",
     "Browse the built-in datasets, or check your own folder / zip with metadata.csv."),
]

cols = st.columns(2)
for i, (path, title, icon, text) in enumerate(PAGES):
    with cols[i % 2].container(border=True):
        st.page_link(path, label=f"**{title}**", icon=icon)
        st.caption(text)

st.subheader("Checkpoints")
entries = ui.checkpoints()
if entries:
    rows = []
    for e in entries:
        faith = e.get("faithfulness") or {}
        rows.append({"name": e["name"], "dataset": e.get("dataset"), "task": e.get("task"),
                     "strategy": e.get("strategy"), "epochs": (e.get("train") or {}).get("epochs"),
                     **{k: round(v, 3) for k, v in (e.get("metrics") or {}).items() if isinstance(v, float)},
                     "attention on the named object": faith.get("attention_pointing_head"),
                     "chance": faith.get("chance_pointing"),
                     "parameters": e.get("parameters"), "train s": e.get("train_seconds"), "source": e.get("source")})
    df = pd.DataFrame(rows)
    first = ["name", "dataset", "task", "strategy", "accuracy", "macro_f1", "iou", "dice"]
    df = df[[c for c in first if c in df.columns] + [c for c in df.columns if c not in first]]
    st.dataframe(df, hide_index=True)
    ui.download_table(df, "mmlab-checkpoints", key="home-csv")
else:
    ui.no_checkpoint_message()

st.caption("'attention on the named object': how often the head noun's attention peaks on the object the sentence "
           "names, on the checkpoint's test split (measured by `mmlab faithfulness`; chance beside it). A map that "
           "rarely does is shown with that figure, never as 'where the model looks'.")
st.caption("State lives in the URL: copy the address bar to share exactly what you see. "
           "Every figure downloads as PNG (camera icon) or HTML, every table as CSV.")
