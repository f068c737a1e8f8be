"""The `sparsey` command: a thin `@hydra.main` around `sparsey_hydra.app.run`."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import hydra
from omegaconf import DictConfig


def config_dir() -> str:
    """Configs ship in the wheel as sparsey_hydra/conf; a source checkout keeps them in conf/."""
    packaged = resources.files("sparsey_hydra") / "conf"
    if packaged.is_dir():
        return str(packaged)
    source = Path(__file__).resolve().parent.parent / "conf"
    if source.is_dir():
        return str(source)
    raise RuntimeError("sparsey-hydra's configs were not found (expected sparsey_hydra/conf)")


LAUNCH_DIR = os.getcwd()


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _main(cfg: DictConfig) -> int:
    from hydra.core.hydra_config import HydraConfig

    from sparsey_hydra.app import run

    return run(cfg, output_dir=HydraConfig.get().runtime.output_dir, launch_dir=LAUNCH_DIR)


def main() -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    _main()


if __name__ == "__main__":
    main()
