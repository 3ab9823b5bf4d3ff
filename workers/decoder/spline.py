"""Batched thin-plate splines: a dense 2D map from sparse point correspondences.

Kernel centres sit at the target points (the classic interpolating spline). Centres fixed
at the source points would let the per-frame work shrink to one matrix product, but they
make the system ill-conditioned as soon as targets move further than the spacing of the
controls (an opening mouth, a closing lid): the flow rings wildly. Measured and dropped.
"""

from __future__ import annotations

import torch


def thin_plate_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """U(|a_i - b_j|) with U(r) = r^2 log r, for (..., P, 2) and (..., Q, 2) -> (..., P, Q)."""
    d2 = torch.cdist(a, b).square_()
    return torch.xlogy(d2, d2).mul_(0.5)


def with_affine(points: torch.Tensor) -> torch.Tensor:
    """[1, x, y] rows for (..., P, 2) points -> (..., P, 3)."""
    return torch.cat([torch.ones_like(points[..., :1]), points], -1)


def fit_thin_plate(points: torch.Tensor, values: torch.Tensor, regularization: float = 1e-6) -> torch.Tensor:
    """Fit one spline per batch item through f(points) = values.

    Args:
        points: (B, N, 2) control positions, normalised to about [0, 1].
        values: (B, N, C).
        regularization: smoothing on the kernel diagonal; makes coincident controls
            (closed lips, closed lids) well posed by averaging them.

    Returns:
        (B, N + 3, C) coefficients: N kernel weights, then the affine part.
    """
    batch, n, _ = points.shape
    kernel = thin_plate_kernel(points, points)
    kernel.diagonal(dim1=1, dim2=2).add_(regularization)
    affine = with_affine(points)
    zeros = points.new_zeros(batch, 3, 3)
    system = torch.cat([torch.cat([kernel, affine], 2), torch.cat([affine.transpose(1, 2), zeros], 2)], 1)
    rhs = torch.cat([values, values.new_zeros(batch, 3, values.shape[-1])], 1)
    return torch.linalg.solve(system, rhs)


def eval_thin_plate(points: torch.Tensor, coefficients: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Evaluate fitted splines (controls (B, N, 2)) at query positions (Q, 2) -> (B, Q, C)."""
    kernel = thin_plate_kernel(query.expand(points.shape[0], -1, -1), points)          # (B, Q, N)
    n = points.shape[1]
    return kernel @ coefficients[:, :n] + with_affine(query) @ coefficients[:, n:]
