"""The distribution of familiarity G: a trained model should be familiar with its training set,
and the eval histogram shows how much of that carries over to unseen inputs."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

COLOURS = {"train": "tab:blue", "eval": "tab:orange"}


def g_histogram_figure(hists: dict[str, list[torch.Tensor]]) -> Figure:
    n_layers = max(len(h) for h in hists.values())
    fig = Figure(figsize=(3.4 * n_layers, 3.2), dpi=110)
    for ell in range(n_layers):
        ax = fig.add_subplot(1, n_layers, ell + 1)
        for phase, per_layer in hists.items():
            counts = per_layer[ell].float()
            total = float(counts.sum())
            if total == 0:
                continue
            edges = torch.linspace(0, 1, counts.numel() + 1).numpy()
            ax.stairs((counts / total).numpy(), edges, fill=True, alpha=0.45,
                      color=COLOURS.get(phase), label=f"{phase} (n={int(total)})")
        ax.set_xlim(0, 1)
        ax.set_yscale("log")  # G piles up near 1 once inputs are familiar; keep the tail visible
        ax.set_xlabel("G")
        ax.set_title(f"layer {ell + 1}", fontsize=9)
        if ell == 0:
            ax.set_ylabel("share of active MAC-frames")
        ax.legend(fontsize=7)
    fig.suptitle("Familiarity G of active MACs, training vs evaluation", fontsize=10)
    fig.tight_layout()
    return fig
