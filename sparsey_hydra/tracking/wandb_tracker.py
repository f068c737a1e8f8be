"""Weights & Biases tracking: offline by default, online only with a key, or off entirely.

`wandb` is imported lazily (it is slow to import) and never in 'disabled' mode. The config is
passed through `redact` and the API key only through wandb's settings, so neither the
recorded config nor the logs ever hold a secret. Offline runs can be uploaded later with
`wandb sync <run_dir>`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import TracebackType
from typing import Any

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.tracking.secrets import redact

MODES = ("offline", "online", "disabled")
_ARTIFACT_NAME_BAD = re.compile(r"[^A-Za-z0-9_.\-]+")


class WandbTracker:
    """One W&B run; every method is a no-op when the mode is 'disabled'."""

    def __init__(
        self,
        mode: str,
        project: str,
        run_dir: str,
        name: str,
        config: dict[str, Any],
        api_key_env: str = "WANDB_API_KEY",
        entity: str | None = None,
        tags: list[str] | None = None,
    ) -> None:
        if mode not in MODES:
            raise SparseyConfigError(
                f"system.wandb.mode: unknown mode '{mode}'; use one of {', '.join(MODES)}"
            )
        self.mode = mode
        self._run: Any = None
        self._run_dir: str | None = None
        self._last_step = 0
        if mode == "disabled":
            return

        settings_kwargs: dict[str, Any] = {}
        if mode == "online":
            key = os.environ.get(api_key_env)
            if not key:
                raise SparseyConfigError(
                    f"system.wandb.mode=online needs an API key in ${api_key_env}; "
                    "set it or use system.wandb.mode=offline"
                )
            # Through settings, not wandb.login(key=...): that would also write ~/.netrc.
            settings_kwargs["api_key"] = key
        else:
            # The machine-info probe queries a cloud metadata endpoint; offline means no network.
            settings_kwargs["x_disable_machine_info"] = True

        os.environ["WANDB_SILENT"] = "true"
        import wandb

        Path(run_dir).mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(
            silent=True,
            quiet=True,
            console="off",  # leave stdout/stderr to the CLI's own logging
            disable_git=True,
            disable_code=True,
            save_code=False,
            x_save_requirements=False,
            **settings_kwargs,
        )
        try:
            self._run = wandb.init(
                project=project,
                entity=entity,
                name=name,
                dir=run_dir,
                config=redact(config),
                tags=list(tags) if tags else None,
                mode=mode,  # type: ignore[arg-type]
                reinit="create_new",  # several trackers (HPO trials) may live in one process
                settings=settings,
            )
        except Exception as exc:  # wandb raises many types; the user needs one line
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise SparseyConfigError(
                f"system.wandb: cannot start a {mode} run: {reason}; "
                "check system.wandb.* or use system.wandb.mode=offline"
            ) from None
        self._run_dir = str(self._run.sync_dir)

    @property
    def enabled(self) -> bool:
        """Whether a run is open (false when disabled or after `finish`)."""
        return self._run is not None

    @property
    def run_dir(self) -> str | None:
        """The run's own folder (e.g. `<run_dir>/wandb/offline-run-...`); None when disabled."""
        return self._run_dir

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Log one step's metrics; None (undefined) values are left out rather than plotted."""
        if self._run is None:
            return
        self._last_step = max(self._last_step, int(step))
        values = {k: v for k, v in metrics.items() if v is not None}
        if values:
            self._run.log(values, step=int(step))

    def log_summary(self, summary: dict[str, Any]) -> None:
        """Set the run's final summary values (what the W&B run table shows)."""
        if self._run is None:
            return
        self._run.summary.update(redact(summary))

    def log_images(
        self, images: dict[str, str | os.PathLike[str]], step: int | None = None
    ) -> None:
        """Log image files under their keys, at `step` or the latest logged step.

        Reusing the latest step keeps W&B's step counter from running ahead of later
        `log(..., step)` calls, which W&B would otherwise drop.
        """
        if self._run is None or not images:
            return
        import wandb

        logged: dict[str, Any] = {}
        for key, path in images.items():
            if not Path(path).is_file():
                raise SparseyConfigError(f"{key}: image file '{path}' not found")
            logged[key] = wandb.Image(str(path))
        at = self._last_step if step is None else int(step)
        self._last_step = max(self._last_step, at)
        self._run.log(logged, step=at)

    def log_artifact(
        self,
        path: str | os.PathLike[str],
        name: str,
        type: str = "model",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Attach a file or folder (e.g. a saved model) to the run as a versioned artifact."""
        if self._run is None:
            return
        import wandb

        source = Path(path)
        if not source.exists():
            raise SparseyConfigError(f"artifact '{name}': path '{path}' not found")
        clean = _ARTIFACT_NAME_BAD.sub("-", name).strip("-")[:128] or "artifact"
        artifact = wandb.Artifact(clean, type=type, metadata=redact(metadata or {}))
        if source.is_dir():
            artifact.add_dir(str(source))
        else:
            artifact.add_file(str(source))
        self._run.log_artifact(artifact)

    def finish(self, exit_code: int = 0) -> None:
        """Close the run (idempotent); a non-zero exit code marks it failed in W&B."""
        if self._run is None:
            return
        run, self._run = self._run, None
        run.finish(exit_code=exit_code)

    def __enter__(self) -> WandbTracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)
