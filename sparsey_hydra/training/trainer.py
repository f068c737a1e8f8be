"""The training loop (sequential learning) and the evaluation loop (batched recognition)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sparsey_hydra.core.model import SparseyModel
from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import Metric, Phase
from sparsey_hydra.metrics.recorder import MetricBlock, MetricRecorder, PhaseStats, StepSink

StepRow = tuple[str, int, int, str, float | None]
#: frames handed to the model's learning loop at once (any value gives the same result)
TRAIN_CHUNK = 256
BlockSink = Callable[[MetricBlock], None]


class Trainer:
    """Runs learning then recognition, feeding every metric and the step sinks."""

    def __init__(self, model: SparseyModel, metrics: list[Metric], *, num_epochs: int = 1,
                 batch_size: int = 1, eval_batch_size: int = 16, progress: bool = True,
                 print_metric_values: bool = False, sinks: list[StepSink] | None = None,
                 block_sinks: list[BlockSink] | None = None,
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
        # Metrics run per frame; reductions, statistics and sinks per block of frames.
        self.recorder = MetricRecorder(
            model, metrics, sinks=self.sinks, block_sinks=block_sinks or [],
            print_values=self.console.print if print_metric_values else None)
        self.stats: dict[str, PhaseStats] = self.recorder.stats
        # A metric that is not `batchable` may read the weights, so it must run between each
        # frame's forward pass and its update: then learning goes frame by frame.
        self.per_frame = any(not m.batchable for m in metrics)

    # -- metric plumbing -----------------------------------------------------------------
    def _observe(self, phase: Phase, outs: list[LayerOutput], images: torch.Tensor) -> None:
        self.recorder.observe(phase, outs, images)

    # -- loops ---------------------------------------------------------------------------
    def _progress(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[fps]:>8.1f} frames/s"), TimeElapsedColumn(),
                        console=self.console, disable=not self.progress, transient=False)

    def train(self, images: torch.Tensor) -> None:
        """num_epochs passes of exactly sequential learning.

        Loader batches are grouped into chunks of about TRAIN_CHUNK frames for the model's
        learning loop; a chunk is learned frame by frame, so neither the loader's batch size
        nor the chunk changes a code or a weight (only how often the bar moves).
        """
        total = images.shape[0] * self.num_epochs
        stats = self.stats["train"]
        chunk = self.batch_size * max(1, -(-TRAIN_CHUNK // self.batch_size))
        start = time.perf_counter()
        with self._progress() as bar:
            task = bar.add_task("train", total=total, fps=0.0)
            for _ in range(self.num_epochs):
                for lo in range(0, images.shape[0], chunk):
                    frames = images[lo:lo + chunk]
                    if self.per_frame:
                        for i in range(frames.shape[0]):
                            frame = frames[i:i + 1]
                            self.model.learn_frame(
                                frame, lambda outs, f=frame: self._observe("train", outs, f))
                    else:
                        self._observe("train", self.model.learn_frames(frames), frames)
                    elapsed = time.perf_counter() - start
                    bar.update(task, advance=frames.shape[0],
                               fps=self._frames("train") / elapsed if elapsed else 0.0)
        self.recorder.flush()
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
                           fps=self._frames("eval") / elapsed if elapsed else 0.0)
        self.recorder.flush()
        stats.seconds = time.perf_counter() - start

    def _frames(self, phase: Phase) -> int:
        """Frames seen so far in this phase, including those still buffered."""
        return self.stats[phase].frames + self.recorder.buffered(phase)

    # -- summary -------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Per layer: fraction of MACs active, mean G, basis-set size; every metric's mean."""
        return self.recorder.summary()
