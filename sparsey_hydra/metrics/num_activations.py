"""num_activations: which MACs passed the activation gate (1) or not (0)."""

from __future__ import annotations

import torch

from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import Metric, MetricParams, Phase


class NumActivationsParams(MetricParams):
    name: str = "num_activations"
    best_value: str = "min_by_layerwise_mean"


class NumActivations(Metric):
    name = "num_activations"

    def compute(self, outs: list[LayerOutput], images: torch.Tensor,
                phase: Phase) -> list[torch.Tensor]:
        return [o.active.float() for o in outs]
