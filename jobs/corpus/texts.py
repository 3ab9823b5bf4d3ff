"""The sentences the text-to-speech engines speak, one file per language in ``sentences/``.

Each file holds one sentence a line (UTF-8), rich in the phones that move the lips (p, b, m, f,
v, rounded vowels); their order is part of the corpus seed (an utterance picks by index).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import numpy as np

LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "hi")
MAX_SENTENCES = 3
"""An utterance speaks 1 to MAX_SENTENCES sentences of one language."""


@cache
def sentences(language: str) -> tuple[str, ...]:
    """The sentences of ``language`` (one of LANGUAGES), in file order."""
    if language not in LANGUAGES:
        raise KeyError(f"no sentences for language {language!r}")
    text = files("jobs.corpus").joinpath("sentences", f"{language}.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line.strip())


def pick_text(rng: np.random.Generator, language: str) -> str:
    """1 to MAX_SENTENCES different sentences of ``language``, joined by spaces."""
    choices = sentences(language)
    count = int(rng.integers(1, MAX_SENTENCES + 1))
    picks = rng.choice(len(choices), size=count, replace=False)
    return " ".join(choices[int(i)] for i in picks)
