"""The driver's early reuse check (pipeline.reuse): a row whose inputs the job already hashed
and whose render exists is finished before any stage runs, its video linked, not copied; rows
that repeat one in flight wait for it; a driver killed before it commits its finished rows
leaves them to the next driver, which finishes each once."""

from __future__ import annotations

import json
import os

import pytest

from core.schemas import RenderControls, RenderRequest
from core.storage import Storage
from monitoring.metrics import metrics
from pipeline.batch import BatchConfig, BatchDriver
from pipeline.executors import LocalExecutor
from pipeline.graph import GraphConfig, StageOptions, stage_factories
from pipeline.jobstate import SQLiteJobStore
from pipeline.request_files import request_spec


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
    # Registered with their requests, as `talkfarm batch` does: the driver reads them from the store.
    store.create_job("reuse", [request_spec(request) for request in requests.values()])
    executor = LocalExecutor(stage_factories(StageOptions(Storage(), quality_check=False)))
    before = {stage: _count("talkfarm_stage_duration_seconds_count", stage=stage) for stage in ("alignment", "audio")}
    reused_before = _count("talkfarm_renders_total", status="reused")
    # All three are claimed at once: the two repeats wait for the first, then reuse its render.
    driver = BatchDriver(executor, store, Storage(), GraphConfig(), BatchConfig(max_requests_in_flight=3))
    progress = driver.run("reuse")

    assert (progress.done, progress.reused, progress.failed) == (3, 2, 0)
    for stage in ("alignment", "audio"):
        assert _count("talkfarm_stage_duration_seconds_count", stage=stage) - before[stage] == 1, stage
    assert _count("talkfarm_renders_total", status="reused") - reused_before == 2
    states = {state.request_id: state for state in store.request_states("reuse")}
    assert len({state.render_id for state in states.values()}) == 1
    for rid in ("again", "once-more"):
        assert states[rid].status == "done" and states[rid].result["reused"] is True
        assert os.path.samefile(tmp_path / f"{rid}.mp4", tmp_path / "first.mp4")
        assert json.loads((tmp_path / f"{rid}.mp4.provenance.json").read_text())["request_id"] == rid

    # A driver killed after it linked a turn's reused rows but before it committed them: they stay
    # running; the next driver resets them and finishes each once, by reuse again.
    repeats = {rid: RenderRequest(id=rid, image=str(image), audio=str(audio), output=str(tmp_path / f"{rid}.mp4"),
                                  controls=controls) for rid in ("r1", "r2", "r3")}
    store.create_job("crash", [request_spec(request) for request in repeats.values()])
    killed = BatchDriver(executor, KilledAtCommit(store), Storage(), GraphConfig(), BatchConfig())
    killed.input_hashes = driver.input_hashes      # it knows these inputs: all three are reused in its first turn
    with pytest.raises(DriverKilled):
        killed.run("crash")
    assert {state.status for state in store.request_states("crash")} == {"running"}
    assert all((tmp_path / f"{rid}.mp4").is_file() for rid in repeats)
    aligned = _count("talkfarm_stage_duration_seconds_count", stage="alignment")
    # A new driver, as after a restart: it learns the inputs' hashes from the job store, so no row
    # goes through a stage.
    progress = BatchDriver(executor, store, Storage(), GraphConfig(), BatchConfig()).run("crash")
    assert (progress.done, progress.reused, progress.failed) == (3, 3, 0)
    assert _count("talkfarm_stage_duration_seconds_count", stage="alignment") == aligned
    for state in store.request_states("crash"):
        assert (state.status, state.attempts, state.result["reused"]) == ("done", 2, True)
        assert os.path.samefile(tmp_path / f"{state.request_id}.mp4", tmp_path / "first.mp4")
    # the first job's two, the killed driver's three (linked, never committed), its successor's three
    assert _count("talkfarm_renders_total", status="reused") - reused_before == 2 + 3 + 3

    # A changed input is not taken for the one hashed before: the row goes through the stages.
    audio.write_bytes((shared_assets / "speech_cmu_arctic_a0007_4s.wav").read_bytes())
    changed = {"changed": RenderRequest(id="changed", image=str(image), audio=str(audio),
                                        output=str(tmp_path / "changed.mp4"), controls=controls)}
    store.create_job("changed", [request_spec(changed["changed"])])
    driver.run("changed")                 # the same driver: it remembers the old audio's hash
    [state] = store.request_states("changed")
    assert state.status == "done" and state.result["reused"] is False
    assert state.render_id != states["first"].render_id


class DriverKilled(BaseException):
    """The driver process dying (kill -9) at the moment it would commit."""


class KilledAtCommit:
    """The real job store, except that the driver dies when it commits its finished rows."""

    def __init__(self, store):
        self._store = store

    def finish(self, job_id, finished):
        raise DriverKilled

    def __getattr__(self, name):
        return getattr(self._store, name)
