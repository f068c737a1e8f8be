"""familiarity: G per active MAC per frame (NaN for inactive MACs, which get no G)."""

from __future__ import annotations

import torch

from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import Metric, Phase


class Familiarity(Metric):
    name = "familiarity"

    def compute(self, outs: list[LayerOutput], images: torch.Tensor,
                phase: Phase) -> list[torch.Tensor]:
        return [o.g.float() for o in outs]
