"""BENCHMARKS.md sections written by the benchmarks: replace one ``## Title`` section in place
(appended the first time), so a re-run shows its effect as a diff of that section only."""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def replace_section(title: str, section: str, path: Path = BENCHMARKS) -> None:
    """Put ``section`` (starting with the line ``title``) in place of the old ``title`` section."""
    current = path.read_text()
    if title in current:
        current = re.sub(rf"{re.escape(title)}\n.*?(?=\n## |\Z)", lambda _: section.rstrip("\n") + "\n", current,
                         flags=re.S)
    else:
        current = current.rstrip("\n") + "\n\n" + section
    path.write_text(current)
