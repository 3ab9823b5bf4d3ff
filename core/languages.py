"""Language codes a render can name: those espeak-ng has a voice for.

Checked when a request is validated, so this module runs one ``espeak-ng --voices`` (cached)
and imports nothing heavy: no espeak library, torch or scipy.
"""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache

from core.errors import BadInputError

LANGUAGE_HELP = "run `espeak-ng --voices` to list the supported language codes"
_PREFERRED = {"en": "en-us", "zh": "cmn"}
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$")


@lru_cache(maxsize=1)
def supported_languages() -> dict[str, str]:
    """espeak-ng language codes (``espeak-ng --voices``, lower case, with the aliases it
    lists such as ``fr`` for ``fr-fr``) -> the voice name that speaks them."""
    try:
        listing = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    codes: dict[str, str] = {}
    aliases: dict[str, tuple[int, str]] = {}
    for line in listing.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 5:
            continue
        voice = parts[4].rsplit("/", 1)[-1].lower()
        codes[parts[1].lower()] = voice
        for alias, priority in re.findall(r"\(([a-z0-9-]+) (\d+)\)", line.lower()):
            if alias not in aliases or int(priority) < aliases[alias][0]:
                aliases[alias] = (int(priority), voice)
    for alias, (_, voice) in aliases.items():
        codes.setdefault(alias, voice)
    for alias, code in _PREFERRED.items():
        if code in codes:
            codes[alias] = codes[code]
    return codes


def check_language(code: str) -> str:
    """Normalised language code (``en``, ``es``, ``pt-br``...); BadInputError when espeak-ng
    has no voice for it."""
    normal = (code or "").strip().lower().replace("_", "-")
    if not _LANGUAGE_CODE.match(normal) or normal not in supported_languages():
        raise BadInputError(f"unsupported language code {code!r}; {LANGUAGE_HELP}")
    return normal


def espeak_voice(code: str) -> str:
    """The espeak-ng voice name of a (checked) language code."""
    return supported_languages()[check_language(code)]


def is_english(code: str) -> bool:
    return code == "en" or code.startswith("en-")
