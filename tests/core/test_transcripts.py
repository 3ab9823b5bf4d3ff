"""core.transcripts: a request's transcript from text or a UTF-8 file, bounded."""

from __future__ import annotations

import pytest

from core.errors import BadInputError
from core.transcripts import MAX_TEXT_CHARS, read_transcript


def test_read_transcript_from_text_or_file(tmp_path):
    assert read_transcript("  hello \n world ") == "hello world"
    path = tmp_path / "line.txt"
    path.write_text("Bob bought a map.\n", encoding="utf-8")
    assert read_transcript(str(path)) == "Bob bought a map."
    with pytest.raises(BadInputError, match="not found"):
        read_transcript(str(tmp_path / "missing.txt"))
    with pytest.raises(BadInputError, match="empty"):
        read_transcript("   ")


def test_read_transcript_refuses_latin1_files_and_overlong_text(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Mañana".encode("latin-1"))
    with pytest.raises(BadInputError, match="not UTF-8"):
        read_transcript(str(path))
    with pytest.raises(BadInputError, match=f"longer than {MAX_TEXT_CHARS}"):
        read_transcript("word " * MAX_TEXT_CHARS)
