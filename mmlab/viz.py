"""The pictures and figures the app shows, built by plain functions (no Streamlit).

Pictures are (H, W, 3) uint8 numpy arrays (``overlay``, ``mask_overlay``, ``to_rgb``);
figures are plotly ``go.Figure`` objects (``grouped_probs_figure``, ``curves_figure``,
``heatmap_figure``, ``latent_figure`` ...). ``png_bytes`` and ``figure_html`` turn them into
downloads (the HTML carries plotly.js inside, so it opens offline). Class probabilities are also
given as table columns (``probs_table``, ``probs_by_run_table``), which a browser draws at once.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from mmlab.errors import InputError

# jet: dark blue -> blue -> cyan -> yellow -> red -> dark red. Its hot end stands out on the
# saturated colours of the shapes scenes better than inferno's orange does (and matches the demo).
_STOPS = np.array([0.0, 0.125, 0.375, 0.625, 0.875, 1.0])
_RAMP = np.array([[0, 0, 128], [0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0], [128, 0, 0]],
                 dtype=np.float64)
MASK_RGB = (0, 190, 255)
TRUTH_RGB = (60, 255, 60)
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939"]


# ---- pictures ------------------------------------------------------------------------------
def to_rgb(image) -> np.ndarray:
    """Any picture as (H, W, 3) uint8: a PIL image, (3, H, W) or (H, W, 3) uint8, (H, W) grey, floats in [0, 1]."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)  # (3, H, W) -> (H, W, 3)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise InputError(f"cannot show an array of shape {a.shape} as a picture")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    a = a[..., :3]
    if a.dtype != np.uint8:
        f = np.nan_to_num(a.astype(np.float64))
        a = np.clip(f * 255.0 if f.max() <= 1.0 else f, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def resize(rgb: np.ndarray, size: int | tuple[int, int], *, smooth: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) or (H', W', 3); nearest by default so small pixels stay crisp."""
    hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    img = Image.fromarray(to_rgb(rgb)).resize((hw[1], hw[0]), Image.BILINEAR if smooth else Image.NEAREST)
    return np.asarray(img, dtype=np.uint8)


def display_size(hw: tuple[int, int], side: int) -> tuple[int, int]:
    """The (H', W') a picture of (H, W) is shown at: its longer side ``side``, its shape kept."""
    H, W = hw
    scale = side / max(H, W)
    return max(1, round(H * scale)), max(1, round(W * scale))


def shown(image, side: int) -> np.ndarray:
    """A picture at its display size (longer side ``side``, never squashed): small pictures enlarged with
    nearest pixels (crisp on a projector), large ones reduced smoothly."""
    rgb = to_rgb(image)
    hw = display_size(rgb.shape[:2], side)
    return resize(rgb, hw, smooth=max(hw) < max(rgb.shape[:2]))


def on_picture(map_: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """A map over a model's square (letterboxed) input -> (H, W) float32 over the picture itself: the padding
    is cut away and the rest stretched back to the picture's own shape (``mmlab.data.letterbox``)."""
    from mmlab.data.letterbox import fit

    H, W = hw
    return fit(W, H, max(256, *np.shape(map_))).to_original(np.asarray(map_, np.float32))


def resize_map(map_: np.ndarray, size: int | tuple[int, int], *, smooth: bool = True) -> np.ndarray:
    """(h, w) float map -> (H, W) float32, bilinear (smooth) or nearest."""
    m = np.nan_to_num(np.asarray(map_, dtype=np.float32))
    if m.ndim != 2:
        raise InputError(f"a map must be 2-D (h, w), got shape {m.shape}")
    hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if m.shape == hw:
        return m.copy()
    img = Image.fromarray(m, mode="F").resize((hw[1], hw[0]), Image.BILINEAR if smooth else Image.NEAREST)
    return np.asarray(img, dtype=np.float32)


def normalize(map_: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1]; a constant map becomes zeros. Non-finite values become 0.
    The one implementation: explain and the demo's overlays use it too."""
    m = np.nan_to_num(np.asarray(map_, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(m.min()), float(m.max())
    return ((m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)).astype(np.float32)


def colorize(map_: np.ndarray) -> np.ndarray:
    """(h, w) values in [0, 1] -> (h, w, 3) uint8 on the jet ramp (0 dark blue, 1 dark red)."""
    m = np.clip(np.nan_to_num(np.asarray(map_, dtype=np.float64)), 0.0, 1.0)
    channels = [np.interp(m, _STOPS, _RAMP[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def overlay(image, heat: np.ndarray, *, alpha: float = 0.6, size: int = 256, normalise: bool = True) -> np.ndarray:
    """Blend a heat map (h, w) over a picture shown with its longer side ``size``: (H', W', 3) uint8.

    The map covers the model's square (letterboxed) input; it is drawn back on the picture's own shape
    (``on_picture``). The picture is enlarged with nearest pixels and half desaturated (so the map's colours
    read on any scene), the map bilinearly (patch grid -> pixels); each pixel mixes in the map's colour in
    proportion to ``alpha * heat``, so what the map leaves out stays visible as the picture itself.
    """
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    base = shown(image, size).astype(np.float64)
    base = 0.5 * base + 0.5 * base.mean(-1, keepdims=True)  # half desaturated
    h = on_picture(normalize(heat) if normalise else np.clip(heat, 0, 1), base.shape[:2])
    h = np.clip(h, 0, 1)
    w = (alpha * h)[..., None]  # (H', W', 1)
    out = base * (1 - w) + colorize(h).astype(np.float64) * w
    return out.round().clip(0, 255).astype(np.uint8)


def mark(picture: np.ndarray, original_hw: tuple[int, int], *, point: tuple[float, float] | None = None,
         box: Sequence[float] | None = None, truth: Sequence[float] | None = None) -> np.ndarray:
    """Draw, on a shown picture (H', W', 3) of an original of ``original_hw`` (H, W), a point (a ring) and
    a box (white on black, readable on any photo), and a truth box (green), all given in the original's
    pixels: (H', W', 3) uint8."""
    from PIL import ImageDraw

    out = Image.fromarray(np.ascontiguousarray(to_rgb(picture)))
    H, W = original_hw
    sy, sx = out.height / max(H, 1), out.width / max(W, 1)
    draw = ImageDraw.Draw(out)
    width = max(2, round(out.width / 160))
    if truth is not None:
        x0, y0, x1, y1 = truth
        draw.rectangle([x0 * sx, y0 * sy, x1 * sx - 1, y1 * sy - 1], outline=(0, 200, 80), width=width)
    if box is not None:
        x0, y0, x1, y1 = box
        draw.rectangle([x0 * sx, y0 * sy, x1 * sx - 1, y1 * sy - 1], outline=(0, 0, 0), width=width + 2)
        draw.rectangle([x0 * sx, y0 * sy, x1 * sx - 1, y1 * sy - 1], outline=(255, 255, 255), width=width)
    if point is not None:
        x, y = (point[0] + 0.5) * sx, (point[1] + 0.5) * sy
        r = max(6, out.width // 40)
        draw.ellipse([x - r, y - r, x + r, y + r], outline=(0, 0, 0), width=width + 2)
        draw.ellipse([x - r, y - r, x + r, y + r], outline=(255, 255, 255), width=width)
    return np.asarray(out)


def outline(mask: np.ndarray) -> np.ndarray:
    """Boolean edge pixels of a binary mask (H, W): inside pixels with a 4-neighbour outside."""
    m = np.asarray(mask).astype(bool)
    p = np.pad(m, 1, mode="constant")
    inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def mask_overlay(image, mask: np.ndarray | None, *, truth: np.ndarray | None = None, threshold: float = 0.5,
                 size: int = 256, alpha: float = 0.55) -> np.ndarray:
    """The predicted mask (probabilities over the model's square input) tinted over the picture shown with its
    longer side ``size`` (its shape kept), with its outline where it is >= ``threshold``, and the
    ground-truth mask's outline in green: (H', W', 3) uint8."""
    out = shown(image, size).astype(np.float64)
    hw = out.shape[:2]
    if mask is not None:
        p = np.clip(on_picture(np.clip(np.asarray(mask, dtype=np.float32), 0, 1), hw), 0, 1)
        w = (alpha * p)[..., None]
        out = out * (1 - w) + np.array(MASK_RGB, dtype=np.float64) * w
        out[outline(p >= threshold)] = MASK_RGB
    if truth is not None:
        t = on_picture(np.asarray(truth, dtype=np.float32), hw) > 0.5
        edge = outline(t)
        edge |= np.roll(edge, 1, axis=0) & t  # two pixels wide inside the object
        out[edge] = TRUTH_RGB
    return out.round().clip(0, 255).astype(np.uint8)


def md_escape(text: str) -> str:
    """User text made safe to put inside Markdown: every character Markdown (or the HTML it allows) could
    read as syntax is escaped, so a shared link's ``?text=`` shows as the words it holds, never as a link,
    an image or a heading."""
    import re

    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~:$&=\"'])", r"\\\1", str(text)).replace("\n", " ")


def noisy_image(image, std: float, *, seed: int = 0) -> np.ndarray:
    """The picture with Gaussian pixel noise of ``std`` (in [0, 1] units) added: (H, W, 3) uint8."""
    if std < 0:
        raise InputError(f"noise must be >= 0, got {std}")
    rgb = to_rgb(image).astype(np.float64) / 255.0
    rng = np.random.default_rng(seed)
    return (np.clip(rgb + rng.normal(0.0, std, rgb.shape), 0, 1) * 255).round().astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) picture encoded as PNG."""
    buf = io.BytesIO()
    Image.fromarray(to_rgb(rgb)).save(buf, format="PNG")
    return buf.getvalue()


# ---- figures --------------------------------------------------------------------------------
def _go():
    import plotly.graph_objects as go

    return go


def figure_html(fig) -> str:
    """A self-contained HTML page of a plotly figure (plotly.js inside: opens offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


def probs_table(probs: Mapping[str, float], *, top: int = 10) -> dict[str, list]:
    """One answer's class probabilities as table columns {"class", "probability"}: the ``top`` classes, largest
    first, to be drawn as bars in the cells (a browser draws a table at once; a first chart on a page waits
    seconds on a 2-core CPU for the chart library, docs/BENCHMARKS.md)."""
    items = sorted(((str(c), float(v)) for c, v in probs.items()), key=lambda kv: kv[1], reverse=True)[:top]
    return {"class": [c for c, _ in items], "probability": [v for _, v in items]}


def probs_by_run_table(runs: Mapping[str, Mapping[str, float]], *, top: int = 8,
                       name: str = "checkpoint") -> dict[str, list]:
    """Several answers' class probabilities as table columns: {``name``: the run names, then one column per
    class}, a row per run; the ``top`` classes by their largest probability in any run, in that order."""
    runs = {str(k): {str(c): float(v) for c, v in p.items()} for k, p in runs.items()}
    best: dict[str, float] = {}
    for p in runs.values():
        for c, v in p.items():
            best[c] = max(best.get(c, 0.0), v)
    classes = [c for c in sorted(best, key=best.get, reverse=True) if c != name][:top]
    return {name: list(runs), **{c: [p.get(c, 0.0) for p in runs.values()] for c in classes}}


def grouped_probs_figure(runs: Mapping[str, Mapping[str, float]], *, top: int = 8, title: str = "") -> object:
    """Grouped bars: the same classes' probabilities under several conditions (e.g. both / image only)."""
    go = _go()
    first = next(iter(runs.values()), {})
    totals: dict[str, float] = {}
    for p in runs.values():
        for k, v in p.items():
            totals[k] = max(totals.get(k, 0.0), float(v))
    classes = sorted(totals, key=totals.get, reverse=True)[:top] or list(first)[:top]
    fig = go.Figure()
    for i, (name, p) in enumerate(runs.items()):
        fig.add_bar(name=name, x=classes, y=[float(p.get(c, 0.0)) for c in classes],
                    marker_color=PALETTE[i % len(PALETTE)], hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>")
    fig.update_layout(barmode="group", title=title or None, yaxis=dict(range=[0, 1], title="probability"),
                      height=320, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def curves_figure(x: Sequence[float], series: Mapping[str, Sequence[float]], *, x_title: str = "",
                  y_title: str = "", title: str = "", markers: bool = True) -> object:
    """Lines of several named series over the same x."""
    go = _go()
    fig = go.Figure()
    for i, (name, ys) in enumerate(series.items()):
        fig.add_trace(go.Scatter(x=list(x), y=[None if v is None else float(v) for v in ys], name=name,
                                 mode="lines+markers" if markers else "lines",
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
    fig.update_layout(title=title or None, xaxis_title=x_title, yaxis_title=y_title, height=320,
                      margin=dict(l=10, r=10, t=40 if title else 10, b=10), legend=dict(orientation="h", y=-0.3))
    xs = list(x)
    if xs and len(xs) <= 20 and all(float(v).is_integer() for v in xs):
        fig.update_xaxes(dtick=1)  # whole epochs, not 1.5
    return fig


def heatmap_figure(map_: np.ndarray, *, title: str = "", mark: tuple[int, int] | None = None,
                   zmax: float | None = None) -> object:
    """An (h, w) map as an interactive heatmap (row 0 on top); ``mark`` (row, col) draws a box."""
    go = _go()
    m = np.asarray(map_, dtype=np.float64)
    fig = go.Figure(go.Heatmap(z=m, colorscale="Jet", zmin=0, zmax=zmax if zmax is not None else float(m.max()),
                               hovertemplate="row %{y}, col %{x}: %{z:.3f}<extra></extra>"))
    if mark is not None:
        r, c = mark
        fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5, line=dict(color="#00e5ff", width=3))
    fig.update_layout(title=title or None, yaxis=dict(autorange="reversed", scaleanchor="x"), height=340,
                      margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


def token_bars_figure(tokens: Sequence[str], weights: np.ndarray, *, title: str = "") -> object:
    """Bars of how much each text token attends to one patch (one bar per token, in order)."""
    go = _go()
    w = np.asarray(weights, dtype=np.float64)
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
    fig = go.Figure(go.Bar(x=labels, y=w, marker_color="#ff7f0e",
                           hovertemplate="%{x}: %{y:.4f}<extra></extra>"))
    fig.update_layout(title=title or None, yaxis_title="attention to the patch", height=300,
                      margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


def latent_figure(xy: np.ndarray, *, colour: Sequence[str], symbol: Sequence[str] | None = None,
                  hover: Sequence[str] | None = None, custom: Sequence[int] | None = None,
                  pairs: np.ndarray | None = None, highlight: np.ndarray | None = None,
                  highlight_label: str = "your pair", highlight_outside: bool = False, webgl_above: int = 3000,
                  title: str = "") -> object:
    """A 2-D map of embeddings.

    xy (M, 2); ``colour`` (M,) the group of each point (one legend entry per group); ``symbol``
    (M,) an optional second grouping drawn as marker shapes; ``hover`` (M,) text; ``custom``
    (M,) an integer per point returned on selection; ``pairs`` (K, 2) row indices of points to
    join by a line (image <-> text of one pair: the modality gap); ``highlight`` (J, 2) extra
    points drawn as large stars, open (and named so) when ``highlight_outside``: a pair unlike the
    model's training data, whose place in the map says little. Above ``webgl_above`` points the
    scatter is drawn with WebGL.
    """
    go = _go()
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise InputError(f"xy must be (M, 2), got {xy.shape}")
    M = len(xy)
    colour = np.asarray(colour, dtype=object)
    symbols = np.asarray(symbol if symbol is not None else ["circle"] * M, dtype=object)
    hover = np.asarray(hover if hover is not None else [""] * M, dtype=object)
    custom = np.asarray(custom if custom is not None else np.arange(M))
    Scatter = go.Scattergl if M > webgl_above else go.Scatter
    fig = go.Figure()
    if pairs is not None and len(pairs):
        p = np.asarray(pairs, dtype=int)
        xs = np.stack([xy[p[:, 0], 0], xy[p[:, 1], 0], np.full(len(p), np.nan)], 1).ravel()
        ys = np.stack([xy[p[:, 0], 1], xy[p[:, 1], 1], np.full(len(p), np.nan)], 1).ravel()
        fig.add_trace(Scatter(x=xs, y=ys, mode="lines", line=dict(color="rgba(120,120,120,0.35)", width=1),
                              name="pair (image–text)", hoverinfo="skip"))
    marker_of = {"image": "circle", "text": "diamond", "fused": "square"}
    for i, group in enumerate(dict.fromkeys(colour.tolist())):
        sel = colour == group
        fig.add_trace(Scatter(
            x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=str(group),
            marker=dict(size=7, color=PALETTE[i % len(PALETTE)], opacity=0.8,
                        symbol=[marker_of.get(s, s) for s in symbols[sel]]),
            text=hover[sel], customdata=custom[sel], hovertemplate="%{text}<extra></extra>"))
    if highlight is not None and len(highlight):
        h = np.asarray(highlight, dtype=np.float64)
        name = highlight_label + (" (outside its domain)" if highlight_outside else "")
        fig.add_trace(go.Scatter(x=h[:, 0], y=h[:, 1], mode="markers+lines", name=name,
                                 marker=dict(size=18, symbol="star-open" if highlight_outside else "star",
                                             color="#d62728" if highlight_outside else "#111111",
                                             line=dict(color="#d62728" if highlight_outside else "white", width=2)),
                                 line=dict(color="#111111", dash="dot")))
    fig.update_layout(title=title or None, height=560, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      xaxis=dict(showticklabels=False, title=""), yaxis=dict(showticklabels=False, title=""),
                      legend=dict(itemsizing="constant"), dragmode="pan")
    return fig


def bar_figure(names: Sequence[str], values: Sequence[float], *, title: str = "", y_title: str = "",
               y_range: tuple[float, float] | None = None) -> object:
    """Plain vertical bars, one per name."""
    go = _go()
    fig = go.Figure(go.Bar(x=list(names), y=[float(v) for v in values], marker_color=PALETTE[: len(names)] or None,
                           text=[f"{float(v):.3f}" for v in values], textposition="auto"))
    fig.update_layout(title=title or None, yaxis=dict(title=y_title, range=list(y_range) if y_range else None),
                      height=320, margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


def montage(pictures: Sequence[np.ndarray], *, columns: int, gap: int = 4, background: int = 255) -> np.ndarray:
    """Tile equally sized (H, W, 3) pictures row by row, ``columns`` per row, with ``gap`` pixels between."""
    if not pictures:
        raise InputError("montage needs at least one picture")
    pics = [to_rgb(p) for p in pictures]
    H, W = pics[0].shape[:2]
    if any(p.shape[:2] != (H, W) for p in pics):
        raise InputError("montage pictures must all have the same size")
    rows = -(-len(pics) // columns)
    out = np.full((rows * H + (rows - 1) * gap, columns * W + (columns - 1) * gap, 3), background, np.uint8)
    for i, p in enumerate(pics):
        r, c = divmod(i, columns)
        out[r * (H + gap): r * (H + gap) + H, c * (W + gap): c * (W + gap) + W] = p
    return out


def grouped_bars_figure(x: Sequence[str], series: Mapping[str, Sequence[float]], *, y_title: str = "",
                        title: str = "", y_range: tuple[float, float] | None = None) -> object:
    """Grouped bars: one group per ``x`` category, one bar per named series, values printed on the bars."""
    go = _go()
    fig = go.Figure([go.Bar(name=name, x=list(x), y=[float(v) for v in values],
                            text=[f"{float(v):.3f}" for v in values], textposition="auto",
                            marker_color=PALETTE[i % len(PALETTE)])
                     for i, (name, values) in enumerate(series.items())])
    fig.update_layout(barmode="group", title=title or None, height=340,
                      yaxis=dict(title=y_title, range=list(y_range) if y_range else None),
                      margin=dict(l=10, r=10, t=40 if title else 10, b=10), legend=dict(orientation="h", y=-0.2))
    return fig
