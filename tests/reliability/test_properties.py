"""Property tests (hypothesis) of the image and text loaders: any input, only clean answers."""
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from reliability_helpers import encode

import mmlab
from mmlab.data.images import MAX_ASPECT, MIN_SIDE, load_image
from mmlab.data.text import MAX_CHARS, clean_text, clean_text_with_notice
from mmlab.data.tokenizer import WordTokenizer

SETTINGS = settings(max_examples=50, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
         b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"%!PS-Adobe-3.0 EPSF-3.0\n", b"\x00\x00\x01\x00"]


def _load_or_refuse(data):
    """Return the RGB picture, or None when refused with a one-line InputError; nothing else may happen."""
    try:
        img = load_image(data)
    except mmlab.InputError as e:
        assert str(e) and str(e).isprintable()  # one printable line
        return None
    assert isinstance(img, Image.Image) and img.mode == "RGB"
    return img


@SETTINGS
@given(st.sampled_from(MAGIC), st.binary(max_size=1024))
def test_random_bytes_give_an_image_or_input_error(magic, tail):
    _load_or_refuse(magic + tail)


def _valid_files():
    out = []
    for fmt, mode in [("PNG", "RGBA"), ("JPEG", "RGB"), ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "CMYK"),
                      ("WEBP", "RGB")]:
        arr = np.random.default_rng(len(out)).integers(0, 256, (24, 24, 3), dtype=np.uint8)
        out.append(encode(Image.fromarray(arr).convert(mode), fmt))
    return out


VALID = _valid_files()


@SETTINGS
@given(st.sampled_from(range(len(VALID))), st.data())
def test_corrupted_valid_files_give_an_image_or_input_error(which, data):
    raw = bytearray(VALID[which])
    for _ in range(data.draw(st.integers(1, 8))):  # flip a few bytes anywhere, header included
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    img = _load_or_refuse(bytes(raw[:cut]))
    if img is not None:
        assert img.size[0] * img.size[1] > 0


# (format, modes it can write): every mode of the property below must reach RGB
WRITABLE = {"PNG": ["1", "L", "P", "RGB", "RGBA", "LA", "I;16"], "JPEG": ["L", "RGB", "CMYK"],
            "GIF": ["L", "P"], "BMP": ["1", "L", "P", "RGB"], "TIFF": ["1", "L", "P", "RGB", "RGBA", "CMYK", "I;16", "F"],
            "WEBP": ["RGB", "RGBA"]}
CASES = [(f, m) for f, modes in WRITABLE.items() for m in modes]


def _random_picture(mode, w, h, seed):
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    if mode == "F":
        return Image.fromarray(rng.random((h, w), dtype=np.float32))
    rgba = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8))
    return rgba.convert(mode) if mode != "P" else rgba.convert("RGB").quantize(16)


@SETTINGS
@given(st.sampled_from(CASES), st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**31))
def test_valid_pictures_of_any_mode_become_rgb_of_the_same_size(case, w, h, seed):
    fmt, mode = case
    data = encode(_random_picture(mode, w, h, seed), fmt)
    if min(w, h) < MIN_SIDE or max(w, h) / min(w, h) > MAX_ASPECT:
        with pytest.raises(mmlab.InputError, match="too small|aspect"):
            load_image(data)
        return
    img = load_image(data)
    assert img.mode == "RGB" and img.size == (w, h)


@SETTINGS
@given(st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, bool]),
       st.sampled_from([(), (1,), (3,), (4,)]), st.integers(2, 30), st.integers(2, 30), st.integers(0, 2**31))
def test_arrays_of_any_dtype_become_rgb(dtype, channels, h, w, seed):
    rng = np.random.default_rng(seed)
    arr = (rng.random((h, w, *channels)) * rng.choice([1, 255, 65535, 1e9, -3])).astype(dtype)
    img = load_image(arr)
    assert img.mode == "RGB" and img.size == (w, h)


# ---------------------------------------------------------------------------- text

ANY_TEXT = st.one_of(st.text(), st.text(st.characters(codec=None)),  # the second includes lone surrogates
                     st.lists(st.sampled_from(["\x00", "\x85", "\u202e", "\ufeff", " ", "\t", "\u00a0", "\r\n", "e",
                                               "\u0301", "\u200d", "\U0001F600", "a b"])).map("".join))


def _control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cs") or ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"


@SETTINGS
@given(ANY_TEXT)
def test_clean_text_on_any_unicode(text):
    cleaned = clean_text(text, allow_empty=True)
    assert isinstance(cleaned, str) and len(cleaned) <= MAX_CHARS
    assert not any(_control(ch) for ch in cleaned)
    assert cleaned == cleaned.strip() and "  " not in cleaned
    cleaned.encode("utf-8")  # writable anywhere (no lone surrogates)
    assert clean_text(cleaned, allow_empty=True) == cleaned  # idempotent
    if cleaned:
        assert clean_text(text) == cleaned
        if len(text) <= MAX_CHARS:
            assert clean_text_with_notice(text) == (cleaned, None)
    else:
        with pytest.raises(mmlab.InputError, match="empty"):
            clean_text(text)


@SETTINGS
@given(st.text(min_size=1, max_size=20).filter(lambda t: clean_text(t, allow_empty=True) != ""), st.integers(0, 50))
def test_long_text_is_truncated_with_a_notice(word, extra):
    repeats = MAX_CHARS // (len(clean_text(word)) + 1) + 2 + extra  # joined, longer than MAX_CHARS
    text = " ".join([word] * repeats)
    out, notice = clean_text_with_notice(text)
    assert out == clean_text(text) and len(out) <= MAX_CHARS
    assert " ".join([clean_text(word)] * repeats).startswith(out)
    assert notice is not None and f"{MAX_CHARS:,}" in notice and "\n" not in notice


def test_notices_name_both_limits_and_the_tokenizer_cuts_further():
    text = " ".join(f"word{i}" for i in range(600))  # 600 words, 4,889 characters
    out, notice = clean_text_with_notice(text, max_tokens=32)
    assert len(out) == MAX_CHARS or len(out) == MAX_CHARS - 1
    assert "2,000 characters" in notice and "32 tokens" in notice
    tok = WordTokenizer.fit([text])
    assert tok.max_len == 32 and len(tok.tokens(out)) == 32 and tok.tokens(out)[-1] == "word31"
    short, none = clean_text_with_notice("a red circle", max_tokens=32)
    assert (short, none) == ("a red circle", None)
    _, sub = clean_text_with_notice("one two three four", max_tokens=2, count_tokens=lambda t: len(t.split()) + 2)
    assert "first 2 tokens" in sub and "(it has 6)" in sub
    _, chars = clean_text_with_notice("abcdef", max_chars=3)
    assert chars.startswith("the text was cut to its first 3 characters")
    with pytest.raises(mmlab.InputError):
        clean_text_with_notice("abc", max_chars=0)
    with pytest.raises(mmlab.InputError, match="empty"):
        clean_text_with_notice(" \x00\t\u202e ")
    assert clean_text_with_notice(" ", allow_empty=True) == ("", None)


def test_text_specifics():
    assert clean_text("  the\x00 red\tcircle\r\n\x1b[31m ") == "the red circle [31m"
    assert clean_text("cafe\u0301") == "caf\u00e9"  # NFC
    assert clean_text(b"caf\xc3\xa9 \xff") == "caf\u00e9 \ufffd"  # bytes decoded, bad bytes replaced
    assert clean_text("\u202eevil\u202c text") == "evil text"
    assert clean_text("\U0001F468\u200d\U0001F469 family") == "\U0001F468\u200d\U0001F469 family"  # ZWJ kept
    for bad in (None, "", "   ", "\x00\x00", "\u2028\u3000"):
        with pytest.raises(mmlab.InputError, match="empty"):
            clean_text(bad)
    for bad in (12, ["a"], {"text": "a"}):
        with pytest.raises(mmlab.InputError, match="string"):
            clean_text(bad)
    huge = "x " * 1_000_000  # 2 MB: bounded work, cut to MAX_CHARS
    assert len(clean_text(huge)) <= MAX_CHARS
