"""What the plots draw, independent of where it came from (a training run or an evaluation)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class LayerGrid:
    """A layer's MAC grid: MAC i sits at row i // cols, column i % cols."""

    num_macs: int
    rows: int
    cols: int
    layout: str = "rect"


@dataclass
class PlotData:
    layers: list[LayerGrid]
    #: F×L distinct codes per layer after each training frame
    growth: torch.Tensor | None = None
    #: phase → quantity title → per layer, one value per MAC (NaN: no value)
    mac_values: dict[str, dict[str, list[torch.Tensor]]] = field(default_factory=dict)
    #: phase → per layer, counts of G in equal bins over [0, 1]
    g_hist: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    #: per layer, M×H×W basis averages and the M×H×W projected receptive fields
    basis_average: list[torch.Tensor] | None = None
    fields: list[torch.Tensor] | None = None
