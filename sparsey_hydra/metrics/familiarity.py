"""familiarity: the global familiarity G of each active MAC (spec §3 step 4), both phases.

G is what drives code selection (η grows with G), so it is the first thing to look at when
codes do or do not repeat. An inactive MAC has no G: NaN, excluded from every average.
"""

from __future__ import annotations

import torch

from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import Metric, Phase


class Familiarity(Metric):
    name = "familiarity"
    batchable = True

    def compute(self, outs: list[LayerOutput], images: torch.Tensor,
                phase: Phase) -> list[torch.Tensor]:
        return [torch.where(o.active, o.g.float(), torch.nan) for o in outs]
