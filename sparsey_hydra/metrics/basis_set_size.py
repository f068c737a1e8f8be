"""basis_set_size: distinct codes per MAC over training, as exact code tuples (not hashes, B13)."""

from __future__ import annotations

import numpy as np
import torch

from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import Metric, Phase


class BasisSetTracker:
    """Per layer, the set of (MAC, winners…) tuples seen while learning, and counts per MAC."""

    def __init__(self) -> None:
        self.seen: list[set[bytes]] = []
        self.counts: list[torch.Tensor] = []

    def update(self, outs: list[LayerOutput]) -> None:
        for ell, out in enumerate(outs):
            if len(self.seen) <= ell:
                self.seen.append(set())
                self.counts.append(torch.zeros(out.active.shape[1], dtype=torch.long))
            seen, counts = self.seen[ell], self.counts[ell]
            for b in range(out.active.shape[0]):
                macs = torch.nonzero(out.active[b]).flatten()
                if macs.numel() == 0:
                    continue
                rows = torch.cat([macs[:, None], out.codes[b, macs]], dim=1).cpu().numpy()
                rows = np.ascontiguousarray(rows.astype(np.int64))
                keys = rows.view(f"V{rows.shape[1] * 8}").ravel().tolist()
                fresh = np.fromiter((k not in seen for k in keys), dtype=bool, count=len(keys))
                if fresh.any():
                    seen.update(keys)
                    counts[macs.cpu()[torch.from_numpy(fresh)]] += 1

    def sizes(self) -> list[torch.Tensor]:
        return list(self.counts)


class BasisSetSize(Metric):
    name = "basis_set_size"
    phases = ("train",)

    def __init__(self, params) -> None:
        super().__init__(params)
        self.tracker = BasisSetTracker()

    def compute(self, outs: list[LayerOutput], images: torch.Tensor,
                phase: Phase) -> list[torch.Tensor] | None:
        if phase != "train":
            return None
        self.tracker.update(outs)
        b = outs[0].active.shape[0]
        return [c.float().expand(b, -1).clone() for c in self.tracker.sizes()]
