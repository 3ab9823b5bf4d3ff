"""`talkfarm report`: a self-contained HTML page for a job's manifest, checked in headless Chromium.

Two real renders (one row with batch QC columns, one without, measured on the fly) and one
failed row. The page is opened in Debian's chromium over the DevTools protocol: console
messages of level error, uncaught exceptions and failed loads are collected, and a full-page
screenshot is written to test-output/report_screenshot.png for people to look at.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TALKFARM = [sys.executable, "-m", "pipeline.cli"]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _render(assets: Path, image: str, audio: str, out: Path) -> Path:
    subprocess.run(TALKFARM + ["render", "--image", str(assets / image), "--audio", str(assets / audio),
                               "-o", str(out), "--quiet", "--size", "256"], check=True, cwd=REPO,
                   capture_output=True, timeout=240)
    return out


@pytest.fixture(scope="module")
def manifest(shared_assets, tmp_path_factory):
    from pipeline.manifest import ManifestRow, write_manifest
    from workers.quality.qc import manifest_quality_columns, qc_for_batch

    folder = tmp_path_factory.mktemp("report")
    grace = _render(shared_assets, "face_grace_hopper.jpg", "speech_cmu_arctic_a0007_4s.wav", folder / "grace.mp4")
    eileen = _render(shared_assets, "face_astronaut_eileen_collins.png", "speech_cmu_arctic_a0009_3s.wav",
                     folder / "eileen.mp4")
    now = datetime.now(timezone.utc)
    metrics, flags = qc_for_batch(grace, shared_assets / "speech_cmu_arctic_a0007_4s.wav",
                                  shared_assets / "face_grace_hopper.jpg")
    rows = [
        ManifestRow(job_id="job-qc", request_id="grace", status="done", render_id="r-grace",
                    image_uri=str(shared_assets / "face_grace_hopper.jpg"),
                    audio_uri=str(shared_assets / "speech_cmu_arctic_a0007_4s.wav"), output_uri=str(grace),
                    attempts=1, audio_seconds=4.0, frames=100, total_seconds=3.1,
                    seconds_per_stage={"alignment": 0.1, "audio": 0.1, "decode": 2.2, "encode": 0.7},
                    created_at=now, finished_at=now, **manifest_quality_columns(metrics, flags)),
        ManifestRow(job_id="job-qc", request_id="eileen", status="done", render_id="r-eileen",
                    image_uri=str(shared_assets / "face_astronaut_eileen_collins.png"),
                    audio_uri=str(shared_assets / "speech_cmu_arctic_a0009_3s.wav"), output_uri=str(eileen),
                    attempts=1, audio_seconds=3.1, frames=77, total_seconds=2.5,
                    seconds_per_stage={"alignment": 0.1, "audio": 0.1, "decode": 1.8, "encode": 0.5},
                    created_at=now, finished_at=now),
        ManifestRow(job_id="job-qc", request_id="no-face", status="failed", image_uri="/data/landscape.jpg",
                    audio_uri=str(shared_assets / "speech_cmu_arctic_a0007_4s.wav"), error_stage="alignment",
                    error_message="no face found in the image", attempts=3, created_at=now, finished_at=now),
    ]
    path = folder / "manifest.parquet"
    write_manifest(rows, str(path))
    return path


@pytest.fixture(scope="module")
def report(manifest):
    out = manifest.parent / "report.html"
    done = subprocess.run(TALKFARM + ["report", str(manifest), "-o", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(out)
    return out


def test_manifest_quality_columns_round_trip(manifest):
    from pipeline.manifest import read_manifest

    rows = {row.request_id: row for row in read_manifest(str(manifest))}
    from workers.quality.qc import BATCH_STRIDE

    metrics = json.loads(rows["grace"].quality_json)
    assert metrics["face_found_fraction"] >= 0.95 and metrics["stride"] == BATCH_STRIDE
    assert rows["grace"].quality_flags == []
    assert rows["eileen"].quality_json is None and rows["eileen"].quality_flags == []


def test_report_is_self_contained_with_every_row(report):
    text = report.read_text()
    for needle in ("grace", "eileen", "no-face", "no face found in the image", "Failures by stage",
                   "data:image/png;base64,", "lipsync_r", "measured now", "batch QC"):
        assert needle in text, needle
    assert ("data:image/webp;base64," in text) or ("data:image/gif;base64," in text)
    # nothing fetched from anywhere: every src / href is a data: URI
    import re

    for attribute in re.findall(r"""(?:src|href)=['"]([^'"]*)['"]""", text):
        assert attribute.startswith("data:"), attribute[:80]
    assert "<script" not in text
    # failed row first
    assert text.index("no-face") < text.index(">grace ") and text.index("no-face") < text.index(">eileen ")


def test_report_bad_input_exits_2(tmp_path):
    done = subprocess.run(TALKFARM + ["report", str(tmp_path / "missing.parquet"), "-o", str(tmp_path / "r.html")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "manifest file not found" in done.stderr
    (tmp_path / "junk.parquet").write_text("not parquet")
    done = subprocess.run(TALKFARM + ["report", str(tmp_path / "junk.parquet"), "-o", str(tmp_path / "r.html")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not a talkfarm manifest" in done.stderr


# ---------------------------------------------------------------------------- headless Chromium

def _chromium_or_skip() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    return CHROMIUM


async def _open_page(url: str, user_data: Path, screenshot: Path, width: int = 1280) -> list[str]:
    """Load ``url`` in headless Chromium over DevTools; return error messages, write a screenshot."""
    import aiohttp

    process = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={user_data}", "--remote-debugging-port=0", f"--window-size={width},900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    errors: list[str] = []
    try:
        port_file = user_data / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split("\n")[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
                pages = [t for t in await answer.json() if t.get("type") == "page"]
            async with session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                counter = 0
                loaded = asyncio.Event()
                waiting: dict[int, asyncio.Future] = {}

                async def reader():
                    async for message in ws:
                        data = json.loads(message.data)
                        if "id" in data and data["id"] in waiting:
                            waiting.pop(data["id"]).set_result(data)
                        method = data.get("method")
                        params = data.get("params", {})
                        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                            errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                                  for a in params.get("args", [])))
                        elif method == "Runtime.exceptionThrown":
                            errors.append("exception: " + params["exceptionDetails"].get("text", ""))
                        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                            errors.append("log: " + params["entry"].get("text", ""))
                        elif method == "Network.loadingFailed":
                            errors.append("load failed: " + params.get("errorText", ""))
                        elif method == "Page.loadEventFired":
                            loaded.set()

                task = asyncio.create_task(reader())

                async def call(method: str, **params):
                    nonlocal counter
                    counter += 1
                    future = asyncio.get_running_loop().create_future()
                    waiting[counter] = future
                    await ws.send_json({"id": counter, "method": method, "params": params})
                    answer = await asyncio.wait_for(future, 60)
                    assert "error" not in answer, answer
                    return answer.get("result", {})

                for domain in ("Runtime", "Log", "Network", "Page"):
                    await call(f"{domain}.enable")
                await call("Page.navigate", url=url)
                await asyncio.wait_for(loaded.wait(), 60)
                await asyncio.sleep(0.5)          # late console messages
                metrics = await call("Page.getLayoutMetrics")
                height = int(min(metrics["cssContentSize"]["height"], 6000))
                shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                  clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                task.cancel()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return errors


def test_console_error_capture_works(tmp_path):
    """The checker itself sees a console error and a missing image (so 'no errors' means something)."""
    _chromium_or_skip()
    page = tmp_path / "bad.html"
    page.write_text("<html><body><img src='missing.png'><script>console.error('boom')</script></body></html>")
    errors = asyncio.run(_open_page(page.as_uri(), tmp_path / "profile", tmp_path / "bad.png", width=400))
    assert any("boom" in e for e in errors) and any("load failed" in e or "missing" in e for e in errors), errors


def test_report_renders_in_chromium_without_console_errors(report, tmp_path, test_output):
    _chromium_or_skip()
    screenshot = test_output / "report_screenshot.png"
    screenshot.unlink(missing_ok=True)
    errors = asyncio.run(_open_page(report.as_uri(), tmp_path / "profile", screenshot))
    assert errors == []
    from PIL import Image

    with Image.open(screenshot) as image:
        assert image.width == 1280 and image.height > 900
        # not a blank page: many distinct colours (photos, plots)
        assert len(image.convert("RGB").resize((320, 240)).getcolors(1 << 16) or []) > 500
    shutil.copy(report, test_output / "report.html")
