"""What the benchmarks share: machine facts and the BENCHMARKS.md section writer."""

from __future__ import annotations

import platform
import re
import resource
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def replace_section(title: str, section: str, path: Path = BENCHMARKS) -> None:
    """Replace one ``## Title`` section in place (appended the first time), so a re-run shows its
    effect as a diff of that section only. Put ``section`` (starting with the line ``title``) in place of the old ``title`` section."""
    current = path.read_text()
    if title in current:
        current = re.sub(rf"{re.escape(title)}\n.*?(?=\n## |\Z)", lambda _: section.rstrip("\n") + "\n", current,
                         flags=re.S)
    else:
        current = current.rstrip("\n") + "\n\n" + section
    path.write_text(current)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss_mib() -> float:
    """Peak resident memory of this process, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def render_and_measure(runner, portrait: Path, audio: Path, out: Path, motion: str,
                       transcript: str | None = None, **controls) -> dict | str:
    """Render ``audio`` on ``portrait`` with the ``motion`` generator through ``runner`` (a set-up
    ``pipeline.render.LocalRenderer``) and measure the video as ``talkfarm eval`` does (with ``transcript``
    for the phone measures). Returns the metrics, or the failure as "stage: message"."""
    from core.schemas import RenderControls, RenderRequest
    from workers.quality.qc import evaluate

    request = RenderRequest(id=out.stem, image=str(portrait), audio=str(audio), output=str(out),
                            controls=RenderControls(motion=motion, **controls))
    result = runner.render(request)
    if result.status != "done":
        return f"{result.error_stage}: {result.error_message}"
    return evaluate(out, audio, portrait, transcript).metrics
