"""Batched thin-plate splines: a dense 2D map from sparse point correspondences.

Kernel centres sit at the target points (the classic interpolating spline). Centres fixed
at the source points would let the per-frame work shrink to one matrix product, but they
make the system ill-conditioned as soon as targets move further than the spacing of the
controls (an opening mouth, a closing lid): the flow rings wildly. Measured and dropped.
What does stay fixed over a clip is cached instead: the query grid, and the kernel between
it and any controls that never move (the decoder's border anchors), see :class:`ThinPlateGrid`.
"""

from __future__ import annotations

import torch


def thin_plate_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """U(|a_i - b_j|) with U(r) = r^2 log r, for (..., P, 2) and (..., Q, 2) -> (..., P, Q)."""
    # Kept on xlogy although _log_kernel is faster: the fit's system is nearly singular where
    # controls coincide, and last-bit differences once moved closed-mouth frames by up to 67
    # grey levels (share_values_of_coincident now keeps such pairs consistent). The fit kernel
    # is (N, N), a small share of the work; the (Q, N) evaluation uses _log_kernel.
    d2 = torch.cdist(a, b).square_()
    return torch.xlogy(d2, d2).mul_(0.5)


def with_affine(points: torch.Tensor) -> torch.Tensor:
    """[1, x, y] rows for (..., P, 2) points -> (..., P, 3)."""
    return torch.cat([torch.ones_like(points[..., :1]), points], -1)


# Paired controls closer than this (normalised units, ~1.5 px of a 512 crop) share their value.
COINCIDENT = 0.003


def share_values_of_coincident(points: torch.Tensor, values: torch.Tensor, pairs: torch.Tensor,
                               radius: float = COINCIDENT) -> torch.Tensor:
    """Values (B, N, C) where each pair of controls (B, N, 2) that meets blends to its mean.

    Closed lips put two controls on one spot (an upper and a lower inner-lip point) that ask
    for different values (the photo's parted lips): no spline passes through both, the fit
    answers with huge opposite weights, and their rounding error shifted the whole warp from
    frame to frame (the head jumped with every lip press). Each pair moves toward its mean by
    max(0, 1 - d / radius) / 2, so values change continuously as a pair closes and pairs
    further apart keep their own values.

    Args:
        pairs: (P, 2) long indices of controls that can meet (e.g. inner-lip partners).
    """
    if pairs.numel() == 0:
        return values
    a, b = pairs[:, 0], pairs[:, 1]
    distance = (points[:, a] - points[:, b]).norm(dim=-1, keepdim=True)                # (B, P, 1)
    share = 0.5 * (1.0 - distance / radius).clamp(min=0.0)
    if not bool((share > 0).any()):
        return values
    values = values.clone()
    va, vb = values[:, a], values[:, b]
    values[:, a] = va + share * (vb - va)
    values[:, b] = vb + share * (va - vb)
    return values


def fit_thin_plate(points: torch.Tensor, values: torch.Tensor, regularization: float = 1e-6,
                   pairs: torch.Tensor | None = None) -> torch.Tensor:
    """Fit one spline per batch item through f(points) = values.

    Args:
        points: (B, N, 2) control positions, normalised to about [0, 1].
        values: (B, N, C).
        regularization: smoothing on the kernel diagonal; makes coincident controls
            (closed lips, closed lids) well posed by averaging them.
        pairs: (P, 2) indices of controls that can meet; see :func:`share_values_of_coincident`.

    Returns:
        (B, N + 3, C) coefficients: N kernel weights, then the affine part.
    """
    batch, n, _ = points.shape
    if pairs is not None:
        values = share_values_of_coincident(points, values, pairs)
    kernel = thin_plate_kernel(points, points)
    kernel.diagonal(dim1=1, dim2=2).add_(regularization)
    affine = with_affine(points)
    zeros = points.new_zeros(batch, 3, 3)
    system = torch.cat([torch.cat([kernel, affine], 2), torch.cat([affine.transpose(1, 2), zeros], 2)], 1)
    rhs = torch.cat([values, values.new_zeros(batch, 3, values.shape[-1])], 1)
    # Solved in float64: closed lips and lids make near-coincident controls, and on a regularised
    # 1e-6 diagonal float32's error moved the whole warp by a fraction of a pixel, differently
    # with the frames sharing the batch (a frame changed with how its render was chunked).
    return torch.linalg.solve(system.double(), rhs.double()).to(points.dtype)


def _log_kernel(d2: torch.Tensor) -> torch.Tensor:
    """2 U = d2 log d2 from squared distances, in place; 0 at d2 = 0.

    ``torch.xlogy`` gives the same values but is ~4x slower than a clamped log and a
    multiply on CPU (it was a quarter of the decoder's time). The clamp only matters at
    d2 = 0, where 0 * log(tiny) is still 0.
    """
    return d2.clamp_min(1e-30).log_().mul_(d2)


class ThinPlateGrid:
    """Evaluates thin-plate splines on one fixed query grid, many times (every batch of a clip).

    Per clip, not per frame: the query's affine rows and the kernel between the query and
    the ``fixed`` trailing controls (those that never move, e.g. border anchors) are computed
    once. Per frame only the kernel to the moving controls is built, and the spline's 1/2 is
    applied to the (N, C) weights rather than to the (Q, N) kernel.

    Args:
        query: (Q, 2) evaluation positions, same units as the controls.
        fixed: (F, 2) controls that are the last F controls of every fit, or None.
    """

    def __init__(self, query: torch.Tensor, fixed: torch.Tensor | None = None):
        self.query = query
        self.affine = with_affine(query)                                                # (Q, 3)
        self.num_fixed = 0 if fixed is None else fixed.shape[0]
        self.fixed_kernel = None
        if fixed is not None:
            self.fixed_kernel = _log_kernel(torch.cdist(query, fixed).square_())        # (Q, F)

    def __call__(self, points: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        """Fitted splines (controls (B, N, 2), coefficients (B, N + 3, C)) at the grid -> (B, Q, C).

        The last ``num_fixed`` controls must equal the ``fixed`` points given at construction.
        """
        n = points.shape[1]
        moving = n - self.num_fixed
        half_weights = coefficients[:, :n] * 0.5                                        # (B, N, C)
        # cdist (a matrix product inside) then squaring measured faster than broadcasting
        # the coordinate differences, and gives the same values the fit used before.
        d2 = torch.cdist(self.query.expand(points.shape[0], -1, -1), points[:, :moving]).square_()  # (B, Q, M)
        out = torch.baddbmm(self.affine @ coefficients[:, n:], _log_kernel(d2), half_weights[:, :moving])
        if self.fixed_kernel is not None:
            out = out.add_(self.fixed_kernel @ half_weights[:, moving:])
        return out
