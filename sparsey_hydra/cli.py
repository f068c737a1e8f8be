"""The `sparsey` command: a thin `@hydra.main` around `sparsey_hydra.app.run`."""

from __future__ import annotations

import os
import sys
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
#: Keys under these prefixes may be set even where the chosen option leaves them at their
#: defaults (a layer lists only what it changes): `network.layers.0.sigmoid_phi=0.3` works
#: without Hydra's `+`. A misspelt key still fails, in the layer's own validation.
OPEN_PREFIXES = ("network.layers.",)


def open_overrides(args: list[str]) -> list[str]:
    """Rewrite plain `network.layers.N.KEY=V` overrides as Hydra's add-or-override `++`."""
    out = []
    for arg in args:
        key = arg.split("=", 1)[0]
        if "=" in arg and key.startswith(OPEN_PREFIXES) and not key.startswith(("+", "~")):
            arg = "++" + arg
        out.append(arg)
    return out


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _main(cfg: DictConfig) -> int | float | list[float]:
    """Returns the objective value(s) of an HPO trial, which the Optuna sweeper reads."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sparsey_hydra.app import run

    hc = HydraConfig.get()
    return run(cfg, output_dir=hc.runtime.output_dir, launch_dir=LAUNCH_DIR,
               in_sweep=hc.mode == RunMode.MULTIRUN)


def main() -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    # Plugins' config dirs join Hydra's search path (hydra_plugins/sparsey_hydra_searchpath);
    # an unknown option such as `network=nope` is one line and exit 2 like other bad input.
    from sparsey_hydra.plugins import exit_on_unknown_options
    from sparsey_hydra.tracking.secrets import secret_override_error

    secret = secret_override_error(sys.argv[1:])  # before Hydra writes .hydra/overrides.yaml
    if secret:
        print(f"error: {secret}", file=sys.stderr)
        sys.exit(2)
    exit_on_unknown_options(sys.argv[1:], config_dir())
    sys.argv[1:] = open_overrides(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
