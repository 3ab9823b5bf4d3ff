"""Shared fixtures: the real assets, one aligned portrait, one face-mesh detector, an output folder.

Everything expensive is session-scoped: alignment and the MediaPipe graph are built once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.batch import LOOPBACK_RAY_ENV

# Every Ray the tests start (ray.init, `ray start --head`, worker processes) stays on loopback.
os.environ.setdefault(LOOPBACK_RAY_ENV, "0")

REPO = Path(__file__).resolve().parents[1]
SHARED_ASSETS = REPO.parent / "shared" / "assets"
TEST_OUTPUT = REPO / "test-output"   # gitignored; contact sheets land here for people to look at


@pytest.fixture(scope="session")
def shared_assets() -> Path:
    """The shared real-data folder (../shared/assets next to the repository)."""
    if not (SHARED_ASSETS / "face_grace_hopper.jpg").is_file():
        pytest.skip(f"shared assets not found at {SHARED_ASSETS}")
    return SHARED_ASSETS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``shared_speech_wav`` runs once per shared speech clip
    (``speech_*.wav``); without the shared assets it is one skipped case, never an empty set."""
    if "shared_speech_wav" not in metafunc.fixturenames:
        return
    wavs = sorted(SHARED_ASSETS.glob("speech_*.wav"))
    cases = [pytest.param(path, id=path.name) for path in wavs] or [
        pytest.param(None, id="no-shared-assets", marks=pytest.mark.skip(reason=f"shared assets not found at {SHARED_ASSETS}"))]
    metafunc.parametrize("shared_speech_wav", cases)


@pytest.fixture(scope="session")
def test_output() -> Path:
    TEST_OUTPUT.mkdir(exist_ok=True)
    return TEST_OUTPUT


@pytest.fixture(scope="session")
def detector():
    from workers.alignment.landmarks import FaceMeshDetector

    mesh = FaceMeshDetector()
    yield mesh
    mesh.close()


def aligned_task(image: Path, size: int = 512, **controls):
    """Run the real AlignmentStage on one portrait; returns the RenderTask."""
    from core.schemas import RenderControls, RenderRequest
    from core.task import RenderTask
    from workers.alignment.stage import AlignmentStage

    request = RenderRequest(id=image.stem, image=str(image), audio="unused.wav", output="/nonexistent/unused.mp4",
                            controls=RenderControls(size=size, **controls))
    task = RenderTask(request)
    AlignmentStage()([task])
    return task


@pytest.fixture(scope="session")
def align():
    """The :func:`aligned_task` helper, for tests that align their own photos."""
    return aligned_task


@pytest.fixture(scope="session")
def grace_task(shared_assets):
    task = aligned_task(shared_assets / "face_grace_hopper.jpg")
    assert task.failure is None, task.failure
    return task


@pytest.fixture(scope="session")
def aligned_grace(grace_task):
    """Grace Hopper's portrait aligned at 512 px (workers.alignment.face.AlignedFace)."""
    return grace_task.face
