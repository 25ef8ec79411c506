"""Train: choose data, strategy, encoders, epochs and dropout; train with live curves; save a checkpoint."""
import streamlit as st

from mmlab import ui_state, viz
from mmlab.errors import InputError
from pages import _ui as ui

JOB = "train_job"  # a model being trained belongs to this session (st.session_state), never to a shared cache
IMAGE_ENCODERS = ["cnn", "cnn_cbam", "efficientnet_lite0"]
TEXT_ENCODERS = ["bigru", "minilm", "minilm_bigru"]
TRAINABLE = ["shapes", "shapes_truth", "easyvqa", "digits", "mnist"]

ui.page_header("Train", "Train a model here, on this machine's CPU. The small CNN + BiGRU encoders train a shapes "
               "mask model in about a minute; the pretrained encoders (EfficientNet-Lite0, MiniLM) are frozen and "
               "slower on the first epoch while their features are cached. The result is saved as a checkpoint "
               "that every page can pick.")


def show_progress(job: ui_state.TrainJob) -> None:
    """Progress bar, live loss and metric curves of a job."""
    done = len(job.steps)
    text = (f"{job.state}: step {done} of {job.total_steps}" if job.total_steps
            else f"{job.state}: preparing the data and the model…")
    st.progress(job.progress, text=text)
    c1, c2 = st.columns(2)
    if job.steps:
        steps, losses = zip(*job.steps)
        with c1:
            ui.show_figure(viz.curves_figure(steps, {"loss": losses}, x_title="step", y_title="training loss",
                                             markers=False), "train-loss", key=f"loss-{job.state}-{done}")
    metric_keys = [k for k in (job.history[0] if job.history else {}) if k.startswith("val_") and
                   not k.endswith("macro_f1")]
    if job.history and metric_keys:
        epochs = [h["epoch"] for h in job.history]
        with c2:
            ui.show_figure(viz.curves_figure(epochs, {k[4:]: [h.get(k) for h in job.history] for k in metric_keys},
                                             x_title="epoch", y_title="validation metric"),
                           "train-metrics", key=f"metrics-{job.state}-{len(job.history)}")


@st.fragment(run_every=1.0)
def live(job: ui_state.TrainJob) -> None:
    """Redrawn every second while the job runs; the whole page reruns once when it ends."""
    if st.button("Cancel training", type="secondary", icon=":material/stop:", key="cancel"):
        job.cancel()
        st.toast("Cancelling after the current step…")
    show_progress(job)
    if not job.running:
        st.rerun()


job = st.session_state.get(JOB)
if job is not None and job.running:
    live(job)
    st.stop()

if job is not None:
    if job.state == "done":
        st.success(f"Saved checkpoint **{job.entry['name']}** in {job.seconds:.0f} s. Metrics on "
                   f"{job.entry['metrics'].get('n', '?')} test pairs: "
                   + ", ".join(f"{k} {v:.3f}" for k, v in job.entry["metrics"].items() if isinstance(v, float)))
        st.page_link("pages/playground.py", label="Open it in the Playground", icon=":material/science:",
                     query_params={"ckpt": job.entry["name"]})
    elif job.state == "cancelled":
        st.warning("Training was cancelled: nothing was saved, earlier checkpoints are untouched.")
    elif job.state == "failed":
        st.error(f"Training failed: {job.error}")
    show_progress(job)

# ---- the form ---------------------------------------------------------------------------------
from mmlab.fusion import available as strategies  # noqa: E402

with st.form("train"):
    c1, c2, c3 = st.columns(3)
    dataset = c1.selectbox("Dataset", TRAINABLE, key="t_data", bind="query-params")
    task = c2.selectbox("Task", ["mask", "classify"], key="t_task", bind="query-params",
                        help="mask: the referring mask (shapes only) plus the class; classify: the class")
    fusion = c3.selectbox("Fusion strategy", strategies(), index=strategies().index("cross_attention")
                          if "cross_attention" in strategies() else 0, key="t_fusion", bind="query-params")
    c1, c2, c3 = st.columns(3)
    image_encoder = c1.selectbox("Image encoder", IMAGE_ENCODERS, key="t_img", bind="query-params")
    text_encoder = c2.selectbox("Text encoder", TEXT_ENCODERS, key="t_txt", bind="query-params")
    dim = c3.select_slider("Width (dim)", [16, 32, 64, 128], value=32, key="t_dim", bind="query-params")
    c1, c2, c3 = st.columns(3)
    epochs = c1.number_input("Epochs", 1, 50, 3, key="t_epochs", bind="query-params")
    max_train = c2.number_input("Training pairs", 64, 50000, 1024, step=64, key="t_n", bind="query-params")
    batch_size = c3.select_slider("Batch size", [16, 32, 64, 128], value=32, key="t_bs", bind="query-params")
    c1, c2, c3 = st.columns(3)
    drop_image = c1.slider("Drop the image (per sample, in training)", 0.0, 0.5, 0.0, 0.05, key="t_di",
                           bind="query-params")
    drop_text = c2.slider("Drop the text (per sample, in training)", 0.0, 0.5, 0.0, 0.05, key="t_dt",
                          bind="query-params")
    lr = c3.select_slider("Learning rate", [5e-4, 1e-3, 2e-3, 3e-3, 5e-3], value=2e-3, key="t_lr",
                          bind="query-params")
    name = st.text_input("Checkpoint name", value="", key="t_name", placeholder=f"{dataset}-{fusion}-mine",
                         help="letters, digits, '-', '_' or '.'; an existing name of yours is replaced")
    submitted = st.form_submit_button("Train", type="primary", icon=":material/play_arrow:")

if submitted:
    if task == "mask" and dataset not in ("shapes", "shapes_truth"):
        st.error(f"{dataset} has no masks: pick the classify task, or the shapes dataset.")
    else:
        request = dict(dataset=dataset, task=task, fusion=fusion, image_encoder=image_encoder,
                       text_encoder=text_encoder, dim=int(dim), epochs=int(epochs), max_train=int(max_train),
                       batch_size=int(batch_size), drop_image=float(drop_image), drop_text=float(drop_text),
                       lr=float(lr), name=(name or f"{dataset}-{fusion}-mine").strip())
        try:
            st.session_state[JOB] = ui_state.TrainJob(request, ui_state.user_root()).start()
        except InputError as e:
            st.error(str(e))
        else:
            st.rerun()

st.caption(f"Your checkpoints are saved in `{ui_state.user_root()}`. The command each one records rebuilds it "
           "with `mmlab train`.")
