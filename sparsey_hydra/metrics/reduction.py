"""Reductions of per-MAC metric values (spec §5) and the `best_value` comparison.

NaN marks an undefined value (an inactive MAC's G, a phase the metric does not cover). Every
reduction skips NaN, so undefined values never become a fake 0 in an average; a reduction over
nothing defined is NaN again.
"""

from __future__ import annotations

import torch

from sparsey_hydra.metrics.base import BestValue, Reduction

SUMMING = ("layerwise_sum", "sum")
TOP_ONLY = ("highest_layer", "highest_layer_mean")


def nan_mean(v: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean over `dim` of the defined (non-NaN) entries; NaN where none is defined."""
    ok = ~torch.isnan(v)
    total = torch.where(ok, v, torch.zeros_like(v)).sum(dim)
    count = ok.sum(dim)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, torch.nan))


def nan_sum(v: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum over `dim` of the defined entries; NaN where none is defined."""
    ok = ~torch.isnan(v)
    total = torch.where(ok, v, torch.zeros_like(v)).sum(dim)
    return torch.where(ok.any(dim), total, torch.full_like(total, torch.nan))


def layer_values(values: list[torch.Tensor], reduction: Reduction) -> torch.Tensor:
    """One value per frame and layer (B×L): the sum over MACs for the summing reductions,
    otherwise the mean over MACs."""
    agg = nan_sum if reduction in SUMMING else nan_mean
    return torch.stack([agg(v.float(), 1) for v in values], dim=1)


def model_values(per_layer: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """One value per frame (B) from the B×L layer values.

    Summing reductions give the total over layers; the top-layer reductions the top layer;
    the others avg(X), the mean over layers of each layer's mean (what `best_value` compares).
    """
    if reduction in SUMMING:
        return nan_sum(per_layer, 1)
    if reduction in TOP_ONLY:
        return per_layer[:, -1]
    return nan_mean(per_layer, 1)


def logged_layers(reduction: Reduction, num_layers: int) -> range:
    """The layers (0-based) whose layer and MAC values are logged: the top one only for the
    `highest_layer*` reductions."""
    return range(num_layers - 1, num_layers) if reduction in TOP_ONLY else range(num_layers)


def reduce(values: list[torch.Tensor], reduction: Reduction) -> list[torch.Tensor] | torch.Tensor:
    """sparseypy's reduced shapes: none → the per-layer B×M list; layerwise_* → L×B×1;
    mean/sum/highest_layer_mean → B; highest_layer → the top layer's B×M."""
    if reduction == "none":
        return values
    if reduction == "highest_layer":
        return values[-1]
    per_layer = layer_values(values, reduction)
    if reduction in ("layerwise_mean", "layerwise_sum"):
        return per_layer.T.unsqueeze(-1)
    if reduction == "sum":
        return nan_sum(torch.stack([nan_sum(v.float(), 1) for v in values], 1), 1)
    return model_values(per_layer, reduction)


def avg_by_layerwise_mean(values: list[torch.Tensor]) -> float | None:
    """avg(X): the mean over layers of each layer's mean over frames and MACs (NaN skipped)."""
    means = torch.stack([nan_mean(v.float().reshape(-1), 0) for v in values])
    out = nan_mean(means, 0)
    return None if bool(torch.isnan(out)) else float(out)


def is_better(candidate: float | None, incumbent: float | None, best_value: BestValue) -> bool:
    """Whether `candidate` beats `incumbent` under `best_value`; an undefined value never wins."""
    if candidate is None:
        return False
    if incumbent is None:
        return True
    if best_value == "max_by_layerwise_mean":
        return candidate > incumbent
    return candidate < incumbent
