"""The face latent space on real data: layout, source recovery, and the render -> detect -> encode round trip.

The round trip is the end-to-end check that a latent means what it says: known latents are
rendered by the real decoder, MediaPipe finds the landmarks on the rendered pixels, and the
face model's encoder must read the latents back.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.preview import save_contact_sheet
from workers.decoder.renderer import FaceRenderer
from workers.face import latents
from workers.face.latents import (
    DYN_SLICE,
    DYNAMICS,
    GAZE_SLICE,
    MOTION_DIM,
    MOTION_NAMES,
    POSE_SLICE,
    dyn_index,
    emotion_offset,
    euler_from_matrix,
    rotation_matrix,
)
from workers.face.model import FaceModel

YAW, PITCH = MOTION_NAMES.index("yaw"), MOTION_NAMES.index("pitch")
GAZE_YAW = MOTION_NAMES.index("gaze_yaw")
JAW = dyn_index("jaw_open")
BLINKS = [dyn_index("blink_left"), dyn_index("blink_right")]


# ---------------------------------------------------------------- layout

def test_latent_layout_is_pose_dynamics_gaze():
    assert MOTION_DIM == 20 == len(MOTION_NAMES)
    assert MOTION_NAMES[POSE_SLICE] == ("yaw", "pitch", "roll", "tx", "ty", "log_scale")
    assert MOTION_NAMES[DYN_SLICE] == DYNAMICS and len(DYNAMICS) == 12
    assert MOTION_NAMES[GAZE_SLICE] == ("gaze_yaw", "gaze_pitch")
    assert (POSE_SLICE.stop, DYN_SLICE.start, DYN_SLICE.stop, GAZE_SLICE.start) == (6, 6, 18, 18)
    assert dyn_index("jaw_open") == 6 and dyn_index("brow_lower") == 17
    for i, name in enumerate(DYNAMICS):
        assert MOTION_NAMES[dyn_index(name)] == name == DYNAMICS[i]


def test_emotion_offsets():
    happy = emotion_offset("happy")
    assert happy.shape == (12,)
    assert happy[DYNAMICS.index("smile_left")] > 0.3 and happy[DYNAMICS.index("smile_right")] > 0.3
    assert not emotion_offset("neutral").any()
    vector = tuple(float(i) / 10 for i in range(12))
    np.testing.assert_allclose(emotion_offset(vector), vector, rtol=1e-6)
    with pytest.raises(ValueError, match="12 values"):
        emotion_offset((0.1, 0.2))
    assert set(latents.EMOTIONS) == {"neutral", "happy", "sad", "surprised", "angry"}


def test_rotation_round_trips_through_euler_angles():
    angles = torch.tensor([[12.0, -7.0, 3.0], [-25.0, 15.0, -9.0], [0.0, 0.0, 0.0]])
    rot = rotation_matrix(angles[:, 0], angles[:, 1], angles[:, 2]).numpy()
    for matrix, expected in zip(rot, angles.numpy()):
        np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-6)
        np.testing.assert_allclose(euler_from_matrix(matrix), expected, atol=1e-4)


# ---------------------------------------------------------------- the source face

def test_encoder_recovers_the_source_latent_from_the_source_landmarks(aligned_grace):
    """encode(source landmarks) == source latent: the model is built to be exact there.

    Except for a trace of mouth dynamics: lips parted less than MIN_JAW_FOR_RESIDUAL (Grace's
    are, by under a pixel) are closed in the identity, so closed latents give lips that meet;
    the photo's own landmarks then read as a trace of opening (measured 0.003)."""
    model = aligned_grace.model
    assert model.identity.shape == (478, 3) and model.basis.shape == (12, 478, 3)
    source = model.source_latent
    assert source.shape == (MOTION_DIM,)
    encoded = model.encode(aligned_grace.landmarks[None])[0]
    np.testing.assert_allclose(encoded[POSE_SLICE], source[POSE_SLICE], atol=2e-3)
    np.testing.assert_allclose(encoded[GAZE_SLICE], source[GAZE_SLICE], atol=2e-3)
    np.testing.assert_allclose(encoded[DYN_SLICE], source[DYN_SLICE], atol=1e-2)
    # Decoding the source latent gives back the photo's landmarks (x, y within a pixel).
    decoded = model.landmarks(torch.as_tensor(source[None]))[0].numpy()
    assert np.abs(decoded[:, :2] - aligned_grace.landmarks[:, :2]).max() < 1.0
    # Grace Hopper looks at the camera, chin slightly down, mouth closed, no head roll.
    assert abs(source[YAW]) < 5 and abs(source[MOTION_NAMES.index("roll")]) < 3
    assert source[JAW] < 0.1


def test_encode_inverts_decode_exactly_on_synthetic_landmarks(aligned_grace):
    """Noise-free landmarks from the model itself: pose and gaze come back exactly; dynamics
    within 0.08 with all twelve active at once (measured max 0.06: the encoder's ridge shrinks
    small-footprint fields such as lip_press slightly, by design)."""
    model = aligned_grace.model
    rng = np.random.default_rng(0)
    motion = np.repeat(model.source_latent[None], 8, 0)
    motion[:, POSE_SLICE.start:POSE_SLICE.start + 3] += rng.uniform(-10, 10, (8, 3))
    motion[:, DYN_SLICE] = rng.uniform(0, 0.8, (8, 12))
    motion[:, GAZE_SLICE] = rng.uniform(-20, 20, (8, 2))
    points = model.landmarks(torch.as_tensor(motion, dtype=torch.float32)).numpy()
    encoded = model.encode(points)
    np.testing.assert_allclose(encoded[:, POSE_SLICE], motion[:, POSE_SLICE], atol=0.02)
    np.testing.assert_allclose(encoded[:, GAZE_SLICE], motion[:, GAZE_SLICE], atol=0.1)
    np.testing.assert_allclose(encoded[:, DYN_SLICE], motion[:, DYN_SLICE], atol=0.08)


def test_model_is_built_the_same_from_the_same_landmarks(aligned_grace):
    again = FaceModel.from_landmarks(aligned_grace.landmarks, aligned_grace.crop.shape[0])
    np.testing.assert_array_equal(again.source_latent, aligned_grace.model.source_latent)
    np.testing.assert_array_equal(again.identity, aligned_grace.model.identity)


def test_the_rig_spreads_handles_exactly_as_its_formula(aligned_grace):
    # _spread sums the squared distances plane by plane (the rig is built every dubbed frame):
    # the very doubles of the formula written whole, on a real face's canonical shape.
    from workers.face.rig import _spread

    shape = aligned_grace.model.identity.astype(np.float64)
    handles = {index: np.array([0.013 * (index % 7), -0.03, 0.02]) for index in (0, 13, 14, 17, 61, 205, 291)}
    index = np.array(list(handles))
    vectors = np.stack(list(handles.values()))
    kernel = np.exp(-((shape[:, None, :] - shape[None, index, :]) ** 2).sum(-1) / (2 * 0.1 * 0.1))
    expected = (kernel @ vectors) / np.maximum(1.0, kernel.sum(1, keepdims=True))
    assert np.array_equal(_spread(shape, handles, 0.1), expected)


# ---------------------------------------------------------------- the round trip on rendered pixels

CASES = [  # (label, {latent name: value, or (name, "+", delta) relative to the source})
    ("jaw 0", {"jaw_open": 0.0}),
    ("jaw 0.35", {"jaw_open": 0.35}),
    ("jaw 0.7", {"jaw_open": 0.7}),
    ("blink 0", {"blink_left": 0.0, "blink_right": 0.0}),
    ("blink 1", {"blink_left": 1.0, "blink_right": 1.0}),
    ("yaw -8", {"yaw": -8.0}),
    ("yaw +8", {"yaw": 8.0}),
    ("gaze +20", {"gaze_yaw": 20.0}),
    ("gaze -20", {"gaze_yaw": -20.0}),
]
RELATIVE = {"yaw"}   # head yaw is set relative to the photo's own


@pytest.fixture(scope="module")
def round_trip(aligned_grace, detector, test_output):
    """(labels, asked latents (N, 20), recovered latents (N, 20)), rendered and read back once."""
    source = aligned_grace.model.source_latent
    asked = np.repeat(source[None], len(CASES), 0).astype(np.float32)
    for row, (_, values) in zip(asked, CASES):
        for name, value in values.items():
            i = MOTION_NAMES.index(name)
            row[i] = source[i] + value if name in RELATIVE else value
    frames = FaceRenderer(aligned_grace).render(asked)
    labels = [label for label, _ in CASES]
    save_contact_sheet(list(frames), test_output / "face_model_round_trip.png", columns=5, tile=256, labels=labels)
    points = []
    for label, frame in zip(labels, frames):
        faces = detector.detect(frame, refine=True)
        assert len(faces) == 1, f"{label}: {len(faces)} faces detected on the rendered frame"
        points.append(faces[0].landmarks)
    recovered = aligned_grace.model.encode(np.stack(points))
    return labels, asked, recovered


def _row(round_trip, label):
    labels, asked, recovered = round_trip
    i = labels.index(label)
    return asked[i], recovered[i]


def test_round_trip_jaw(round_trip):
    """Jaw opening read back from rendered pixels.

    Measured (grace, 512 px, CPU): asked 0 / 0.35 / 0.7 -> read 0.03 below 0 / 0.22 / 0.40.
    MediaPipe's chin follows the warped jaw only ~80 %, and the rigid-point pose fit tips
    ~3 degrees of pitch, so large openings read low. Tolerances: closed within 0.1,
    0.35 within 0.2, 0.7 read at least 0.3, strictly increasing with a step over 0.1.
    """
    jaw = [_row(round_trip, f"jaw {v}")[1][JAW] for v in ("0", "0.35", "0.7")]
    assert abs(jaw[0]) < 0.1, jaw
    assert abs(jaw[1] - 0.35) < 0.2, jaw
    assert jaw[2] > 0.3, jaw
    assert jaw[1] - jaw[0] > 0.1 and jaw[2] - jaw[1] > 0.1, jaw


def test_round_trip_head_yaw(round_trip):
    """Head yaw +-8 degrees around the photo's: right sign, within 3 degrees.

    Measured: -8 -> -6.7, +8 -> +6.0 relative to the source (errors 1.3 and 2.0 degrees).
    Pitch and roll stay put (within 2.5 degrees of the source).
    """
    for sign in (-1, 1):
        asked, got = _row(round_trip, f"yaw {'+' if sign > 0 else '-'}8")
        delta_asked = 8.0 * sign
        source_yaw = _row(round_trip, "jaw 0")[0][YAW]
        delta_got = got[YAW] - source_yaw
        assert np.sign(delta_got) == sign, (delta_asked, delta_got)
        assert abs(delta_got - delta_asked) < 3.0, (delta_asked, delta_got)
        assert abs(got[PITCH] - asked[PITCH]) < 2.5 and abs(got[MOTION_NAMES.index("roll")] - asked[MOTION_NAMES.index("roll")]) < 2.5


def test_round_trip_gaze(round_trip):
    """Gaze yaw +-20 degrees: right sign, at least 8 degrees, and the two sides 20+ apart.

    Measured: +20 -> +12.7, -20 -> -15.7 (the iris sprite moves the full amount, MediaPipe's
    iris landmarks under the glasses follow ~70 %).
    """
    right = _row(round_trip, "gaze +20")[1][GAZE_YAW]
    left = _row(round_trip, "gaze -20")[1][GAZE_YAW]
    assert right > 8.0 and left < -8.0, (right, left)
    assert right - left > 20.0, (right, left)


def test_round_trip_blink_reads_higher_when_closed(round_trip):
    """Closed lids read higher than open ones, but only barely (see the xfail below).

    Measured: open -> (-0.04, -0.21), closed -> (0.01, 0.04) for (left, right); the mean
    rises by 0.15. Tolerance: mean rise over 0.05.
    """
    open_ = _row(round_trip, "blink 0")[1][BLINKS].mean()
    closed = _row(round_trip, "blink 1")[1][BLINKS].mean()
    assert closed - open_ > 0.05, (open_, closed)


@pytest.mark.xfail(strict=True, reason=(
    "known gap: behind Grace Hopper's glasses MediaPipe reads a rendered closed lid as open "
    "(blink ~0; without glasses it reads 0.3-0.5, see test_round_trip_blink_without_glasses), and "
    "its chin moves ~80% as far as the rig's, so jaw 0.7 reads 0.40. Design targets: "
    "blink closed-open > 0.5, jaw within 0.15"))
def test_round_trip_meets_design_tolerances(round_trip):
    open_ = _row(round_trip, "blink 0")[1][BLINKS]
    closed = _row(round_trip, "blink 1")[1][BLINKS]
    assert (closed - open_).min() > 0.5, (open_, closed)
    for value in ("0", "0.35", "0.7"):
        asked, got = _row(round_trip, f"jaw {value}")
        assert abs(got[JAW] - asked[JAW]) < 0.15, (value, got[JAW])


def test_round_trip_leaves_unasked_latents_alone(round_trip):
    """A gaze or blink change does not read as a mouth or head change (jaw within 0.15, yaw within 1.5)."""
    source = _row(round_trip, "jaw 0")[1]
    for label in ("blink 0", "blink 1", "gaze +20", "gaze -20"):
        got = _row(round_trip, label)[1]
        assert abs(got[JAW] - source[JAW]) < 0.15, label
        assert abs(got[YAW] - source[YAW]) < 1.5, label


def test_round_trip_blink_without_glasses(align, shared_assets, detector, test_output):
    """On a face without glasses a rendered blink reads back as a closed lid.

    Measured (astronaut portrait): open -> (0.05, -0.01), closed -> (0.30, 0.48) for
    (left, right). Tolerance: each eye rises by more than 0.2.
    """
    task = align(shared_assets / "face_astronaut_eileen_collins.png")
    model = task.face.model
    latents_ = np.stack([model.source_latent] * 2).astype(np.float32)
    latents_[1, BLINKS] = 1.0
    frames = FaceRenderer(task.face).render(latents_)
    save_contact_sheet(list(frames), test_output / "face_model_blink_astronaut.png", columns=2, tile=384)
    read = model.encode(np.stack([detector.detect(frame)[0].landmarks for frame in frames]))
    assert (read[1, BLINKS] - read[0, BLINKS]).min() > 0.2, read[:, BLINKS]
