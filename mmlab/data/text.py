"""Text validation shared by every entry point.

Any Unicode is accepted. Control characters (NUL, the other C0 and C1 codes, DEL), lone
surrogates (they cannot be written as UTF-8) and every invisible format character (Unicode
category Cf: zero-width space and joiners, soft hyphen, bidirectional marks and overrides,
byte-order marks, tag characters) are removed; whitespace of any kind collapses to single spaces;
the text is NFC-normalised and cut to ``MAX_CHARS`` characters. Empty or whitespace-only text is
refused. Tokenizers cut further to their own limit; ``clean_text_with_notice`` says when either cut
happened, so the app and the demo can show it.

Two invisible characters keep a visible meaning and are kept where they have it: the zero-width
joiner (U+200D) between two pictographs, where it makes one emoji of several (family, profession,
rainbow flag: the word tokenizer reads such a sequence as one token), and one variation selector
directly after a visible character (U+FE0F asks for the emoji form of a heart). Everywhere else
they are removed: a joiner between letters (its only other use, shaping Arabic and Indic scripts,
changes how letters are drawn, not which letters they are; the MiniLM tokenizer drops it too), and
runs of selectors, which can carry hidden data. Tag characters (U+E0020..U+E007F) are removed even
inside flag sequences: they can spell hidden ASCII, and England's flag becomes a black flag.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Callable

from mmlab.errors import InputError

MAX_CHARS = 2000
MAX_INPUT_CHARS = 50 * MAX_CHARS  # longer input is sliced before cleaning (bounded work)
ZWJ = "\u200d"
# the invisible format characters (Unicode category Cf, as of Unicode 14) but the joiner
_FORMAT = ("\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200c\u200e\u200f"
           "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
           "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f")
# pictographs: the blocks of Unicode's Extended_Pictographic property (emoji, dingbats, symbols)
_PICTOGRAPH = ("[\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u21aa\u231a-\u23ff\u24c2\u25aa-\u27bf"
               "\u2934\u2935\u2b05-\u2b55\u3030\u303d\u3297\u3299\U0001f000-\U0001faff]")
_SELECTORS = "\ufe00-\ufe0f\U000e0100-\U000e01ef"  # variation selectors
_MODIFIER = f"[{_SELECTORS}\U0001f3fb-\U0001f3ff]"  # a variation selector or an emoji skin tone
EMOJI = f"{_PICTOGRAPH}{_MODIFIER}?(?:{ZWJ}{_PICTOGRAPH}{_MODIFIER}?)*"  # one emoji, ZWJ sequences included
# removed outright: C0/C1 controls that are not whitespace (whitespace collapses to a space below),
# lone surrogates, and the format characters (the joiner is judged by its neighbours below)
_REMOVE = re.compile(f"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ud800-\udfff{_FORMAT}]")
# a joiner that does not join two pictographs (a selector or skin tone may follow the first)
_LOOSE_JOINER = re.compile(f"(?<!{_PICTOGRAPH}){ZWJ}(?<!{_PICTOGRAPH}{_MODIFIER}{ZWJ})|{ZWJ}(?!{_PICTOGRAPH})")
# a variation selector after no visible character: at the start, after a space or after another selector
_LOOSE_SELECTOR = re.compile(f"(?:^|(?<=[\\s{_SELECTORS}]))[{_SELECTORS}]")


def _clean(text: object, max_chars: int) -> tuple[str, int, bool]:
    """(cleaned text cut to ``max_chars``, length of the cleaned text before the cut,
    whether the input was longer than ``MAX_INPUT_CHARS`` and sliced first)."""
    if text is None:
        text = ""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    sliced = len(text) > MAX_INPUT_CHARS
    text = _REMOVE.sub("", text[:MAX_INPUT_CHARS])
    text = _LOOSE_SELECTOR.sub("", _LOOSE_JOINER.sub("", text))
    text = " ".join(unicodedata.normalize("NFC", text).split())
    return text[:max_chars].rstrip().rstrip(ZWJ), len(text), sliced


def clean_text(text: object, *, allow_empty: bool = False) -> str:
    """Strip NUL and control characters, normalise Unicode and whitespace, cap the length.

    Raises ``InputError`` for non-strings and (unless ``allow_empty``) for empty or
    whitespace-only text. Text longer than ``MAX_CHARS`` is cut; tokenizers cut further
    to their own limit.
    """
    out, _, _ = _clean(text, MAX_CHARS)
    if not out and not allow_empty:
        raise InputError("text is empty: type a sentence")
    return out


def word_count(text: str) -> int:
    """Tokens the word tokenizer (``mmlab.data.tokenizer``) makes of ``text`` before its cut."""
    from mmlab.data.tokenizer import split_words

    return len(split_words(text))


def clean_text_with_notice(text: object, *, max_chars: int = MAX_CHARS, max_tokens: int | None = None,
                           count_tokens: Callable[[str], int] | None = None,
                           allow_empty: bool = False) -> tuple[str, str | None]:
    """``clean_text`` that also says, in one line for a person, what was cut (None when nothing was).

    ``max_chars`` (<= ``MAX_CHARS``) caps the characters; ``max_tokens`` is the encoder's limit
    (the word tokenizer's ``max_len``, or a pretrained tokenizer's ``max_length``), counted with
    ``count_tokens`` (default: the word tokenizer's rule, ``word_count``). The returned text is
    cut to ``max_chars`` only; the tokenizer makes the token cut itself.

    >>> clean_text_with_notice("a " * 40, max_tokens=32)[1]
    'the model reads only the first 32 tokens of the text (it has 40); the rest is ignored'
    """
    if not isinstance(max_chars, int) or not 1 <= max_chars <= MAX_CHARS:
        raise InputError(f"max_chars must be an integer in 1..{MAX_CHARS}, got {max_chars!r}")
    out, full, sliced = _clean(text, max_chars)
    if not out and not allow_empty:
        raise InputError("text is empty: type a sentence")
    notes = []
    if full > max_chars:
        notes.append(f"the text was cut to its first {max_chars:,} characters "
                     f"(it has {'more than ' if sliced else ''}{full:,})")
    if max_tokens is not None and out:
        n = (count_tokens or word_count)(out)
        if n > max_tokens:
            notes.append(f"the model reads only the first {max_tokens} tokens of the text "
                         f"(it has {n}); the rest is ignored")
    return out, "; ".join(notes) or None


def corrupt_words(text: str, share: float, *, seed: int = 0, unknown: str = "<unk>") -> str:
    """The sentence with a ``share`` of its words (at least one kept) replaced by ``unknown``, the same words
    for the same seed: the Modality lab's "words removed" control."""
    if not 0.0 <= float(share) <= 1.0:
        raise InputError(f"share must be in [0, 1], got {share!r}")
    import numpy as np

    words = clean_text(text).split()
    keep = max(1, round(len(words) * (1 - float(share))))
    removed = set(np.random.default_rng(seed).permutation(len(words))[: len(words) - keep].tolist())
    return " ".join(unknown if i in removed else w for i, w in enumerate(words))
