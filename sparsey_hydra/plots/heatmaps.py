"""Per-MAC quantities on the MAC grid: where a layer is active, familiar, and saturated."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from sparsey_hydra.plots.data import LayerGrid
from sparsey_hydra.plots.grid import draw_grid

#: quantity → colour map and fixed range (None: from the data)
STYLES: dict[str, tuple[str, float | None, float | None]] = {
    "activation rate": ("viridis", 0.0, 1.0),
    "mean G": ("magma", 0.0, 1.0),
    "basis-set size": ("cividis", 0.0, None),
    "feature coverage": ("viridis", 0.0, 1.0),
}


def heatmap_figure(quantities: dict[str, torch.Tensor], grid: LayerGrid,
                   title: str) -> Figure:
    n = len(quantities)
    cell = max(2.6, min(4.5, 0.45 * grid.cols + 1.2))
    fig = Figure(figsize=(cell * n + 0.6, cell * max(grid.rows / grid.cols, 0.35) + 1.0),
                 dpi=110)
    for i, (name, values) in enumerate(quantities.items()):
        ax = fig.add_subplot(1, n, i + 1)
        cmap, lo, hi = STYLES.get(name, ("viridis", None, None))
        draw_grid(ax, values, grid, name, cmap, lo, hi)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
