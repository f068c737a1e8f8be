"""Draw one value per MAC on the layer's grid (squares, or hexagons with odd rows shifted)."""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection

from sparsey_hydra.plots.data import LayerGrid

ANNOTATE_MAX = 64  # write the value in each cell up to this many MACs


def grid_of(layer: object) -> LayerGrid:
    """A model layer's grid, read from its params (rows × cols) or its MAC positions."""
    m = int(layer.num_macs)
    params = getattr(layer, "params", None)
    layout = getattr(params, "layout", "rect")
    rows, cols = getattr(params, "grid_rows", None), getattr(params, "grid_cols", None)
    if not rows:
        pos = getattr(layer, "positions", None)
        if pos is not None and len(pos):
            cols = int((pos[:, 0] == pos[0, 0]).sum())  # the first row is full (row-major)
        else:
            cols = math.ceil(math.sqrt(m))
        rows = math.ceil(m / cols)
    return LayerGrid(m, int(rows), int(cols), layout)


def _cell(layout: str) -> np.ndarray:
    if layout == "hex":
        angles = np.deg2rad(np.arange(6) * 60 + 30)
        return 0.577 * np.stack([np.cos(angles), np.sin(angles)], 1)
    return np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])


def draw_grid(ax: Axes, values: torch.Tensor, grid: LayerGrid, title: str, cmap: str = "viridis",
              vmin: float | None = None, vmax: float | None = None) -> None:
    """One coloured cell per MAC (grey = no value), row 0 at the top, with a colour bar."""
    v = values.detach().float().cpu().numpy()
    idx = np.arange(grid.num_macs)
    row, col = idx // grid.cols, idx % grid.cols
    x = col + (0.5 * (row % 2) if grid.layout == "hex" else 0.0)
    centres = np.stack([x, row], 1).astype(float)
    coll = PolyCollection(centres[:, None, :] + _cell(grid.layout)[None], cmap=cmap,
                          edgecolors="white", linewidths=0.5)
    coll.set_array(np.ma.masked_invalid(v))
    coll.cmap.set_bad("lightgrey")
    finite = v[np.isfinite(v)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    coll.set_clim(lo, hi if hi > lo else lo + 1e-9)
    ax.add_collection(coll)
    extra = 0.5 if grid.layout == "hex" else 0.0
    ax.set_xlim(-0.6, grid.cols - 0.4 + extra)
    ax.set_ylim(grid.rows - 0.4, -0.6)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(coll, ax=ax, shrink=0.8)
    if grid.num_macs <= ANNOTATE_MAX:
        for (cx, cy), val in zip(centres, v, strict=True):
            if np.isfinite(val):
                shown = f"{val:.0f}" if float(val).is_integer() else f"{val:.2g}"  # counts
                ax.text(cx, cy, shown, ha="center", va="center", fontsize=6,
                        color="white" if val < (lo + hi) / 2 else "black")
