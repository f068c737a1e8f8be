"""The Sweeper plugin: Hydra discovers it in the `hydra_plugins` namespace package.

Kept thin and cheap to import (Hydra imports every plugin module on each `sparsey` run):
the study logic is `sparsey_hydra.hpo.sweep.StudySweep`, imported only when sweeping.
"""

# No `from __future__ import annotations` here: Hydra executes plugin modules without
# registering them in sys.modules, and dataclasses then cannot resolve string annotations.
from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class SparseyOptunaSweeperConf:
    """No settings here: the study (space, objective, strategy, storage) lives in `hpo`."""

    _target_: str = (
        "hydra_plugins.sparsey_optuna_sweeper.sparsey_optuna_sweeper.SparseyOptunaSweeper"
    )


ConfigStore.instance().store(group="hydra/sweeper", name="sparsey_optuna",
                             node=SparseyOptunaSweeperConf, provider="sparsey-hydra")


class SparseyOptunaSweeper(Sweeper):
    """Runs the study in the composed config's `hpo` block through Hydra's launcher
    (basic, joblib, submitit), one batch of `hpo.n_jobs` trials at a time."""

    def __init__(self) -> None:
        self.config: Optional[DictConfig] = None  # noqa: UP045 (evaluated at runtime)
        self.launcher: Any = None
        self.hydra_context: Optional[HydraContext] = None  # noqa: UP045

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from sparsey_hydra.hpo.trial_task import TrialTask

        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=TrialTask(task_function))

    def sweep(self, arguments: list[str]) -> Any:
        from sparsey_hydra.hpo.sweep import StudySweep

        assert self.config is not None and self.launcher is not None
        return StudySweep(self.config, self.launcher).run(list(arguments))
