"""A request's transcript as the user gives it: literal text or a path to a UTF-8 ``.txt`` file.

Read when a request is validated (``talkfarm render --transcript``), so this module imports
nothing but the standard library.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import BadInputError

MAX_TEXT_CHARS = 20000


def read_transcript(value: str) -> str:
    """Transcript text from a literal string or a path to a UTF-8 text file."""
    value = value or ""
    if len(value) < 4096 and "\n" not in value and value.lower().endswith(".txt"):
        path = Path(value)
        if not path.is_file():
            raise BadInputError("transcript file not found", value)
        try:
            value = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise BadInputError("transcript file is not UTF-8 text", str(path)) from None
    text = " ".join(value.split())
    if not text:
        raise BadInputError("transcript is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise BadInputError(f"transcript is longer than {MAX_TEXT_CHARS} characters")
    return text
