"""num_activations: 1 where a MAC passed the activation gate, else 0 (spec §5).

With `reduction: layerwise_sum` it is the number of active MACs per layer; fewer active MACs
for the same coverage is sparser, hence the default `best_value: min_by_layerwise_mean`.
"""

from __future__ import annotations

import torch

from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import BestValue, Metric, MetricParams, Phase


class NumActivationsParams(MetricParams):
    name: str = "num_activations"
    best_value: BestValue = "min_by_layerwise_mean"


class NumActivations(Metric):
    name = "num_activations"
    batchable = True

    def compute(self, outs: list[LayerOutput], images: torch.Tensor,
                phase: Phase) -> list[torch.Tensor]:
        return [o.active.float() for o in outs]
