"""A corpus of bad and odd pictures, generated here, against the one validated loader."""
import io
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, ImageFile
from reliability_helpers import encode, gif_declaring, jpeg_declaring, noise, png_declaring

import mmlab
from mmlab.data import images
from mmlab.data.images import ALLOWED_FORMATS, MAX_PIXELS, load_image, to_array


def refused(source, *match: str) -> str:
    """Assert ``load_image(source)`` raises a one-line mmlab.InputError containing every ``match``."""
    with pytest.raises(mmlab.InputError) as e:
        load_image(source)
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    assert msg and msg.isprintable() and len(msg) < 300, msg  # one printable line
    for m in match:
        assert m.lower() in msg.lower(), msg
    return msg


# ---------------------------------------------------------------------------- bombs: refused before decoding

@pytest.fixture
def decodes(monkeypatch):
    """Calls of Pillow's decoding (``ImageFile.load``), recorded."""
    calls = []
    original = ImageFile.ImageFile.load

    def spy(self):
        calls.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


@pytest.mark.parametrize("make,w,h", [
    (png_declaring, 30000, 30000),  # past Pillow's own bomb limit
    (png_declaring, 10000, 10000),  # past Pillow's warning, under its error
    (png_declaring, 8000, 6000),  # under Pillow's limits, over MAX_PIXELS
    (jpeg_declaring, 30000, 30000),
    (gif_declaring, 20000, 20000),
])
def test_decompression_bombs_are_refused_before_decoding(make, w, h, decodes):
    assert w * h > MAX_PIXELS
    data = make(w, h)
    assert len(data) < 2000  # small on disk
    tracemalloc.start()
    t0 = time.perf_counter()
    refused(data, "too large")
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert decodes == []  # nothing was decoded
    assert seconds < 2.0 and peak < 5_000_000


def test_the_pixel_limit_applies_to_arrays_and_pil_images(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 30 * 30)
    refused(np.zeros((40, 40, 3), np.uint8), "too large")
    refused(Image.new("RGB", (40, 40)), "too large")
    refused(encode(Image.new("RGB", (40, 40)), "PNG"), "too large")
    assert load_image(np.zeros((30, 30, 3), np.uint8)).size == (30, 30)


# ---------------------------------------------------------------------------- truncated and non-image bytes

@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_truncated_files_are_refused(fmt):
    data = encode(noise(64, 64), fmt)
    refused(data[: len(data) // 2])
    refused(data[:20])  # only the start of the header


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.png", encode(Image.new("RGB", (8, 8)), "PNG"))
    return buf.getvalue()


@pytest.mark.parametrize("data,named", [
    (b"", "empty"),
    (b"hello, this is a text file\n", None),
    (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>', None),
    (zip_bytes(), "zip"),
    (b"\x7fELF\x02\x01\x01\x00" + bytes(56), "ELF"),
    (b"MZ\x90\x00" + bytes(60), "executable"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), None),  # a PNG signature and nothing sensible after it
    (bytes(range(256)) * 4, None),
])
def test_non_images_are_refused(data, named):
    msg = refused(data)
    if named:
        assert named.lower() in msg.lower()


@pytest.mark.parametrize("fmt", ["ICO", "EPS", "PDF", "PPM", "TGA", "PCX", "QOI", "SGI", "JPEG2000", "ICNS"])
def test_disallowed_formats_are_refused(fmt, tmp_path):
    data = encode(Image.new("RGB", (32, 32), (200, 10, 10)), fmt)
    msg = refused(data)
    if fmt not in ("TGA",):  # TGA has no magic bytes to name it by
        assert fmt in msg and "not allowed" in msg
    path = tmp_path / "innocent.png"  # the name does not matter, the bytes do
    path.write_bytes(data)
    refused(path)


def test_eps_never_reaches_ghostscript_nor_the_eps_parser(monkeypatch):
    calls = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append("gs"))
    original = EpsImagePlugin.EpsImageFile._open
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: (calls.append("open"), original(self)))
    refused(encode(Image.new("RGB", (32, 32)), "EPS"), "EPS", "not allowed")
    assert calls == []


def test_allowed_formats_load():
    for fmt in ALLOWED_FORMATS:
        kw = {"save_all": True, "append_images": [Image.new("RGB", (24, 16))]} if fmt == "MPO" else {}
        img = load_image(encode(Image.new("RGB", (24, 16), (10, 200, 30)), fmt, **kw))
        assert img.mode == "RGB" and img.size == (24, 16), fmt
        assert np.abs(np.asarray(img)[8, 12].astype(int) - (10, 200, 30)).max() < 12, fmt


# ---------------------------------------------------------------------------- odd modes

def pixel(img, x, y):
    return tuple(int(v) for v in img.getpixel((x, y)))


def close(a, b, tol=12):
    return max(abs(int(u) - int(v)) for u, v in zip(a, b)) <= tol


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_becomes_rgb(fmt):
    img = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    out = load_image(encode(img, fmt))
    assert out.mode == "RGB" and close(pixel(out, 8, 8), (255, 0, 0), 30)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_not_stretched(fmt):
    arr = np.zeros((8, 8), np.uint16)
    arr[:, 4:] = 65535
    arr[0, 0] = 32896  # 32896 / 257 = 128
    img = Image.fromarray(arr)
    assert img.mode == "I;16"
    out = load_image(encode(img, fmt))
    assert out.mode == "RGB"
    assert pixel(out, 6, 4) == (255, 255, 255) and pixel(out, 1, 4) == (0, 0, 0) and pixel(out, 0, 0) == (128,) * 3
    white = load_image(encode(Image.fromarray(np.full((8, 8), 65535, np.uint16)), fmt))
    assert pixel(white, 3, 3) == (255, 255, 255)  # a constant image keeps its brightness


def test_32_bit_and_float_grey():
    ints = Image.fromarray(np.full((8, 8), 200, np.int32))
    assert ints.mode == "I"
    assert pixel(load_image(encode(ints, "TIFF")), 2, 2) == (200,) * 3
    floats = Image.fromarray(np.full((8, 8), 0.5, np.float32))
    assert floats.mode == "F"
    assert close(pixel(load_image(encode(floats, "TIFF")), 2, 2), (128,) * 3, 1)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_is_composited_on_white(fmt):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red (transparent), 1 blue
    img.paste(1, (4, 0, 8, 8))
    out = load_image(encode(img, fmt, transparency=0))
    assert pixel(out, 1, 1) == (255, 255, 255)  # the transparent red is white
    assert pixel(out, 6, 1) == (0, 0, 255)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_alpha_is_composited_on_white(fmt):
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[:, :4] = (255, 0, 0, 0)  # fully transparent red
    arr[:, 4:] = (0, 0, 255, 255)  # opaque blue
    kw = {"lossless": True} if fmt == "WEBP" else {}
    out = load_image(encode(Image.fromarray(arr), fmt, **kw))
    assert pixel(out, 1, 1) == (255, 255, 255) and pixel(out, 6, 1) == (0, 0, 255)
    half = load_image(encode(Image.new("RGBA", (4, 4), (0, 0, 0, 128)), "PNG"))
    assert close(pixel(half, 1, 1), (127, 127, 127), 2)


def test_grey_alpha_and_colour_key_transparency():
    la = Image.new("LA", (8, 8), (0, 0))
    la.paste((0, 255), (4, 0, 8, 8))
    out = load_image(encode(la, "PNG"))
    assert pixel(out, 1, 1) == (255, 255, 255) and pixel(out, 6, 1) == (0, 0, 0)
    grey = Image.new("L", (8, 8), 10)
    grey.paste(90, (4, 0, 8, 8))
    out = load_image(encode(grey, "PNG", transparency=10))  # tRNS: grey 10 is transparent
    assert pixel(out, 1, 1) == (255, 255, 255) and pixel(out, 6, 1) == (90, 90, 90)
    rgb = Image.new("RGB", (8, 8), (1, 2, 3))
    out = load_image(encode(rgb, "PNG", transparency=(1, 2, 3)))
    assert pixel(out, 1, 1) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP", "TIFF"])
def test_animations_give_their_first_frame(fmt):
    frames = [Image.new("RGB", (12, 12), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    kw = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], **kw)
    with Image.open(io.BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == 3
    out = load_image(data)
    assert out.size == (12, 12) and close(pixel(out, 5, 5), (255, 0, 0), 4)


def test_a_pil_image_on_a_later_frame_gives_frame_zero():
    frames = [Image.new("RGB", (12, 12), c) for c in ((255, 0, 0), (0, 255, 0))]
    img = Image.open(io.BytesIO(encode(frames[0], "GIF", save_all=True, append_images=frames[1:])))
    img.seek(1)
    assert close(pixel(load_image(img), 5, 5), (255, 0, 0), 4)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    out = load_image(encode(img, "JPEG", exif=exif, quality=95))
    assert out.size == (20, 40)  # transposed
    assert close(pixel(out, 10, 5), (255, 0, 0), 20) and close(pixel(out, 10, 35), (0, 0, 255), 20)
    plain = load_image(encode(img, "JPEG", quality=95))
    assert plain.size == (40, 20)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_one_bit_pictures(fmt):
    img = Image.new("1", (8, 8), 0)
    img.paste(1, (4, 0, 8, 8))
    out = load_image(encode(img, fmt))
    assert out.mode == "RGB" and pixel(out, 1, 1) == (0, 0, 0) and pixel(out, 6, 1) == (255, 255, 255)


# ---------------------------------------------------------------------------- sizes

def test_tiny_and_elongated_pictures():
    assert load_image(encode(Image.new("RGB", (2, 2)), "PNG")).size == (2, 2)
    assert load_image(encode(Image.new("RGB", (2, 100)), "PNG")).size == (2, 100)  # exactly 50:1
    refused(encode(Image.new("RGB", (1, 1)), "PNG"), "too small")
    refused(encode(Image.new("RGB", (1, 500)), "PNG"), "too small", "1x500")
    refused(encode(Image.new("RGB", (4, 500)), "PNG"), "aspect ratio", "4x500")
    refused(encode(Image.new("RGB", (1000, 3)), "PNG"), "aspect ratio")
    refused(np.zeros((0, 5, 3), np.uint8), "too small")
    refused(np.zeros((3, 400), np.uint8), "aspect")


def test_to_array_shape():
    arr = to_array(load_image(encode(noise(30, 20), "PNG")), 16)
    assert arr.shape == (3, 16, 16) and arr.dtype == np.uint8


# ---------------------------------------------------------------------------- numpy arrays

def test_arrays_of_any_number_type():
    def rgb(arr):
        out = load_image(arr)
        assert out.mode == "RGB" and out.size == (arr.shape[1], arr.shape[0])
        return np.asarray(out)

    f = np.full((4, 6, 3), 0.5)
    assert (rgb(f) == 128).all()  # floats in [0, 1] scale by 255
    assert (rgb(np.full((4, 6, 3), 200.0, np.float32)) == 200).all()  # floats beyond 1 are 0..255
    nan = np.full((4, 6), np.nan)
    nan[0, 0] = 1.0
    assert rgb(nan)[1, 1].tolist() == [0, 0, 0] and rgb(nan)[0, 0].tolist() == [255, 255, 255]
    b = np.zeros((4, 6), bool)
    b[:, 3:] = True
    out = rgb(b)
    assert (out[:, :3] == 0).all() and (out[:, 3:] == 255).all()
    u16 = np.full((4, 6, 3), 65535, np.uint16)
    u16[0, 0] = 32896
    out = rgb(u16)
    assert (out[1:] == 255).all() and out[0, 0].tolist() == [128, 128, 128]  # scaled, not clipped
    assert (rgb(np.full((4, 6, 1), 7, np.int64)) == 7).all()
    rgba = np.zeros((4, 6, 4), np.float32)  # transparent black: white
    assert (rgb(rgba) == 255).all()
    assert (rgb(np.full((4, 6, 3), -5, np.int16)) == 0).all()
    view = np.zeros((6, 4, 3), np.uint8).transpose(1, 0, 2)  # a non-contiguous view
    assert rgb(view).shape == (4, 6, 3)


@pytest.mark.parametrize("arr,match", [
    (np.zeros((4, 4, 2), np.uint8), "(H, W)"),
    (np.zeros((3, 32, 32), np.uint8), "(H, W)"),  # channels first is not guessed
    (np.zeros((4, 4, 4, 3), np.uint8), "(H, W)"),
    (np.zeros(16, np.uint8), "(H, W)"),
    (np.array([[object()] * 4] * 4), "numbers"),
    (np.zeros((4, 4), complex), "numbers"),
    (np.array([["a"] * 4] * 4), "numbers"),
])
def test_bad_arrays_are_refused(arr, match):
    refused(arr, match)


# ---------------------------------------------------------------------------- sources

def test_paths_bytes_and_file_objects_agree(tmp_path):
    data = encode(noise(20, 10), "PNG")
    path = tmp_path / "pic.png"
    path.write_bytes(data)
    expected = np.asarray(load_image(data))
    with open(path, "rb") as f:
        outputs = [load_image(f)]
    with Image.open(path) as pil:
        outputs.append(load_image(pil))
        outputs.append(load_image(np.asarray(pil)))
    for s in [str(path), path, bytearray(data), memoryview(data), io.BytesIO(data)]:
        outputs.append(load_image(s))
    for out in outputs:
        assert out.mode == "RGB" and out.size == (20, 10)
        np.testing.assert_array_equal(np.asarray(out), expected)


def test_bad_sources_are_refused(tmp_path, monkeypatch):
    refused(tmp_path / "missing.png", "not found")
    refused(str(tmp_path), "not an image file")
    refused("no\nsuch\nfile.png", "not found")  # the message stays on one line
    assert "\x00" not in refused("bad\x00name.png", "not found", "bad?name.png")
    refused(tmp_path / ("x" * 5000 + ".png"))  # name too long for the file system
    refused(12345, "not an image")
    refused([1, 2, 3], "not an image")
    text = tmp_path / "t.txt"
    text.write_text("just words")
    with open(text) as f:
        refused(f, "binary")
    closed = io.BytesIO(b"x")
    closed.close()
    refused(closed, "cannot read")
    monkeypatch.setattr(images, "MAX_BYTES", 1000)
    big = encode(noise(64, 64), "PNG")
    path = tmp_path / "big.png"
    path.write_bytes(big)
    refused(big, "too large")
    refused(io.BytesIO(big), "too large")
    refused(path, "too large")
