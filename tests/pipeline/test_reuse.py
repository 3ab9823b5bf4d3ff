"""The driver's early reuse check (pipeline.reuse): a row whose inputs the job already hashed
and whose render exists is finished before any stage runs, its video linked, not copied."""

from __future__ import annotations

import os

from core.schemas import RenderControls, RenderRequest
from core.storage import Storage
from monitoring.metrics import metrics
from pipeline.batch import BatchConfig, BatchDriver
from pipeline.executors import LocalExecutor
from pipeline.graph import GraphConfig, StageOptions, stage_factories
from pipeline.jobstate import RequestSpec, SQLiteJobStore


def _count(name: str, **labels: str) -> float:
    return metrics().collector_registry().get_sample_value(name, labels) or 0.0


def test_repeated_rows_skip_the_stages_and_link_the_video(shared_assets, tmp_path):
    image, audio = tmp_path / "face.jpg", tmp_path / "speech.wav"
    image.write_bytes((shared_assets / "face_grace_hopper.jpg").read_bytes())
    audio.write_bytes((shared_assets / "speech_cmu_arctic_a0009_3s.wav").read_bytes())
    controls = RenderControls(size=128, motion="procedural")
    requests = {rid: RenderRequest(id=rid, image=str(image), audio=str(audio), output=str(tmp_path / f"{rid}.mp4"),
                                   controls=controls) for rid in ("first", "again", "once-more")}
    store = SQLiteJobStore(tmp_path / "jobs.sqlite")
    store.create_job("reuse", [RequestSpec(rid, None, 0) for rid in requests])
    executor = LocalExecutor(stage_factories(StageOptions(Storage(), quality_check=False)))
    before = {stage: _count("talkfarm_stage_duration_seconds_count", stage=stage) for stage in ("alignment", "audio")}
    reused_before = _count("talkfarm_renders_total", status="reused")
    # One request at a time, so the first has finished (and its inputs were hashed) before the next is claimed.
    driver = BatchDriver(executor, store, Storage(), GraphConfig(), BatchConfig(max_requests_in_flight=1))
    progress = driver.run("reuse", requests)

    assert (progress.done, progress.reused, progress.failed) == (3, 2, 0)
    for stage in ("alignment", "audio"):
        assert _count("talkfarm_stage_duration_seconds_count", stage=stage) - before[stage] == 1, stage
    assert _count("talkfarm_renders_total", status="reused") - reused_before == 2
    states = {state.request_id: state for state in store.request_states("reuse")}
    assert len({state.render_id for state in states.values()}) == 1
    for rid in ("again", "once-more"):
        assert states[rid].status == "done" and states[rid].result["reused"] is True
        assert os.path.samefile(tmp_path / f"{rid}.mp4", tmp_path / "first.mp4")
        assert (tmp_path / f"{rid}.mp4.provenance.json").is_file()

    # A changed input is not taken for the one hashed before: the row goes through the stages.
    audio.write_bytes((shared_assets / "speech_cmu_arctic_a0007_4s.wav").read_bytes())
    changed = {"changed": RenderRequest(id="changed", image=str(image), audio=str(audio),
                                        output=str(tmp_path / "changed.mp4"), controls=controls)}
    store.create_job("changed", [RequestSpec("changed", None, 0)])
    driver.run("changed", changed)        # the same driver: it remembers the old audio's hash
    [state] = store.request_states("changed")
    assert state.status == "done" and state.result["reused"] is False
    assert state.render_id != states["first"].render_id
