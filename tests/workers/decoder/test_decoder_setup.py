"""The decoder's per-frame set-up shortcuts change nothing: the cached region geometry and the
shifted-sum blur give what the straightforward versions give."""

import numpy as np
import torch
import torch.nn.functional as F

from workers.decoder.mouth import gaussian_blur
from workers.decoder.region import region_grid


def _conv_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """The depthwise-convolution blur the decoder used before (reference)."""
    radius = int(np.ceil(2.5 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma).square())
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    out = F.pad(images, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def test_shifted_sum_blur_matches_the_convolution():
    images = torch.as_tensor(np.random.default_rng(3).random((2, 3, 37, 53)), dtype=torch.float32)
    for sigma in (0.5, 1.3, 2.7):
        got = gaussian_blur(images, sigma)
        assert got.shape == images.shape
        assert float((got - _conv_blur(images, sigma)).abs().max()) < 1e-5
    assert gaussian_blur(images, 0.2) is images


def test_region_grid_is_built_once_per_box_and_fits_it():
    first = region_grid(512, (100, 90, 400, 420), 10, "cpu")
    assert region_grid(512, (100, 90, 400, 420), 10, "cpu") is first
    other = region_grid(512, (101, 90, 400, 420), 10, "cpu")
    assert other is not first
    gh, gw = first.shape
    assert first.points.shape == (gh * gw, 2) and first.pixels.shape == (330, 300, 2)
    assert float(first.anchors[:, 0].min()) == 100 and float(first.anchors[:, 1].max()) == 420
    # the taper is zero on the region's border and whole inside
    assert float(first.taper.amin()) == 0.0 and float(first.taper.amax()) == 1.0



def test_the_teeth_plates_grain_is_the_seeded_normal_draw():
    # The plate's grain scales one standard-normal draw per crop size (cached) instead of drawing
    # afresh each frame: value for value the draw it replaced.
    from workers.decoder.teeth import _unit_noise

    for grain in (0.004, 0.0213, 0.09):
        expected = np.random.default_rng(0).normal(0.0, grain, (64, 48, 3)).astype(np.float32)
        assert np.array_equal((grain * _unit_noise(0, (64, 48, 3))).astype(np.float32), expected)
