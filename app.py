"""mmlab's Streamlit app: the entry file is a router over the pages in ``pages/``.

Run it with ``mmlab app`` or ``streamlit run app.py``.
"""
import os

# torch's OpenMP threads sleep instead of spinning while they wait: on a shared 2-core machine spinning
# threads make every model call several times slower (docs/BENCHMARKS.md). Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pandas  # noqa: E402,F401 - before any background thread: plotly reads sys.modules["pandas"] without
# importing it, so a figure drawn while another thread is halfway through importing pandas fails ("partially
# initialized module 'pandas' has no attribute 'Series'")
import streamlit as st  # noqa: E402

from mmlab import warm  # noqa: E402

st.set_page_config(page_title="mmlab · multimodal fusion lab", page_icon="🔬", layout="wide")

PAGES = {
    "mmlab": [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    ],
    "Explore": [
        st.Page("pages/playground.py", title="Playground", icon=":material/science:"),
        st.Page("pages/compare.py", title="Compare strategies", icon=":material/compare:"),
        st.Page("pages/attention.py", title="Attention inspector", icon=":material/visibility:"),
        st.Page("pages/modality.py", title="Modality lab", icon=":material/tune:"),
        st.Page("pages/latent.py", title="Latent space", icon=":material/scatter_plot:"),
    ],
    "Build and learn": [
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/learn.py", title="Learn", icon=":material/school:"),
        st.Page("pages/data.py", title="Data", icon=":material/dataset:"),
    ],
}

with warm.busy():  # idle-time work (UMAP's compile) waits for the pages, never the other way round
    warm.start()  # the first visitor's session starts loading the models in the background (once per server)
    st.navigation(PAGES).run()
