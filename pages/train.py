"""Train: choose data, strategy, encoders and every training option; train with live curves; save a checkpoint.

The form builds an ``mmlab.experiment.Experiment``, the same one ``mmlab train`` builds from its flags,
and a ``mmlab.jobs.TrainJob`` runs it in this tab's background thread: a model trained here is the
model the command line would have made.
"""
import time

import streamlit as st

from mmlab import jobs, ui_state, viz
from mmlab.errors import InputError
from pages import _ui as ui

JOB = "train_job"  # a model being trained belongs to this tab (st.session_state), never to a shared cache

ui.page_header("Train", "Train a model here, on this machine's CPU. Every option of `mmlab train` is here; the "
               "result is saved as a checkpoint every page can pick, exactly as the command line would save it.")


def show_progress(job: jobs.TrainJob) -> None:
    """Progress bar, live loss and metric curves of a job."""
    done = len(job.steps)
    if job.total_steps:
        text = f"{job.state}: step {done} of {job.total_steps}"
    else:
        waited = time.perf_counter() - job.started if job.started else 0.0
        text = f"{job.state}: preparing the data and the model ({waited:.0f} s)…"
    if job.running and job._cancel.is_set():
        text = "cancelling: stopping after the current step…"
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
def live(job: jobs.TrainJob) -> None:
    """Redrawn every second while the job runs (and tells the job its tab is still open); the whole page
    reruns once when it ends."""
    job.touch()
    if st.button("Cancel training", type="secondary", icon=":material/stop:", key="cancel"):
        job.cancel()
    show_progress(job)
    if not job.running:
        st.rerun()


job = st.session_state.get(JOB)
if job is not None and job.running:
    live(job)
    st.stop()

if job is not None:
    if job.state == "done":
        renamed = f" (the name {job.name!r} was taken)" if job.saved_as != job.name else ""
        st.success(f"Saved checkpoint **{job.saved_as}**{renamed} in {job.seconds:.0f} s. Metrics on its "
                   f"{job.entry['metrics'].get('n', '?')} test pairs: "
                   + ", ".join(f"{k} {v:.3f}" for k, v in job.entry["metrics"].items() if isinstance(v, float)))
        st.page_link("pages/playground.py", label="Open it in the Playground", icon=":material/science:",
                     query_params={"ckpt": job.saved_as})
    elif job.state == "cancelled":
        st.warning("Training was cancelled: nothing was saved, earlier checkpoints are untouched.")
    elif job.state == "failed":
        st.error(f"Training failed: {job.error}")
    show_progress(job)

# ---- the form ---------------------------------------------------------------------------------
from mmlab.encoders import available as encoders  # noqa: E402
from mmlab.fusion import trainable as trainable_strategies  # noqa: E402

datasets = ui.trainable_datasets()
fusions = trainable_strategies()
with st.form("train"):
    c1, c2, c3 = st.columns(3)
    dataset = c1.selectbox("Dataset", list(datasets), key="t_data", bind="query-params",
                           help="the built-in datasets, and the ones you uploaded on the Data page")
    task = c2.selectbox("Task", ["mask", "classify", "multitask", "contrastive", "generate"], key="t_task",
                        bind="query-params", help="mask: the referring mask plus the class (datasets with masks); "
                                                  "classify: the class")
    fusion = c3.selectbox("Fusion strategy", fusions, index=fusions.index("cross_attention"), key="t_fusion",
                          bind="query-params")
    c1, c2, c3 = st.columns(3)
    image_encoder = c1.selectbox("Image encoder", [e for e in encoders()["image"] if ":" not in e], key="t_img",
                                 bind="query-params")
    text_encoder = c2.selectbox("Text encoder", encoders()["text"], key="t_txt", bind="query-params")
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
    shown = {"dataset", "task", "fusion", "image_encoder", "text_encoder", "dim", "epochs", "max_train", "batch_size",
             "drop_image", "drop_text", "lr"}
    with st.expander("More options (every other option of mmlab train)"):
        more = ui.option_widgets(exclude=shown)
    name = st.text_input("Checkpoint name", value="", key="t_name", placeholder=f"{dataset}-{fusion}-mine",
                         help="letters, digits, '-', '_' or '.'; if you already have a model of that name, this one "
                              "is saved as name-2")
    submitted = st.form_submit_button("Train", type="primary", icon=":material/play_arrow:")

if submitted:
    try:
        exp = ui.experiment_from_form(datasets[dataset], task=task, fusion=fusion, image_encoder=image_encoder,
                                      text_encoder=text_encoder, dim=int(dim), epochs=int(epochs),
                                      max_train=int(max_train), batch_size=int(batch_size),
                                      drop_image=float(drop_image), drop_text=float(drop_text), lr=float(lr),
                                      more=more)
        job = jobs.TrainJob(exp, (name or f"{dataset}-{fusion}-mine").strip(), jobs.user_root()).start()
    except InputError as e:
        st.error(str(e))
    else:
        st.session_state[JOB] = job
        st.rerun()

try:
    estimate = jobs.estimate(ui.experiment_from_form(datasets[dataset], task=task, fusion=fusion,
                                                     image_encoder=image_encoder, text_encoder=text_encoder,
                                                     dim=int(dim), epochs=int(epochs), max_train=int(max_train),
                                                     batch_size=int(batch_size), drop_image=float(drop_image),
                                                     drop_text=float(drop_text), lr=float(lr), more=more),
                             ui_state.all_checkpoints()[0])
except InputError:
    estimate = None
if estimate:
    st.caption(f"Expected training time: {estimate}.")
st.caption(f"Your checkpoints are saved in `{jobs.user_root()}`; each records its experiment, and "
           "`mmlab train` with the same options rebuilds it.")
