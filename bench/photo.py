"""The photo model: one answer (where the sentence's thing is) on a real photo, p50 / p95 ms, cold and warm.

``photo.locate`` end to end (validate and letterbox the photo, the sentence's candidate words through
MiniLM, EfficientNet-Lite0 at 704, 800 and 896 px, the maps, the peak and the box) on scikit-image's cat
(451 x 300) and rocket (640 x 427) photos. "first_call_ms" is the process's first answer (the backbones
load then); the app's warm-up (``mmlab.warm``) pays it before anyone asks. ``OMP_WAIT_POLICY=PASSIVE`` is
set as the app and the demo set it (on a shared 2-core machine, spinning OpenMP threads slow every call).

    python bench/photo.py [--quick] [--reps 10]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import time  # noqa: E402

import _common as C  # noqa: E402


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=None, help="timed calls per photo (default 10; 2 with --quick)")
    args = p.parse_args()
    device = C.setup(args)
    import mmlab
    from mmlab import photo
    from mmlab.data import photos

    reps = args.reps or (2 if args.quick else 10)
    t0 = time.perf_counter()
    model = mmlab.load(photo.NAME)
    load_s = time.perf_counter() - t0
    rows = []
    for name, text in (("chelsea", "the cat"), ("rocket", "the rocket on the launch pad")):
        image = photos.photo(name)
        first_s, _ = C.timed(lambda: photo.locate(model, image, text))
        times = [C.timed(lambda: photo.locate(model, image, text))[0] for _ in range(reps)]
        rows.append({"photo": name, "size": [image.shape[1], image.shape[0]], "text": text,
                     "first_call_ms": round(first_s * 1000, 1), **C.summary_ms(times)})
    C.emit("photo", args, device, {"what": "photo.locate on a real photo (3 input sizes), warm and first call",
                                  "load_seconds": C.rounded(load_s), "reps": reps,
                                  "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "photos": rows})


if __name__ == "__main__":
    main()
