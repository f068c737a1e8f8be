"""Per-step metric values → the stores and W&B, each at its own `system.resolution`."""

from __future__ import annotations

from typing import Any

from sparsey_hydra.metrics.recorder import MetricBlock, Resolution, StepRow

FLUSH_ROWS = 20_000


class StepLogger:
    """A trainer block sink: rows for the stores, one W&B log call per frame.

    W&B needs one increasing step axis, so eval steps are logged after the training ones
    (`eval_offset`); the stores keep each phase's own step numbers.
    """

    def __init__(self, store: Any, experiment_ids: Any, tracker: Any,
                 store_resolution: Resolution, wandb_resolution: Resolution) -> None:
        self.store = store
        self.ids = experiment_ids
        self.tracker = tracker
        self.store_resolution = store_resolution
        self.wandb_resolution = wandb_resolution
        self.eval_offset = 0
        self.rows: list[StepRow] = []

    def __call__(self, block: MetricBlock) -> None:
        self.rows.extend(block.rows(self.store_resolution))
        if len(self.rows) >= FLUSH_ROWS:
            self.flush()
        if getattr(self.tracker, "enabled", False):
            offset = self.eval_offset if block.phase == "eval" else 0
            for i, logged in enumerate(block.logs(self.wandb_resolution)):
                if logged:
                    self.tracker.log(logged, step=block.first_step + i + offset)

    def flush(self) -> None:
        """Write the rows kept so far."""
        if self.rows:
            self.store.log_steps(self.ids, self.rows)
            self.rows = []
