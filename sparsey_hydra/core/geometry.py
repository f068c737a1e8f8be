"""MAC grids in the unit square and Euclidean receptive fields (spec §1)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

RF_TOLERANCE = 1e-9


@dataclass(frozen=True)
class LayerGeometry:
    """What an upper layer needs to know about the layer below it."""

    positions: torch.Tensor  # M×2 (y, x) in the unit square
    num_macs: int
    num_cms: int
    num_neurons: int

    @property
    def cells_per_mac(self) -> int:
        return self.num_cms * self.num_neurons


def autosize(num_macs: int) -> tuple[int, int]:
    """The factor pair of M closest to √M (rows ≤ cols); a prime M gives 1×M."""
    rows = int(math.isqrt(num_macs))
    while num_macs % rows:
        rows -= 1
    return rows, num_macs // rows


def grid_positions(num_macs: int, rows: int, cols: int, layout: str = "rect") -> torch.Tensor:
    """(y, x) of each MAC, filled row-major; hex shifts odd rows by half a column spacing."""
    if rows * cols < num_macs:
        raise ValueError(f"a {rows}×{cols} grid cannot hold {num_macs} MACs")
    idx = torch.arange(num_macs, dtype=torch.float64)
    row = torch.div(idx, cols, rounding_mode="floor")
    col = idx - row * cols
    y = row / (rows - 1) if rows > 1 else torch.full_like(idx, 0.5)
    x = col / (cols - 1) if cols > 1 else torch.full_like(idx, 0.5)
    if layout == "hex" and cols > 1:
        x = x + 0.5 * torch.remainder(row, 2) / (cols - 1)
    elif layout not in ("rect", "hex"):
        raise ValueError(f"unknown layout '{layout}'; use rect or hex")
    return torch.stack([y, x], dim=1)


def input_geometry(height: int, width: int) -> LayerGeometry:
    """The input image as a layer of H·W one-cell MACs on a rect grid (row-major)."""
    pos = grid_positions(height * width, height, width, "rect")
    return LayerGeometry(pos, height * width, 1, 1)


def receptive_fields(
    upper: torch.Tensor, lower: torch.Tensor, radius: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive Euclidean RFs, ascending, padded to R_max with the dummy index M_lower.

    Returns (rf_index M×R_max long, rf_size M long). An empty RF is a configuration error.
    """
    dist = torch.cdist(upper.to(torch.float64), lower.to(torch.float64))
    inside = dist <= radius + RF_TOLERANCE
    sizes = inside.sum(dim=1)
    if bool((sizes == 0).any()):
        empty = int(torch.nonzero(sizes == 0)[0])
        raise ValueError(
            f"MAC {empty} has an empty receptive field at radius {radius}; "
            "increase receptive_field_radius"
        )
    r_max = int(sizes.max())
    m_lower = lower.shape[0]
    # Stable sort puts the inside indices first, in ascending order.
    order = torch.argsort((~inside).to(torch.int8), dim=1, stable=True)[:, :r_max]
    slot = torch.arange(r_max).expand(upper.shape[0], r_max)
    rf_index = torch.where(slot < sizes[:, None], order, torch.full_like(order, m_lower))
    return rf_index, sizes
