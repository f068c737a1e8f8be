"""The basis-set growth curve: does each layer keep inventing codes, or settle?"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from sparsey_hydra.plots.data import LayerGrid


def growth_figure(growth: torch.Tensor, layers: list[LayerGrid]) -> Figure:
    fig = Figure(figsize=(7, 4), dpi=110)
    ax = fig.add_subplot()
    frames = torch.arange(1, growth.shape[0] + 1).numpy()
    for ell in range(growth.shape[1]):
        ax.plot(frames, growth[:, ell].numpy(),
                label=f"layer {ell + 1} ({layers[ell].num_macs} MACs)")
    ax.set_xlabel("training frame")
    ax.set_ylabel("distinct codes (Σ over MACs of |basis set|)")
    ax.set_title("Basis-set size per layer during training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
