"""The one-screen Gradio Blocks demo: picture + sentence + checkpoint -> answer, attention, mask.

Layout only; every output is computed by ``mmlab.demo.handlers`` (plain functions). The
prediction is the public API endpoint ``/predict``; the other events are private.

Files the server keeps: uploads and answer pictures live in Gradio's cache folder and are deleted
once older than ``DELETE_CACHE[1]`` seconds (checked every ``DELETE_CACHE[0]``), and all of them
when the server stops. An answer picture is written under a name made of its content, to a
temporary file renamed into place: identical answers share one file that is never rewritten while
it is being served (Gradio's own save rewrites it in place, which cut concurrent downloads short).
"""
from __future__ import annotations

import atexit
import hashlib
import io
import os
import shutil
import tempfile
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: the demo runs offline

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from mmlab.demo import handlers  # noqa: E402
from mmlab.demo.handlers import WHOLE_SENTENCE  # noqa: E402

MAX_UPLOAD = "20mb"  # uploads above this are refused by the server before they reach a handler
QUEUE_SIZE = 64  # requests waiting beyond this are told the demo is busy
DELETE_CACHE = (300, 1800)  # every 5 minutes, delete uploads and answer pictures older than 30 minutes

# big, high-contrast type for a projector; local fonts only (nothing fetched)
THEME = gr.themes.Default(
    primary_hue="blue",
    text_size=gr.themes.sizes.text_lg,
    spacing_size=gr.themes.sizes.spacing_lg,
    font=("ui-sans-serif", "system-ui", "sans-serif"),
    font_mono=("ui-monospace", "monospace"),
)
CSS = """
.gradio-container { font-size: 20px; }
#title h1 { font-size: 2.4rem; margin-bottom: 0; }
#answer { font-size: 1.3rem; }
#answer h2 { font-size: 2.8rem !important; }
#no-checkpoint { border: 3px solid #d97706; border-radius: 8px; padding: 0.5rem 1rem; font-size: 1.3rem; }
"""


def png_file(picture: np.ndarray | None, folder: str | os.PathLike) -> str | None:
    """``picture`` (H, W, 3) uint8 as ``folder/<sha256 of the PNG>/image.png``; None stays None.

    Written to a temporary file and renamed into place, every time (a fresh file age for
    ``DELETE_CACHE``): a reader that opened the file before keeps reading the whole of it.
    Compression level 3: 40 ms for the two 384-pixel answer pictures instead of 100 ms at 6.
    """
    if picture is None:
        return None
    buf = io.BytesIO()
    Image.fromarray(np.asarray(picture, dtype=np.uint8)).save(buf, "PNG", compress_level=3)
    data = buf.getvalue()
    where = Path(folder) / hashlib.sha256(data).hexdigest()
    where.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".image.", suffix=".tmp", dir=where)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, where / "image.png")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return str(where / "image.png")


def build_demo(checkpoints_root: str | os.PathLike | None = None, *,
               delete_cache: tuple[int, int] | None = DELETE_CACHE) -> gr.Blocks:
    """The demo as a ``gr.Blocks`` (queue on; predictions share one slot, served in arrival order).

    ``checkpoints_root``: the zoo folder holding ``manifest.json`` (default: ``checkpoints/``).
    The example pictures are written to a temporary folder, removed when the process exits.
    ``delete_cache``: Gradio's (every seconds, older than seconds) for uploads and answer pictures.
    """
    root = checkpoints_root
    names = handlers.checkpoint_choices(root)
    message = handlers.no_checkpoint_message(root)
    example_dir = tempfile.mkdtemp(prefix="mmlab-demo-")
    atexit.register(shutil.rmtree, example_dir, ignore_errors=True)
    examples = handlers.prepare_examples(example_dir)

    # the only files opened by path: what was uploaded to this server, and the demo's own examples
    allowed = (*handlers.upload_folders(), example_dir)

    def as_files(probs, attention_picture, mask_picture, details, summary):
        cache = handlers.upload_folders()[0]  # Gradio's cache: its files are served and deleted on schedule
        try:
            return probs, png_file(attention_picture, cache), png_file(mask_picture, cache), details, summary
        except OSError as e:  # a full disk: a short message, the server keeps serving
            raise gr.Error(f"the server cannot store the answer pictures ({e.strerror})", print_exception=False) from None

    def answer(image, text, checkpoint, token):
        return as_files(*handlers.predict(image, text, checkpoint, token, root=root, allowed=allowed))

    def answer_sentence(image, text, checkpoint):
        return as_files(*handlers.predict(image, text, checkpoint, WHOLE_SENTENCE, root=root, allowed=allowed))

    def tokens(text, checkpoint):
        return gr.Dropdown(choices=handlers.token_choices(text, checkpoint, root=root), value=WHOLE_SENTENCE)

    def refresh():
        now = handlers.checkpoint_choices(root)
        note = handlers.no_checkpoint_message(root)
        return (gr.Dropdown(choices=now, value=now[0][1] if now else None),
                gr.Markdown(note or "", visible=note is not None))

    with gr.Blocks(title="mmlab demo", analytics_enabled=False, fill_width=True, delete_cache=delete_cache) as demo:
        demo.mmlab_example_dir = example_dir  # served to the browser: launch() allows this folder
        gr.Markdown("# mmlab: what does the model see?", elem_id="title")
        warning = gr.Markdown(message or "", visible=message is not None, elem_id="no-checkpoint")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4):
                image = gr.Image(label="Picture", type="filepath", sources=["upload", "clipboard"], height=280)
                text = gr.Textbox(label="Sentence", placeholder="the large red circle", max_length=2000)
                with gr.Row():
                    checkpoint = gr.Dropdown(names, value=names[0][1] if names else None, label="Checkpoint")
                    token = gr.Dropdown([WHOLE_SENTENCE], value=WHOLE_SENTENCE, label="Attention of")
                button = gr.Button("Answer", variant="primary", size="lg")
                picked = gr.Examples(examples, inputs=[image, text], examples_per_page=10, cache_examples=False,
                                     api_visibility="private",
                                     label="Examples: photos (for the photo model), then generated shapes scenes "
                                           "(for the shapes models)")
            with gr.Column(scale=6):
                label = gr.Label(label="Answer", num_top_classes=5, elem_id="answer")
                with gr.Row():
                    attention = gr.Image(label="Its map (mean of layers and heads; how far it can be trusted: below)",
                                         format="png",
                                         height=340, interactive=False, buttons=["download", "fullscreen"])
                    mask = gr.Image(label="Predicted mask", format="png", height=340, interactive=False,
                                    buttons=["download", "fullscreen"])
                summary = gr.Markdown()
                with gr.Accordion("API output (JSON): label, probabilities, attention (h, w), mask (S, S)",
                                  open=False):
                    details = gr.JSON(label="details")

        # the raw payloads reach the handler: every upload goes through mmlab's validated loader
        gr.on([button.click, text.submit], answer, inputs=[image, text, checkpoint, token],
              outputs=[label, attention, mask, details, summary], api_name="predict", preprocess=False,
              concurrency_id="predict", api_description="Answer one (image, sentence) pair with a zoo checkpoint.")
        picked.load_input_event.then(answer_sentence, inputs=[image, text, checkpoint],  # one click answers
                                     outputs=[label, attention, mask, details, summary], preprocess=False,
                                     concurrency_id="predict", api_visibility="private")
        gr.on([text.change, checkpoint.change], tokens, inputs=[text, checkpoint], outputs=token,
              api_visibility="private", trigger_mode="always_last", show_progress="hidden")
        demo.load(refresh, outputs=[checkpoint, warning], api_visibility="private", show_progress="hidden")
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return demo


def launch(port: int = 7860, checkpoints_root: str | os.PathLike | None = None, *, block: bool = True,
           server_name: str | None = None, delete_cache: tuple[int, int] | None = DELETE_CACHE) -> gr.Blocks:
    """Build and serve the demo on ``server_name`` (default ``$GRADIO_SERVER_NAME`` or 127.0.0.1):``port``.

    Offline: analytics off, no share link, no browser opened, no server-side rendering. With
    ``block=False`` it returns at once with the server running (``demo.close()`` stops it).
    ``delete_cache``: see ``build_demo``.
    """
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    demo = build_demo(checkpoints_root, delete_cache=delete_cache)
    demo.launch(
        server_name=server_name,
        server_port=port,
        share=False,
        inbrowser=False,
        prevent_thread_lock=not block,
        show_error=False,  # unexpected errors reach the user as a short message, not a trace
        max_file_size=MAX_UPLOAD,
        allowed_paths=[demo.mmlab_example_dir],
        theme=THEME,
        css=CSS,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        enable_monitoring=False,
        quiet=not block,
    )
    return demo
