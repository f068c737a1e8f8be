"""Gather a run's plot data from its metric recorder (and, for an evaluation, the training
record saved beside the model)."""

from __future__ import annotations

from typing import Any

import torch

from sparsey_hydra.metrics.basis_average import BasisAverage
from sparsey_hydra.metrics.recorder import MetricRecorder
from sparsey_hydra.plots.data import PlotData
from sparsey_hydra.plots.grid import grid_of


def collect(recorder: MetricRecorder, training: dict[str, Any] | None = None) -> PlotData:
    """Everything `recorder` measured; `training` (a saved training record) fills in the
    training-only pieces when the recorder saw no training."""
    recorder.flush()
    data = PlotData([grid_of(layer) for layer in recorder.model.layers])
    trained = recorder.stats["train"].frames > 0
    if trained:
        data.growth = recorder.growth_curve()
    elif training is not None:
        data.growth = training.get("growth")
    sizes = [s.float().cpu() for s in recorder.basis.sizes()] if trained else (
        [s.float() for s in training.get("basis_set_sizes", [])] if training else [])
    for phase, st in recorder.stats.items():
        if not st.frames:
            continue
        q: dict[str, list[torch.Tensor]] = {
            "activation rate": [a / st.frames for a in st.active],
            "mean G": [torch.where(c > 0, s / c.clamp(min=1), torch.nan)
                       for s, c in zip(st.g_sum, st.g_count, strict=True)],
        }
        if sizes:
            q["basis-set size"] = sizes
        for m in recorder.metrics:
            if m.name == "feature_coverage":
                cov = st.mac_means(m.name)
                if cov is not None:
                    q["feature coverage"] = cov
        data.mac_values[phase] = q
        if st.g_hist:
            data.g_hist[phase] = [h.clone() for h in st.g_hist]
    if "train" not in data.g_hist and training is not None and training.get("train_g_hist"):
        data.g_hist = {"train": training["train_g_hist"], **data.g_hist}
    averages = [m for m in recorder.metrics if isinstance(m, BasisAverage)]
    if averages and trained:
        state = averages[0].state_dict()
        data.basis_average, data.fields = state["averages"], state["fields"]
    elif training is not None:
        for st in training.get("metrics", {}).values():
            if "averages" in st:
                data.basis_average, data.fields = st["averages"], st["fields"]
    return data
