"""What counts as one emoji for a reaction: one grapheme cluster made only of emoji code
points (a base emoji with its variation selector and skin tone, joined by ZWJ to others,
a flag, a keycap or a subdivision flag), or a short `:shortcode:` for custom emoji."""

import re

SHORTCODE = re.compile(r"^:[a-z0-9_+\-]{1,32}:$")
MAX_CODE_POINTS = 16

ZWJ = 0x200D
VS16 = 0xFE0F
KEYCAP = 0x20E3
SKIN_TONES = range(0x1F3FB, 0x1F400)
REGIONAL = range(0x1F1E6, 0x1F200)
TAGS = range(0xE0020, 0xE007F)
CANCEL_TAG = 0xE007F
BLACK_FLAG = 0x1F3F4
_BASE_RANGES = (
    range(0x1F000, 0x1FB00),
    range(0x2600, 0x27C0),
    range(0x2300, 0x2400),
    range(0x2B00, 0x2C00),
    range(0x2190, 0x2200),
    range(0x25A0, 0x2600),
    range(0x2900, 0x2980),
)
_BASE_SINGLES = frozenset(
    {0x00A9, 0x00AE, 0x203C, 0x2049, 0x2122, 0x2139, 0x24C2, 0x3030, 0x303D, 0x3297, 0x3299}
)


def _is_base(code: int) -> bool:
    return (
        (code in _BASE_SINGLES or any(code in r for r in _BASE_RANGES))
        and code not in SKIN_TONES
        and code not in REGIONAL
    )


def _element(codes: list[int], i: int) -> int:
    """The index after one emoji element starting at `i` (a base, then an optional VS16
    and an optional skin tone), or -1."""
    if i >= len(codes) or not _is_base(codes[i]):
        return -1
    i += 1
    if i < len(codes) and codes[i] == VS16:
        i += 1
    if i < len(codes) and codes[i] in SKIN_TONES:
        i += 1
    return i


def _single_emoji(codes: list[int]) -> bool:
    if len(codes) == 2 and all(c in REGIONAL for c in codes):  # a flag
        return True
    if codes and chr(codes[0]) in "0123456789#*":  # a keycap
        return codes[1:] in ([VS16, KEYCAP], [KEYCAP])
    if codes and codes[0] == BLACK_FLAG and len(codes) > 2 and codes[-1] == CANCEL_TAG:
        return all(c in TAGS for c in codes[1:-1])  # a subdivision flag
    i = _element(codes, 0)
    while 0 < i < len(codes):
        if codes[i] != ZWJ:
            return False
        i = _element(codes, i + 1)
    return i == len(codes)


def clean_emoji(value: str) -> str | None:
    """The emoji as stored, or None when it is not exactly one emoji or a shortcode."""
    value = value.strip()
    if SHORTCODE.match(value):
        return value
    codes = [ord(c) for c in value]
    if not codes or len(codes) > MAX_CODE_POINTS or not _single_emoji(codes):
        return None
    return value
