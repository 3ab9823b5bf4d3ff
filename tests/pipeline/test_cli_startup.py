"""``talkfarm render --help`` and request validation start without the heavy libraries.

Each check is a fresh interpreter running the CLI's own ``main`` (its imports are what a user
pays for before anything renders), then listing which heavy modules it imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Seconds of start-up each: torch, scipy.signal, MediaPipe, OpenCV, the espeak-ng library binding.
HEAVY = ("torch", "scipy.signal", "mediapipe", "cv2", "workers.audio.espeak")
PROBE = """
import json, sys
from pipeline.cli import main
try:
    code = main(json.loads(sys.argv[1]))
except SystemExit as stop:   # --help
    code = stop.code
print(json.dumps({"code": code, "heavy": sorted(name for name in json.loads(sys.argv[2]) if name in sys.modules)}))
"""


def run_cli(*argv: str) -> tuple[int, list[str], str]:
    """Exit code of ``main(argv)`` in a fresh interpreter, the heavy modules it then holds, and
    what it wrote to stderr."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], report["heavy"], done.stderr


def test_render_help_imports_nothing_heavy():
    code, heavy, _ = run_cli("render", "--help")
    assert code == 0
    assert heavy == []


def test_request_validation_imports_nothing_heavy(tmp_path):
    image, audio = tmp_path / "face.jpg", tmp_path / "speech.wav"
    image.write_bytes(b"\xff\xd8")
    audio.write_bytes(b"RIFF")
    transcript = tmp_path / "words.txt"
    transcript.write_text("Mañana comemos paella.", encoding="utf-8")
    common = ["render", "--image", str(image), "--audio", str(audio), "-o", str(tmp_path / "out.mp4")]
    refusals = {  # argv -> the one-line error: validation fails after the language and transcript are read
        (*common, "--language", "es", "--transcript", str(transcript), "--size", "333"): "--size: size must be even",
        (*common, "--language", "xx", "--transcript", "hello there"): "unsupported language code 'xx'",
        (*common, "--transcript", str(tmp_path / "missing.txt")): "transcript file not found",
    }
    for argv, message in refusals.items():
        code, heavy, stderr = run_cli(*argv)
        assert (code, heavy) == (2, []), (argv, stderr)
        assert message in stderr
