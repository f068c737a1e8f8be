"""basis_set_size: |𝒞_m|, the number of distinct codes MAC m used over training (spec §5).

Codes are compared as exact winner tuples (`code_set`), not sparseypy's float hash, which
collides and loses exactness past 2²⁴ (B13). Defined in training only; eval gives None.
"""

from __future__ import annotations

from typing import Any

import torch

from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import Metric, MetricParams, Phase
from sparsey_hydra.metrics.code_set import CodeSet


class BasisSetTracker:
    """Per layer, the exact set of (MAC, code) pairs seen while learning and the count per MAC."""

    def __init__(self) -> None:
        self.sets: list[CodeSet] = []
        self.counts: list[torch.Tensor] = []

    def update(self, outs: list[LayerOutput]) -> list[torch.Tensor]:
        """Add a batch's codes in frame order; returns the running count after each frame, B×M."""
        return self.update_codes([o.codes for o in outs], [o.active for o in outs],
                                 [o.num_neurons for o in outs])

    def update_codes(self, codes: list[torch.Tensor], active: list[torch.Tensor],
                     neurons: list[int]) -> list[torch.Tensor]:
        """Same as `update`, from per-layer codes (F×M×Q), activity (F×M) and K."""
        running = []
        for ell, (code, act) in enumerate(zip(codes, active, strict=True)):
            b, m, q = code.shape
            if len(self.sets) <= ell:
                self.sets.append(CodeSet(m, q, neurons[ell], code.device))
                self.counts.append(torch.zeros(m, dtype=torch.long, device=code.device))
            flat = act.reshape(-1)
            macs = torch.arange(m, device=flat.device).repeat(b)[flat]
            fresh = torch.zeros(b * m, dtype=torch.long, device=flat.device)
            fresh[flat] = self.sets[ell].add(macs, code.reshape(-1, q)[flat],
                                             distinct=b == 1).long()
            steps = self.counts[ell] + fresh.reshape(b, m).cumsum(0)
            self.counts[ell] = steps[-1]
            running.append(steps)
        return running

    def sizes(self) -> list[torch.Tensor]:
        return list(self.counts)


class BasisSetSize(Metric):
    name = "basis_set_size"
    batchable = True
    phases = ("train",)

    def __init__(self, params: MetricParams) -> None:
        super().__init__(params)
        self.tracker = BasisSetTracker()

    def compute(self, outs: list[LayerOutput], images: torch.Tensor,
                phase: Phase) -> list[torch.Tensor] | None:
        if phase != "train":
            return None
        return [c.float() for c in self.tracker.update(outs)]

    def state_dict(self) -> dict[str, Any]:
        return {"sizes": [c.cpu() for c in self.tracker.sizes()]}
