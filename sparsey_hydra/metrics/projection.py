"""Receptive fields as dense 0/1 matrices, and their projection down to the input pixels.

basis_average and feature_coverage both ask "which pixels does MAC m reach?". Reading each
layer's `rf_index` (padded with the dummy index M_lower) into a dense M×M_lower matrix turns
the recursion over layers into one matmul per layer for the whole layer and batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from sparsey_hydra.errors import SparseyConfigError

if TYPE_CHECKING:
    from sparsey_hydra.core.model import SparseyModel


def connectivity(model: SparseyModel) -> list[torch.Tensor]:
    """Per layer, C_ℓ[m, j] = 1 if lower MAC j is in 𝓡_ℓ(m) (float, M_ℓ×M_{ℓ−1})."""
    lower = model.input_shape[0] * model.input_shape[1]
    mats = []
    for ell, layer in enumerate(model.layers):
        index = getattr(layer, "rf_index", None)
        if index is None:
            raise SparseyConfigError(
                f"network.layers.{ell}: this layer has no `rf_index`, which basis_average and "
                "feature_coverage need; remove those metrics from trainer.metrics")
        mat = torch.zeros(layer.num_macs, lower + 1, device=index.device)
        mat.scatter_(1, index, 1.0)
        mats.append(mat[:, :lower])  # drop the padding column
        lower = layer.num_macs
    return mats


def projected_fields(model: SparseyModel) -> list[torch.Tensor]:
    """Π_ℓ (M_ℓ×P, float 0/1): Π_1 = C_1, Π_ℓ = [C_ℓ Π_{ℓ−1} ≥ 1], the union of the RFs below."""
    fields, below = [], None
    for c in connectivity(model):
        below = c if below is None else (c @ below > 0).float()
        fields.append(below)
    return fields
