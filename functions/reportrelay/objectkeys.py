"""Object keys and file names that S3, file systems and people all accept.

A report is stored at ``<team>/<key prefix><job id>/<file name>``. The pieces come from different
places, and each is checked where it comes from:

- the **key prefix** is written by a person (the job request's ``output.key_prefix``, or a schedule's
  template once rendered) and is *refused* at request time when it breaks a rule below, with a message
  that names the segment and the character;
- the **file name** is the provider's and is *cleaned*, never refused: invisible and control characters
  are dropped and a long name is cut to fit, keeping its extension;
- the **team** and the **job id** are made by reportrelay and only checked.

The rules for a prefix segment (the text between two ``/``):

- not empty (no ``//``, no leading ``/``) and not ``.`` or ``..``: S3 keeps such keys, but browsers,
  ``aws s3 sync`` and file tools resolve them as path steps, so the report lands somewhere else or
  nowhere;
- only letters, combining marks and digits of any script (``finance``, ``Über``, ``销售``, ``2025``),
  spaces inside a segment (not at its ends), and ``- _ . = ! * ' ( )`` (S3's "safe" punctuation, and
  ``=`` for ``year=2025/`` partitions). Everything else is refused: controls (CR, LF, tab), format
  characters (bidi overrides such as U+202E, zero-width characters, the BOM), other invisible
  characters (variation selectors, Hangul fillers), other spaces (no-break, ideographic), line and
  paragraph separators, surrogates, private-use and unassigned code points, the backslash, and the
  punctuation S3 asks to avoid (``{ } [ ] ^ % ` " < > ~ # |``) or to handle with care (``& $ @ ; : + , ?``);
- at most 255 bytes of UTF-8, the longest name file systems and S3-compatible stores accept.

The prefix is stored in Unicode NFC, so ``é`` typed as one character or as ``e`` and an accent names
the same folder; one trailing ``/`` is optional.

The byte budget: S3 keys are at most 1,024 bytes of UTF-8 (bytes, not characters: ``é`` is two).
That is shared as ``team/`` (64) + ``prefix/`` (624) + ``job id/`` (81) + file name (255), so any
accepted prefix fits with any team, job id and file name.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right

from reportrelay.errors import InternalError

MAX_KEY_BYTES = 1024
"""S3's limit on an object key, in bytes of UTF-8."""
MAX_SEGMENT_BYTES = 255
"""The longest name (one path segment) file systems and S3-compatible stores such as SeaweedFS accept."""
MAX_TEAM_BYTES = 63
"""A team name is ``[a-z0-9][a-z0-9_-]{0,62}`` (``config.TEAM_PATTERN``)."""
MAX_JOB_ID_BYTES = 80
"""A job id is its Step Functions execution name: at most 80 ASCII characters (a UUID has 36, a
scheduled run's ``<schedule, at most 63>-<YYYYMMDDTHHMMSSZ>`` at most 80)."""
MAX_FILENAME_BYTES = MAX_SEGMENT_BYTES
MAX_EXTENSION_BYTES = 16
"""A longer text after the last ``.`` is not taken for an extension (it is cut like the rest)."""
MAX_PREFIX_BYTES = MAX_KEY_BYTES - (MAX_TEAM_BYTES + 1) - (MAX_JOB_ID_BYTES + 1) - MAX_FILENAME_BYTES - 1
"""623: what is left of 1,024 bytes for the prefix, not counting the ``/`` after it."""

SAFE_PUNCTUATION = "-_.=!*'()"
FALLBACK_FILENAME = "report"

# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): characters that render as
# nothing. Most are format characters (Cf) anyway; these ranges also catch the letters and marks
# among them (U+3164 HANGUL FILLER, variation selectors U+FE00..U+FE0F, ...).
_INVISIBLE_RANGES = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_INVISIBLE_STARTS = [start for start, _ in _INVISIBLE_RANGES]

_DROPPED_FROM_FILENAMES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Controls (C0, DEL and C1), format (bidi, zero-width, BOM), surrogates, private use, unassigned,
line and paragraph separators."""
_CONTROL_NAMES = {"\t": "TAB", "\n": "LINE FEED", "\r": "CARRIAGE RETURN", "\x00": "NULL", "\x7f": "DELETE"}
_EDGES = re.compile(r"^[\s.]+|[\s.]+$")


def is_invisible(char: str) -> bool:
    """True for a Default_Ignorable_Code_Point: a character that shows as nothing."""
    code = ord(char)
    index = bisect_right(_INVISIBLE_STARTS, code) - 1
    return index >= 0 and code <= _INVISIBLE_RANGES[index][1]


def is_segment_char(char: str) -> bool:
    """May ``char`` appear in a key prefix segment? (A space may, but not at either end.)"""
    if char == " " or char in SAFE_PUNCTUATION:
        return True
    return unicodedata.category(char)[0] in "LMN" and not is_invisible(char)


def describe_char(char: str) -> str:
    """``U+202E RIGHT-TO-LEFT OVERRIDE``: the code point and its name, never the character itself."""
    code = f"U+{ord(char):04X}"
    name = _CONTROL_NAMES.get(char) or unicodedata.name(char, "")
    if not name:
        kind = {"Cc": "a control character", "Cs": "a surrogate", "Co": "a private-use character"}
        name = f"({kind.get(unicodedata.category(char), 'an unassigned code point')})"
    return f"{code} {name}"


def check_key_prefix(value: str) -> str:
    """The prefix in NFC if every rule in the module's description holds; ValueError saying which fails."""
    prefix = unicodedata.normalize("NFC", value)
    if not prefix:
        return prefix
    if prefix.startswith("/"):
        raise ValueError(
            "must be a relative S3 key prefix, without a leading '/' (the key already starts with the team's "
            "folder); write e.g. 'finance/2025/'"
        )
    body = prefix.removesuffix("/")
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > MAX_PREFIX_BYTES:
        raise ValueError(
            f"is {size:,} bytes of UTF-8 ({len(body):,} characters); a key prefix may have at most "
            f"{MAX_PREFIX_BYTES} bytes: S3 keys have at most {MAX_KEY_BYTES:,} and the team, job id and "
            f"file name may take the other {MAX_KEY_BYTES - MAX_PREFIX_BYTES} (characters outside ASCII "
            f"take 2 to 4 bytes each); shorten it"
        )
    for number, segment in enumerate(body.split("/"), start=1):
        _check_segment(number, segment, prefix)
    return prefix


def _check_segment(number: int, segment: str, prefix: str) -> None:
    where = f"segment {number} ('{_shown(segment)}')"
    if not segment:
        raise ValueError(
            f"segment {number} of '{_shown(prefix)}' is empty (two '/' in a row); "
            f"write one '/' between folders"
        )
    if segment in (".", ".."):
        raise ValueError(
            f"must be a relative S3 key prefix without '.' or '..' segments: {where} would be read as a "
            f"path step by browsers and file tools; name a folder instead"
        )
    for char in segment:
        if not is_segment_char(char):
            hint = "; use '/' between folders" if char == "\\" else ""
            raise ValueError(
                f"{where} contains {describe_char(char)}, which is not allowed in a key{hint}; a segment may "
                f"hold letters and digits of any script, spaces inside it, and {' '.join(SAFE_PUNCTUATION)}"
            )
    if segment != segment.strip(" "):
        raise ValueError(f"{where} starts or ends with a space, which is easy to miss; remove it")
    size = len(segment.encode())
    if size > MAX_SEGMENT_BYTES:
        raise ValueError(
            f"{where} is {size:,} bytes of UTF-8; a segment may have at most {MAX_SEGMENT_BYTES} "
            f"(the longest name file systems and S3-compatible stores accept)"
        )


def _shown(text: str, limit: int = 40) -> str:
    """``text`` safe to print: disallowed characters as ``\\u202e`` escapes, long text shortened."""
    shown = "".join(
        char if char == "/" or is_segment_char(char) else char.encode("unicode_escape").decode("ascii")
        for char in text[:limit]
    )
    return shown + "..." if len(text) > limit else shown


def clean_filename(name: str, fallback: str = FALLBACK_FILENAME) -> str:
    """The provider's file name made safe for a key and a Content-Disposition header.

    Drops controls (C0, DEL, C1), format characters (bidi overrides, zero-width, BOM), other invisible
    characters, line and paragraph separators, surrogates, private-use and unassigned code points;
    keeps only the last path segment (``/`` or ``\\``); trims spaces and dots at the ends; cuts the
    name to 255 bytes of UTF-8 on a character boundary, keeping the extension. Never empty, ``.`` or
    ``..``: ``fallback`` (cleaned too) stands in. Cleaning a cleaned name changes nothing.
    """
    kept = "".join(
        char
        for char in name
        if unicodedata.category(char) not in _DROPPED_FROM_FILENAMES and not is_invisible(char)
    )
    base = unicodedata.normalize("NFC", kept).replace("\\", "/").rsplit("/", 1)[-1]
    base = _EDGES.sub("", base)
    if len(base.encode()) > MAX_FILENAME_BYTES:
        stem, dot, extension = base.rpartition(".")
        if not (dot and stem and len(extension.encode()) <= MAX_EXTENSION_BYTES):
            stem, extension = base, ""
        suffix = f".{extension}" if extension else ""
        stem = cut_utf8(stem, MAX_FILENAME_BYTES - len(suffix.encode()))
        base = _EDGES.sub("", stem) + suffix
    if base:
        return base
    return FALLBACK_FILENAME if fallback == FALLBACK_FILENAME else clean_filename(fallback)


def cut_utf8(text: str, max_bytes: int) -> str:
    """The longest start of ``text`` that is at most ``max_bytes`` of UTF-8 (whole characters only)."""
    encoded = text.encode()
    return text if len(encoded) <= max_bytes else encoded[:max_bytes].decode("utf-8", "ignore")


def object_key(team: str | None, prefix: str, job_id: str, filename: str) -> str:
    """``<team>/<prefix><job id>/<file name>``, at most 1,024 bytes; the file name is cleaned here.

    ``prefix`` must have passed ``check_key_prefix`` and ``team`` the request model's pattern (the
    request model sees to both); the job id is reportrelay's own. A key that still breaks a rule is a
    bug (InternalError), not the user's mistake.
    """
    if (
        len(job_id.encode()) > MAX_JOB_ID_BYTES
        or job_id in ("", ".", "..")
        or not all(map(is_segment_char, job_id))
    ):
        raise InternalError(f"job id '{_shown(job_id)}' cannot be part of an object key")
    folder = f"{prefix.removesuffix('/')}/" if prefix else ""
    key = f"{team}/{folder}" if team else folder
    key += f"{job_id}/{clean_filename(filename)}"
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise InternalError(f"object key of {size:,} bytes is longer than S3's limit of {MAX_KEY_BYTES:,}")
    return key
