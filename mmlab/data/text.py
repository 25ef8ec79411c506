"""Text validation shared by every entry point."""
from __future__ import annotations

import re
import unicodedata

from mmlab.errors import InputError

MAX_CHARS = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: object, *, allow_empty: bool = False) -> str:
    """Strip NUL and control characters, normalise Unicode and whitespace, cap the length.

    Raises ``InputError`` for non-strings and (unless ``allow_empty``) for empty or
    whitespace-only text. Text longer than ``MAX_CHARS`` is cut; tokenizers cut further
    to their own limit.
    """
    if text is None:
        text = ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    text = unicodedata.normalize("NFC", text[: MAX_CHARS * 4])
    text = _CONTROL.sub(" ", text)
    text = " ".join(text.split())[:MAX_CHARS]
    if not text and not allow_empty:
        raise InputError("text is empty: type a sentence")
    return text
