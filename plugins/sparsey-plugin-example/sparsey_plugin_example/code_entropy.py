"""Metric `code_entropy`: how evenly each MAC uses its cells, so far in the phase.

For every CM the winner counts over all frames seen so far give a distribution over its K
cells; its Shannon entropy (bits), averaged over the MAC's CMs, is the value. 0 means the MAC
always answers with one code; log2 K means every cell wins equally often.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import Metric, MetricParams, Phase


class CodeEntropyParams(MetricParams):
    """`trainer.metrics` entry of `code_entropy` (plus the common metric keys)."""

    name: str = "code_entropy"
    normalize: bool = False  # divide by log2 K, giving values in [0, 1]


class CodeEntropy(Metric):
    name = "code_entropy"
    # Reads only codes and its own counts, frame by frame in order: the trainer may hand it
    # a block of frames after the fact and keep its fast learning loop.
    batchable = True

    def __init__(self, params: CodeEntropyParams) -> None:
        super().__init__(params)
        self.counts: dict[str, list[torch.Tensor]] = {}

    def compute(self, outs: list[LayerOutput], images: torch.Tensor,
                phase: Phase) -> list[torch.Tensor]:
        counts = self.counts.setdefault(phase, [])
        result = []
        for ell, out in enumerate(outs):
            b, m, q = out.codes.shape
            k = out.num_neurons
            if len(counts) <= ell:
                counts.append(torch.zeros(m, q, k, device=out.codes.device))
            c = counts[ell]
            values = torch.full((b, m), float("nan"), device=c.device)
            for i in range(b):  # frame by frame, so frame i sees exactly frames ≤ i
                act = out.active[i]
                c[act] += F.one_hot(out.codes[i, act], k).to(c.dtype)
                total = c.sum(-1, keepdim=True)
                p = c / total.clamp(min=1)
                h = -(p * torch.log2(p.clamp(min=1e-30))).sum(-1).mean(-1)
                if self.params.normalize and k > 1:
                    h = h / math.log2(k)
                values[i] = torch.where(total[:, 0, 0] > 0, h, values[i])
            result.append(values)
        return result
