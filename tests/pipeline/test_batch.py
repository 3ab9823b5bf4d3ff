"""The batch pipeline on a real local Ray: mixed good and bad rows, idempotent resubmission,
worker crashes, a Redis restart, cancellation and GPU-pool pinning.

Renders are 256 px (the graph and the failure handling do not depend on the size) so the
module stays around a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

from core.devices import pool_device
from core.schemas import RenderControls, RenderRequest
from core.stage import Resources
from core.storage import Storage
from core.video import probe_video
from pipeline.batch import BatchConfig, BatchDriver, write_job_manifest
from pipeline.executors import RayExecutor
from pipeline.graph import GraphConfig, PoolSpec, StageOptions, stage_factories
from pipeline.jobstate import RedisJobStore, RequestSpec, SQLiteJobStore
from pipeline.manifest import read_manifest

ray = pytest.importorskip("ray")

SMALL = RenderControls(size=256)


@pytest.fixture(scope="module")
def executor(ray_session):
    executor = RayExecutor(stage_factories(StageOptions(Storage())), GraphConfig())
    yield executor
    executor.shutdown()


def _requests(shared_assets: Path, out: Path, rows: dict[str, tuple[str, str]]) -> dict[str, RenderRequest]:
    return {rid: RenderRequest(id=rid, image=str(image), audio=str(audio), output=str(out / f"{rid}.mp4"),
                               controls=SMALL) for rid, (image, audio) in rows.items()}


def _run(executor, store, job_id, requests, config=BatchConfig(), on_progress=None, storage=None):
    store.create_job(job_id, [RequestSpec(rid, None, 0) for rid in requests])
    driver = BatchDriver(executor, store, storage or Storage(), GraphConfig(), config, on_progress=on_progress)
    return driver.run(job_id, requests)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, shared_assets):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "noise.png").write_bytes(_noise_png())
    corrupt = (shared_assets / "face_grace_hopper.jpg").read_bytes()
    (folder / "corrupt.jpg").write_bytes(corrupt[: len(corrupt) // 3])
    (folder / "not_audio.wav").write_text("this is text, not audio")
    return folder


def _noise_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_mixed_job_and_resubmission(executor, shared_assets, bad_files, tmp_path):
    grace, speech = shared_assets / "face_grace_hopper.jpg", shared_assets / "speech_cmu_arctic_a0009_3s.wav"
    out = tmp_path / "out"
    requests = _requests(shared_assets, out, {
        "good-grace": (grace, speech),
        "good-astronaut": (shared_assets / "face_astronaut_eileen_collins.png", speech),
        "no-face": (bad_files / "noise.png", speech),
        "corrupt-image": (bad_files / "corrupt.jpg", speech),
        "missing-object": (tmp_path / "nowhere.jpg", speech),
        "not-audio": (grace, bad_files / "not_audio.wav"),
    })
    store = SQLiteJobStore(tmp_path / "jobs.sqlite")
    progress = _run(executor, store, "mixed", requests)
    states = {state.request_id: state for state in store.request_states("mixed")}
    assert {rid: s.status for rid, s in states.items()} == {
        "good-grace": "done", "good-astronaut": "done", "no-face": "failed", "corrupt-image": "failed",
        "missing-object": "failed", "not-audio": "failed"}
    assert (states["no-face"].error_stage, states["corrupt-image"].error_stage) == ("alignment", "alignment")
    assert "no face" in states["no-face"].error_message
    assert "corrupt or truncated" in states["corrupt-image"].error_message
    assert "not found" in states["missing-object"].error_message
    assert states["not-audio"].error_stage == "audio" and "not decodable" in states["not-audio"].error_message
    assert all(states[rid].attempts == 1 for rid in states), "bad input is never retried"
    assert {d.request_id for d in store.dead_letters("mixed")} == {"no-face", "corrupt-image", "missing-object",
                                                                    "not-audio"}
    # Every good row has a complete, playable video and its provenance; nothing half-written.
    for rid in ("good-grace", "good-astronaut"):
        info = probe_video(out / f"{rid}.mp4")
        assert info["video_codec"] == "h264" and info["has_audio"] and abs(info["duration_s"] - 3.1) < 0.1
        assert json.loads((out / f"{rid}.mp4.provenance.json").read_text())["synthetic"] is True
    assert sorted(p.name for p in out.iterdir() if ".partial" in p.name) == []
    assert progress.done == 2 and progress.failed == 4

    rows = {row.request_id: row for row in read_manifest(write_job_manifest(
        "mixed", store, Storage(), requests, str(out / "manifest.parquet")))}
    assert rows["good-grace"].status == "done" and len(rows["good-grace"].output_sha256) == 64
    assert rows["good-grace"].render_id and rows["good-grace"].frames == 77      # 3.1 s at 25 fps
    assert progress.frames == rows["good-grace"].frames + rows["good-astronaut"].frames
    assert set(rows["good-grace"].seconds_per_stage) == {"alignment", "audio", "motion", "decode", "encode", "qc"}
    # every chunk's decode time is counted, not only the last chunk's (each travels with its own task copy)
    assert rows["good-grace"].seconds_per_stage["decode"] > 0.5 * sum(
        s for stage, s in rows["good-grace"].seconds_per_stage.items() if stage in ("decode", "encode"))
    assert rows["no-face"].error_stage == "alignment"
    # the batch QC measured every finished video on its own frames and the row carries it
    for rid in ("good-grace", "good-astronaut"):
        quality = json.loads(rows[rid].quality_json)
        assert quality["face_found_fraction"] > 0.9 and quality["lipsync_r"] is not None
        assert abs(quality["video_seconds"] - 3.1) < 0.1
        assert isinstance(rows[rid].quality_flags, list)
    assert rows["no-face"].quality_json is None

    # The same requests again, as a new job: identical render ids, nothing rendered twice.
    mtimes = {rid: (out / f"{rid}.mp4").stat().st_mtime_ns for rid in ("good-grace", "good-astronaut")}
    again = _run(executor, store, "mixed-again", {rid: requests[rid] for rid in mtimes})
    assert again.reused == 2 and again.frames == 0
    assert {rid: (out / f"{rid}.mp4").stat().st_mtime_ns for rid in mtimes} == mtimes


def test_killed_decoder_and_encoder_workers_lose_nothing(executor, shared_assets, tmp_path):
    """Kill a decoding actor mid-job, then SIGKILL the encoder's worker process mid-job.

    Both come back (actors restart); the requests they held are retried from the start."""
    if True:
        speech = shared_assets / "speech_librivox_austen_7s.wav"          # 178 frames: 4 chunks
        out = tmp_path / "out"
        # Two distinct renders (seeds), both in flight when the workers die: identical rows would
        # render once, the second waiting for the first.
        requests = {f"r{i}": RenderRequest(id=f"r{i}", image=str(shared_assets / "face_grace_hopper.jpg"),
                                           audio=str(speech), output=str(out / f"r{i}.mp4"),
                                           controls=SMALL.model_copy(update={"seed": i})) for i in range(2)}
        store = SQLiteJobStore(tmp_path / "jobs.sqlite")
        killed = []

        def chaos(progress):
            if progress.frames >= 50 and not killed:
                killed.append("decode")
                executor.kill_worker("decode", 0)
            elif progress.frames >= 150 and len(killed) == 1:
                killed.append("encode")
                os.kill(executor.workers_pids("encode")[0], signal.SIGKILL)

        progress = _run(executor, store, "chaos", requests, on_progress=chaos)
        assert killed == ["decode", "encode"]
        states = store.request_states("chaos")
        assert [s.status for s in states] == ["done", "done"], [(s.error_stage, s.error_message, s.attempts)
                                                                 for s in states]
        # the lost decode calls are re-run by Ray; the encoder that died costs its request a retry
        assert any(s.attempts > 1 for s in states), [s.attempts for s in states]
        for rid in requests:
            info = probe_video(out / f"{rid}.mp4")
            assert abs(info["duration_s"] - 7.1) < 0.1
        assert sorted(p.name for p in out.iterdir()) == sorted(
            [f"r{i}.mp4" for i in range(2)] + [f"r{i}.mp4.provenance.json" for i in range(2)])
        assert progress.done == 2


def test_redis_restart_mid_job_resumes(executor, shared_assets, redis_server, tmp_path):
    speech = shared_assets / "speech_cmu_arctic_a0009_3s.wav"
    requests = _requests(shared_assets, tmp_path / "out", {f"r{i}": (shared_assets / "face_grace_hopper.jpg", speech)
                                                           for i in range(3)})
    store = RedisJobStore(redis_server.url)
    restarted = []

    def restart_redis(progress):
        if progress.frames > 0 and not restarted:
            restarted.append(True)
            redis_server.stop()
            threading.Timer(1.5, redis_server.start).start()

    progress = _run(executor, store, "redis-restart", requests, on_progress=restart_redis)
    assert restarted and progress.done == 3
    assert [s.status for s in store.request_states("redis-restart")] == ["done"] * 3


def test_cancel_stops_scheduling_and_keeps_finished_outputs(executor, shared_assets, tmp_path):
    speech = shared_assets / "speech_cmu_arctic_a0009_3s.wav"
    out = tmp_path / "out"
    requests = _requests(shared_assets, out, {f"r{i}": (shared_assets / "face_grace_hopper.jpg", speech)
                                              for i in range(6)})
    store = SQLiteJobStore(tmp_path / "jobs.sqlite")

    def cancel_after_first(progress):
        if progress.done >= 1 and not store.is_cancelled("cancel-me"):
            store.cancel("cancel-me")

    _run(executor, store, "cancel-me", requests, BatchConfig(max_requests_in_flight=2), on_progress=cancel_after_first)
    counts = store.job_status("cancel-me").counts
    assert counts["cancelled"] >= 2 and counts["done"] >= 1 and counts["pending"] == counts["running"] == 0
    for state in store.request_states("cancel-me"):
        video = out / f"{state.request_id}.mp4"
        assert video.exists() == (state.status == "done")
        if video.exists():
            assert abs(probe_video(video)["duration_s"] - 3.1) < 0.1


def test_gpu_pools_are_pinned_to_gpu_nodes(ray_session):
    """Motion and decode pools ask for (fake) GPUs and a node resource; the scheduler grants
    exactly that, and a pool asking for hardware the cluster lacks fails clearly."""
    # Tiny CPU asks: this pool set runs beside the module's CPU pools.
    pools = {name: PoolSpec(1, Resources(cpus=0.01)) for name in ("alignment", "audio", "encode")}
    pools["motion"] = PoolSpec(1, Resources(cpus=0.01, gpus=0.5, custom={"gpu_node": 0.5}))
    pools["decode"] = PoolSpec(2, Resources(cpus=0.01, gpus=0.5, custom={"gpu_node": 0.5}))
    executor = RayExecutor(stage_factories(StageOptions(Storage()), GraphConfig(pools)), GraphConfig(pools))
    try:
        for stage in ("motion", "decode"):
            for granted in executor.assigned_resources(stage):
                assert granted.get("GPU") == 0.5 and granted.get("gpu_node") == 0.5, granted
            # The workers chose their device themselves: the GPUs here are a scheduler resource only,
            # torch in the actor sees no CUDA, so they run on the CPU instead of failing.
            devices = ray.get([actor.device.remote() for actor in executor.actors[stage]])
            assert devices == [pool_device(0.5)] * len(devices)
        assert all("GPU" not in granted for granted in executor.assigned_resources("encode"))
    finally:
        executor.shutdown()
    pools["decode"] = PoolSpec(1, Resources(cpus=0.01, accelerator_type="H100"))
    with pytest.raises(RuntimeError, match="decode pool"):
        RayExecutor(stage_factories(StageOptions(Storage())), GraphConfig(pools), start_timeout_s=20)
