"""The transcript record a render publishes (manifest ``transcript_json``, provenance
``transcript``): the same JSON as before the record was typed."""

from __future__ import annotations

import json

from core.speech import Transcript


def test_a_given_transcript_publishes_text_source_and_language_only():
    given = Transcript(text="Bob bought a map.", source="given", language="en")
    assert given.to_json() == {"text": "Bob bought a map.", "source": "given", "language": "en"}


def test_a_recognised_transcript_publishes_the_recognisers_fields_even_when_empty():
    heard = Transcript(text="hello there", source="recognised", language="en", confidence=0.912, model="abc123",
                       words=2, used=True, problem=None)
    record = json.loads(json.dumps(heard.to_json()))
    assert record == {"text": "hello there", "source": "recognised", "language": "en", "confidence": 0.912,
                      "model": "abc123", "words": 2, "used": True, "problem": None}
