"""What the API accepts as an attachment: its file name, content type and content (pure).

A file name comes from the caller's machine and ends up in a ``Content-Disposition`` header
and on the recipient's disk, so it is reduced to a safe base name; the deny-lists refuse what
mail filters quarantine (executables, scripts), by content type and by every extension in the
name (``invoice.pdf.exe``, ``setup.exe.``).
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Collection

MAX_FILENAME_LENGTH = 255
# RFC 2045's type/subtype tokens.
_CONTENT_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$"
)
# What a Content-ID may hold here: it is written as <id> and quoted as cid:id in the HTML.
CONTENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
# Characters a file name never needs and several systems choke on.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"*:<>?|\\/]')


class AttachmentError(ValueError):
    """The attachment is refused; the message says why, in the API's sentence case."""


def sanitized_filename(name: str) -> str:
    """``name`` as it may be sent: its last path component, NFC, without control or
    reserved characters, leading dots or trailing dots and spaces, at most 255 characters
    (its extension kept). Raises ``AttachmentError`` when nothing is left."""
    base = re.split(r"[/\\]", name)[-1]
    base = unicodedata.normalize("NFC", base)
    base = _UNSAFE.sub("_", base)
    base = " ".join(base.split())  # line breaks and runs of whitespace become one space
    base = base.lstrip(". ").rstrip(". ")
    if not base.strip("_"):
        raise AttachmentError("Filename is required")
    if len(base) > MAX_FILENAME_LENGTH:
        stem, dot, extension = base.rpartition(".")
        keep = extension[:20] if dot and stem else ""
        base = base[: MAX_FILENAME_LENGTH - len(keep) - 1] + "." + keep if keep else base[:255]
    return base


def denied_extension(filename: str, denied: Collection[str]) -> str | None:
    """The first of ``filename``'s extensions that is denied, or None."""
    denied_lower = {extension.lower().lstrip(".") for extension in denied}
    for extension in filename.lower().split(".")[1:]:
        if extension.strip() in denied_lower:
            return extension.strip()
    return None


def checked_content_type(content_type: str, denied: Collection[str]) -> str:
    """``content_type`` lower-cased, when it is a type/subtype that is not denied."""
    if not _CONTENT_TYPE.fullmatch(content_type):
        raise AttachmentError("Content type must be a MIME type such as application/pdf")
    normalized = content_type.lower()
    if normalized in {entry.lower() for entry in denied}:
        raise AttachmentError(f"Content type {normalized} is not allowed")
    return normalized


def decoded_content(content: str, max_bytes: int) -> bytes:
    """The bytes of the base64 ``content``, at most ``max_bytes`` of them; checked on the
    text's length first, so a huge string costs nothing to refuse."""
    # Line breaks are how MIME writes base64: tolerated, as every decoder does.
    compact = content.replace("\r", "").replace("\n", "")
    if len(compact) // 4 * 3 - 2 > max_bytes:
        raise AttachmentError(f"Content must be at most {max_bytes} bytes")
    try:
        decoded = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise AttachmentError("Content is not valid base64") from None
    if len(decoded) > max_bytes:
        raise AttachmentError(f"Content must be at most {max_bytes} bytes")
    return decoded
