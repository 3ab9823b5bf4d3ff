"""The decoder's fixed geometry for one face region: flow grid, taper, upsampling, anchors.

It depends only on the crop side, the region box (integer crop pixels), the grid step and
the device, not on the face. A clip's renderer builds it once; the dubbing decoder builds a
renderer per frame (each frame is its own source), and the aligned crops of a take put the
region on the same few boxes, so it is cached here (an LRU of a few boxes) instead of rebuilt
per frame. The tensors are shared and must be treated as read-only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from workers.decoder.shapes import smoothstep
from workers.decoder.spline import ThinPlateGrid

REGION_CACHE_SIZE = 64


@dataclass(frozen=True)
class RegionGrid:
    """Read-only geometry of one region (x0, y0, x1, y1) of an S x S crop.

    Attributes:
        anchors: (32, 2) fixed controls on the region's border, crop pixels.
        shape: (gh, gw) nodes of the coarse flow grid.
        points: (gh * gw, 2) the grid nodes, crop pixels.
        taper: (1, 1, gh, gw) flow weight, zero on the region's border.
        pixels: (h, w, 2) pixel centres of the region, crop pixels.
        sample_grid: (h, w, 2) the same in ``grid_sample`` units.
        flow_grid: the thin-plate evaluator on the grid with the anchors' kernel precomputed.
        upsample_y: (h, gh) and upsample_x: (gw, w) bilinear upsampling of the coarse flow.
    """

    anchors: torch.Tensor
    shape: tuple[int, int]
    points: torch.Tensor
    taper: torch.Tensor
    pixels: torch.Tensor
    sample_grid: torch.Tensor
    flow_grid: ThinPlateGrid
    upsample_y: torch.Tensor
    upsample_x: torch.Tensor


@functools.lru_cache(maxsize=REGION_CACHE_SIZE)
def region_grid(size: int, region: tuple[int, int, int, int], grid_step: int, device: str,
                dtype: torch.dtype = torch.float32) -> RegionGrid:
    """The :class:`RegionGrid` of ``region`` in an S x S crop (cached; see the module docstring)."""
    x0, y0, x1, y1 = region
    device = torch.device(device)
    along_x = torch.linspace(x0, x1, 9, device=device)
    along_y = torch.linspace(y0, y1, 9, device=device)[1:-1]
    anchors = torch.cat([
        torch.stack([along_x, torch.full_like(along_x, y0)], -1),
        torch.stack([along_x, torch.full_like(along_x, y1)], -1),
        torch.stack([torch.full_like(along_y, x0), along_y], -1),
        torch.stack([torch.full_like(along_y, x1), along_y], -1),
    ]).to(dtype)
    gx = torch.arange(x0, x1, grid_step, device=device, dtype=dtype)
    gy = torch.arange(y0, y1, grid_step, device=device, dtype=dtype)
    gx = torch.cat([gx, torch.tensor([float(x1)], device=device)]) if float(gx[-1]) < x1 else gx
    gy = torch.cat([gy, torch.tensor([float(y1)], device=device)]) if float(gy[-1]) < y1 else gy
    shape = (len(gy), len(gx))
    points = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).reshape(-1, 2)
    # Taper the flow to exactly zero over the outer eighth of the region: no seam.
    edge = torch.minimum(
        torch.minimum(points[:, 0] - x0, x1 - points[:, 0]) / max(1, x1 - x0),
        torch.minimum(points[:, 1] - y0, y1 - points[:, 1]) / max(1, y1 - y0))
    taper = smoothstep(0.0, 0.125, edge).reshape(1, 1, *shape)
    px = torch.arange(x0, x1, device=device, dtype=dtype) + 0.5
    py = torch.arange(y0, y1, device=device, dtype=dtype) + 0.5
    pixels = torch.stack(torch.meshgrid(px, py, indexing="xy"), -1)                      # (h, w, 2)
    # Bilinear upsampling of the coarse flow as two small matrix products, (h, gh) and
    # (gw, w): ~3x faster on CPU than F.interpolate. The weights are the ones
    # F.interpolate(align_corners=True) used, nodes spread evenly from the first to the
    # last pixel centre, so frames stay as they were. (The nodes are really at gx / gy,
    # up to ~2 px from there; interpolating from those positions instead lowers the
    # lip-landmark error on rendered frames from 2.3 to 1.7-2.1 px but shifts texture by
    # ~1 px, PSNR ~35 dB against before: a quality change to make on its own.)
    nodes_y = torch.linspace(float(py[0]), float(py[-1]), len(gy), device=device, dtype=dtype)
    nodes_x = torch.linspace(float(px[0]), float(px[-1]), len(gx), device=device, dtype=dtype)
    upsample_y = linear_interpolation_matrix(nodes_y, py)
    upsample_x = linear_interpolation_matrix(nodes_x, px).T.contiguous()
    # The grid and the border anchors (the last controls of every fit) never move: their
    # part of the spline kernel is computed once here, not per frame.
    return RegionGrid(anchors=anchors, shape=shape, points=points, taper=taper, pixels=pixels,
                      sample_grid=pixels / size * 2.0 - 1.0,
                      flow_grid=ThinPlateGrid(points / size, anchors / size),
                      upsample_y=upsample_y, upsample_x=upsample_x)


def linear_interpolation_matrix(nodes: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Weights (P, K) of 1-D linear interpolation from values at ``nodes`` (K,), increasing, to
    ``positions`` (P,); held constant beyond the end nodes. Same units for both (pixels)."""
    right = torch.searchsorted(nodes, positions.contiguous()).clamp(1, len(nodes) - 1)  # (P,)
    left = right - 1
    t = ((positions - nodes[left]) / (nodes[right] - nodes[left])).clamp(0.0, 1.0)
    weights = torch.zeros(len(positions), len(nodes), dtype=positions.dtype, device=positions.device)
    rows = torch.arange(len(positions), device=positions.device)
    weights[rows, left] = 1.0 - t
    weights[rows, right] += t
    return weights
