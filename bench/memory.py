"""Peak memory (RSS) of a process with the whole zoo loaded.

This process stands in for the app's: it imports streamlit and mmlab (baseline), loads every
zoo checkpoint through ``mmlab.load`` (the app's cached loader), then predicts one
test pair with each (so that lazily built parts such as pretrained backbones exist). RSS after
each stage and the peak (``VmHWM`` from ``/proc/self/status``; ``ru_maxrss`` elsewhere) are
reported in MB. With an empty zoo, untrained shapes models of every registered strategy stand
in (reported as such).

    python bench/memory.py [--quick] [--no-streamlit]
"""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import _common as C


def rss() -> dict[str, float]:
    """{"rss_mb": now, "peak_rss_mb": peak} of this process."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "VmRSS":
                out["rss_mb"] = round(int(value.split()[0]) / 1024, 1)
            elif key == "VmHWM":
                out["peak_rss_mb"] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on macOS
        out["peak_rss_mb"] = round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
    return out


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--no-streamlit", dest="streamlit", action="store_false", help="do not import streamlit")
    args = p.parse_args()
    device = C.setup(args)
    stages = {"start": rss()}
    if args.streamlit:
        import streamlit  # noqa: F401
    import numpy as np

    import mmlab
    from mmlab import fusion

    stages["imports"] = rss()
    entries = C.zoo_entries()
    if args.quick:
        entries = entries[:2]
    t0 = time.perf_counter()
    models = []
    if entries:
        for e in entries:
            models.append((e["name"], mmlab.load(e["dir"]), e))
    else:
        for s in (["concat", "cross_attention"] if args.quick else fusion.trainable()):
            models.append((f"untrained-{s}", C.untrained(s, dim=32 if args.quick else 64)[0], None))
    load_s = time.perf_counter() - t0
    stages["loaded"] = rss()
    t0 = time.perf_counter()
    for _, model, entry in models:
        name, options = C.model_dataset(model, entry)
        data = C.test_split(name, 1, options)
        model.predict(np.ascontiguousarray(data.images[0].transpose(1, 2, 0)), data.texts[0])
    predict_s = time.perf_counter() - t0
    stages["predicted"] = rss()
    photo_s = None
    if not args.quick:  # the photo model the app warms too: its backbones at three input sizes and MiniLM
        from mmlab import photo
        from mmlab.data import photos

        try:
            t0 = time.perf_counter()
            photo.locate(mmlab.load(photo.NAME), photos.photo("chelsea"), "the cat")
            photo_s = C.rounded(time.perf_counter() - t0)
            stages["photo_model"] = rss()
        except mmlab.InputError:  # a zoo without it
            pass
    C.emit("memory", args, device, {
        "what": "RSS of one process with streamlit + mmlab imported, every trained zoo checkpoint loaded and run once, "
                "then the photo model run once",
        "zoo": C.zoo_root(), "streamlit_imported": args.streamlit, "trained": bool(entries),
        "models": [n for n, _, _ in models], "parameters": sum(m.num_parameters() for _, m, _ in models),
        "load_seconds": C.rounded(load_s), "predict_seconds": C.rounded(predict_s), "stages": stages,
        "photo_model_seconds": photo_s, "peak_rss_mb": stages[list(stages)[-1]].get("peak_rss_mb"),
        "zoo_rss_mb": round(stages["predicted"].get("rss_mb", 0) - stages["imports"].get("rss_mb", 0), 1),
    })


if __name__ == "__main__":
    main()
