"""Per-MAC basis averages: the mean input each MAC saw while active, cropped to its projected
receptive field and laid out on the MAC grid — what each MAC "sees".

The tiles are composed into one mosaic image (one imshow, not one Axes per MAC), which keeps
drawing fast for layers with many MACs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

from sparsey_hydra.plots.data import LayerGrid

MAX_TILES = 256


def _crop(image: torch.Tensor, field: torch.Tensor) -> np.ndarray:
    ys, xs = torch.nonzero(field > 0, as_tuple=True)
    if ys.numel():
        image = image[int(ys.min()):int(ys.max()) + 1, int(xs.min()):int(xs.max()) + 1]
    return image.float().numpy()


def basis_average_figure(images: torch.Tensor, fields: torch.Tensor, grid: LayerGrid,
                         title: str) -> Figure:
    m = min(images.shape[0], MAX_TILES)
    cols = max(1, min(grid.cols, m))
    rows = math.ceil(m / cols)
    tiles = [_crop(images[i], fields[i]) for i in range(m)]
    th = max(t.shape[0] for t in tiles)
    tw = max(t.shape[1] for t in tiles)
    pad = 2
    mosaic = np.full((rows * (th + pad) + pad, cols * (tw + pad) + pad), np.nan)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        y0 = pad + r * (th + pad) + (th - t.shape[0]) // 2
        x0 = pad + c * (tw + pad) + (tw - t.shape[1]) // 2
        mosaic[y0:y0 + t.shape[0], x0:x0 + t.shape[1]] = t
    scale = min(0.9, 9.0 / max(cols, rows))
    fig = Figure(figsize=(scale * cols * (tw + pad) / (th + pad) + 1.4,
                          scale * rows + 0.9), dpi=110)
    ax = fig.add_subplot()
    shown = ax.imshow(np.ma.masked_invalid(mosaic), cmap="gray", vmin=0.0, vmax=1.0,
                      interpolation="nearest")
    shown.cmap.set_bad("white")
    if m <= 64:
        for i in range(m):
            r, c = divmod(i, cols)
            ax.text(pad + c * (tw + pad), pad + r * (th + pad), str(i), color="yellow",
                    fontsize=6, va="top")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(shown, ax=ax, shrink=0.8)
    more = f" (first {m} of {images.shape[0]} MACs)" if m < images.shape[0] else ""
    ax.set_title(title + more, fontsize=9)
    fig.tight_layout()
    return fig
