"""The training loop (sequential learning) and the evaluation loop (batched recognition)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sparsey_hydra.core.model import SparseyModel
from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import Metric, Phase
from sparsey_hydra.metrics.basis_set_size import BasisSetSize, BasisSetTracker

StepRow = tuple[str, int, int, str, float | None]
StepSink = Callable[[Phase, int, dict[str, list[float | None]]], None]


@dataclass
class PhaseStats:
    """Running per-layer sums for the end-of-run summary."""

    frames: int = 0
    seconds: float = 0.0
    active: list[float] = field(default_factory=list)
    g_sum: list[float] = field(default_factory=list)
    g_count: list[int] = field(default_factory=list)
    metric_sum: dict[str, list[float]] = field(default_factory=dict)
    metric_count: dict[str, list[int]] = field(default_factory=dict)

    def add(self, outs: list[LayerOutput]) -> None:
        if not self.active:
            n = len(outs)
            self.active, self.g_sum, self.g_count = [0.0] * n, [0.0] * n, [0] * n
        for ell, o in enumerate(outs):
            self.active[ell] += float(o.active.float().mean(1).sum())
            g = o.g[o.active]
            self.g_sum[ell] += float(g.sum())
            self.g_count[ell] += int(g.numel())
        self.frames += outs[0].active.shape[0]

    def add_metric(self, name: str, per_frame: list[list[float | None]]) -> None:
        sums = self.metric_sum.setdefault(name, [0.0] * len(per_frame))
        counts = self.metric_count.setdefault(name, [0] * len(per_frame))
        for ell, vals in enumerate(per_frame):
            for v in vals:
                if v is not None:
                    sums[ell] += v
                    counts[ell] += 1

    def metric_means(self) -> dict[str, list[float | None]]:
        return {k: [s / c if c else None for s, c in zip(v, self.metric_count[k], strict=True)]
                for k, v in self.metric_sum.items()}


class Trainer:
    """Runs learning then recognition, feeding every metric and the step sinks."""

    def __init__(self, model: SparseyModel, metrics: list[Metric], *, num_epochs: int = 1,
                 batch_size: int = 1, eval_batch_size: int = 16, progress: bool = True,
                 print_metric_values: bool = False, sinks: list[StepSink] | None = None,
                 console: Console | None = None) -> None:
        self.model = model
        self.metrics = metrics
        self.num_epochs = num_epochs
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.progress = progress
        self.print_metric_values = print_metric_values
        self.sinks = sinks or []
        self.console = console or Console(stderr=True)
        own = [m for m in metrics if isinstance(m, BasisSetSize)]
        self._basis = own[0].tracker if own else BasisSetTracker()
        self._basis_is_own = not own
        self.stats: dict[str, PhaseStats] = {"train": PhaseStats(), "eval": PhaseStats()}
        self._step = {"train": 0, "eval": 0}

    # -- metric plumbing -----------------------------------------------------------------
    def _observe(self, phase: Phase, outs: list[LayerOutput], images: torch.Tensor) -> None:
        self.stats[phase].add(outs)
        if phase == "train" and self._basis_is_own:
            self._basis.update(outs)
        b = images.shape[0]
        per_frame_values: dict[str, list[list[float | None]]] = {}
        for metric in self.metrics:
            values = metric.compute(outs, images, phase)
            if values is None:
                continue
            layer_vals = []
            for v in values:
                v = v.float()
                finite = ~torch.isnan(v)
                counts = finite.sum(1)
                means = torch.where(finite, v, torch.zeros_like(v)).sum(1) / counts.clamp(min=1)
                layer_vals.append([float(m) if int(c) else None
                                   for m, c in zip(means.tolist(), counts.tolist(), strict=True)])
            per_frame_values[metric.name] = layer_vals
            self.stats[phase].add_metric(metric.name, layer_vals)
        for i in range(b):
            step = self._step[phase]
            self._step[phase] += 1
            frame = {name: [lv[i] for lv in vals] for name, vals in per_frame_values.items()}
            for sink in self.sinks:
                sink(phase, step, frame)
            if self.print_metric_values:
                shown = ", ".join(f"{k}={[None if x is None else round(x, 4) for x in v]}"
                                  for k, v in frame.items())
                self.console.print(f"[{phase} {step}] {shown}")

    # -- loops ---------------------------------------------------------------------------
    def _progress(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[fps]:>8.1f} frames/s"), TimeElapsedColumn(),
                        console=self.console, disable=not self.progress, transient=False)

    def train(self, images: torch.Tensor) -> None:
        """num_epochs passes; each loader batch is learned item by item (sequential)."""
        total = images.shape[0] * self.num_epochs
        stats = self.stats["train"]
        start = time.perf_counter()
        with self._progress() as bar:
            task = bar.add_task("train", total=total, fps=0.0)
            for _ in range(self.num_epochs):
                for lo in range(0, images.shape[0], self.batch_size):
                    batch = images[lo:lo + self.batch_size]
                    for i in range(batch.shape[0]):
                        frame = batch[i:i + 1]
                        self.model.learn_frame(
                            frame, lambda outs, f=frame: self._observe("train", outs, f))
                    elapsed = time.perf_counter() - start
                    bar.update(task, advance=batch.shape[0],
                               fps=stats.frames / elapsed if elapsed else 0.0)
        stats.seconds = time.perf_counter() - start

    def evaluate(self, images: torch.Tensor) -> None:
        """Recognition over the eval data in batches; the model is never changed."""
        stats = self.stats["eval"]
        start = time.perf_counter()
        with self._progress() as bar:
            task = bar.add_task("eval ", total=images.shape[0], fps=0.0)
            for lo in range(0, images.shape[0], self.eval_batch_size):
                batch = images[lo:lo + self.eval_batch_size]
                outs = self.model.recognize(batch)
                self._observe("eval", outs, batch)
                elapsed = time.perf_counter() - start
                bar.update(task, advance=batch.shape[0],
                           fps=stats.frames / elapsed if elapsed else 0.0)
        stats.seconds = time.perf_counter() - start

    # -- summary -------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Per layer: fraction of MACs active, mean G, basis-set size; every metric's mean."""
        out: dict[str, Any] = {"layers": []}
        sizes = self._basis.sizes()
        n_layers = len(self.model.layers)
        for ell in range(n_layers):
            row: dict[str, Any] = {"layer": ell + 1, "num_macs": self.model.layers[ell].num_macs}
            for phase, st in self.stats.items():
                if st.frames:
                    row[f"{phase}_active_fraction"] = st.active[ell] / st.frames
                    row[f"{phase}_mean_g"] = (st.g_sum[ell] / st.g_count[ell]
                                              if st.g_count[ell] else None)
            if ell < len(sizes):
                row["basis_set_mean"] = float(sizes[ell].float().mean())
                row["basis_set_max"] = int(sizes[ell].max())
            else:
                row["basis_set_mean"], row["basis_set_max"] = 0.0, 0
            out["layers"].append(row)
        for phase, st in self.stats.items():
            out[phase] = {"frames": st.frames, "seconds": st.seconds,
                          "frames_per_second": st.frames / st.seconds if st.seconds else None,
                          "metrics": st.metric_means()}
        return out
