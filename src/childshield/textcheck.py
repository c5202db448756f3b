"""Which characters text from outside may carry into reports, notices and XML: one policy, one place.

Refused: control characters (Unicode category Cc: C0, DEL, C1) and formatting characters (Cf), which
include the bidirectional controls (U+202A to U+202E embeddings and overrides, U+2066 to U+2069 isolates,
U+200E/U+200F marks, U+061C) that make text display in another order than it is stored: a screen name
or URL with U+202E reads differently to the analyst or the police officer than to the software (the
"Trojan Source" trick).  Also refused: line and paragraph separators (U+2028, U+2029), surrogates and
invisible tag characters (Cf too).  Allowed: the zero-width joiners U+200C and U+200D, which Persian,
Indic scripts and emoji sequences need and which reorder nothing, and, in text meant to have several
lines, TAB and LF.
"""

from __future__ import annotations

import unicodedata

from childshield.errors import Invalid

_REFUSED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_JOINERS = frozenset({"\u200c", "\u200d"})
_MULTILINE = frozenset({"\t", "\n"})


class UnsafeText(Invalid, ValueError):
    """Text with a character it may not carry; the message names the character.

    A ``ValueError`` too (the command line takes it as a bad parameter)."""


def unsafe_character(value: str, *, multiline: bool = False) -> str | None:
    """The first character of ``value`` that is refused, or None."""
    for char in value:
        if unicodedata.category(char) in _REFUSED and char not in _JOINERS:
            if multiline and char in _MULTILINE:
                continue
            return char
    return None


def check_text(value: str, *, what: str = "text", multiline: bool = False) -> str:
    """``value`` unchanged, or :class:`UnsafeText` saying which character (by code point and name) is not
    allowed in ``what``."""
    char = unsafe_character(value, multiline=multiline)
    if char is not None:
        name = unicodedata.name(char, "a control character")
        raise UnsafeText(
            f"{what} may not contain U+{ord(char):04X} ({name}): control and formatting characters, "
            "bidirectional ones included, are refused"
        )
    return value
