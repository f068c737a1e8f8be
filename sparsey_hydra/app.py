"""Config → instantiate → run: the one-way flow behind the `sparsey` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from sparsey_hydra.config_schema import AppConfig, validate_config
from sparsey_hydra.core.device import select_device
from sparsey_hydra.core.model import NonBinaryInputError
from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.plugins import Registry, get_registry
from sparsey_hydra.summary import print_summary
from sparsey_hydra.tracking.secrets import redact


def run(cfg: DictConfig, output_dir: str | None = None, launch_dir: str | None = None,
        in_sweep: bool = False) -> int | float | list[float]:
    """Run the selected experiment; a bad input is one line on stderr and exit code 2.

    An HPO trial (`hpo` set) returns its objective value(s) for the sweeper. In a multirun
    such a trial raises instead of exiting, so only that trial fails, with the message.
    """
    try:
        return _run(cfg, output_dir or ".", launch_dir or ".")
    except SparseyConfigError as exc:
        if in_sweep and cfg.get("hpo") is not None:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


def to_tree(cfg: DictConfig) -> dict[str, Any]:
    """Resolve the composed config; a missing mandatory value names its key."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        key = exc.full_key or "?"
        raise SparseyConfigError(
            f"{key}: required but not set; give it on the command line, e.g. {key}=VALUE"
        ) from None
    except OmegaConfBaseException as exc:
        raise SparseyConfigError(f"{exc.full_key}: {exc.msg}") from None


def _run(cfg: DictConfig, output_dir: str, launch_dir: str) -> int | float | list[float]:
    tree = to_tree(cfg)
    registry = get_registry()
    app = validate_config(tree, registry)
    if app.task is None:
        print_menu()
        return 0
    if app.task == "train":
        from sparsey_hydra.experiments.train import train_experiment

        summary = train_experiment(app, tree, registry, Path(output_dir), Path(launch_dir))
        if app.hpo is not None:  # an HPO trial: the sweeper needs the objective value(s)
            from sparsey_hydra.hpo.config import parse_hpo
            from sparsey_hydra.hpo.objective import evaluate

            return evaluate(parse_hpo(app.hpo), summary, registry)
        return 0
    if app.task == "evaluate":
        from sparsey_hydra.experiments.evaluate import evaluate_experiment

        evaluate_experiment(app, tree, registry, Path(output_dir), Path(launch_dir))
        return 0
    raise SparseyConfigError(f"task: '{app.task}' is not available yet; use +experiment=train")


def print_menu() -> None:
    """What `sparsey` can run, instead of a traceback when no experiment is chosen."""
    from sparsey_hydra.cli import config_dir

    conf = Path(config_dir())
    groups = {g: sorted(p.stem for p in (conf / g).glob("*.yaml"))
              for g in ("experiment", "dataset", "preprocessing", "network", "trainer", "hpo",
                        "system")}
    print("sparsey: choose an experiment, e.g.\n")
    print("  sparsey +experiment=train                      # train + evaluate on the digits")
    print("  sparsey +experiment=train network=mnist_medium dataset=image_folder "
          "dataset.path=/abs/mnist_png\n")
    for group, names in groups.items():
        prefix = "+experiment" if group == "experiment" else group
        print(f"  {prefix:<14} {', '.join(names) or '(none)'}")
    print("\nAny key can be overridden, e.g. network.layers.0.num_macs=16 trainer.num_epochs=2")


def prepare_device(app: AppConfig) -> torch.device:
    if app.system.num_threads:
        torch.set_num_threads(app.system.num_threads)
    try:
        return select_device(app.system.device)
    except (ValueError, RuntimeError) as exc:
        raise SparseyConfigError(f"system.device: {exc}") from None


def check_binary(images: torch.Tensor, where: str) -> None:
    if not bool(((images == 0) | (images == 1)).all()):
        raise NonBinaryInputError(
            f"{where} is not binary after preprocessing; add a `binarize` transform, e.g. "
            "preprocessing=binarize or preprocessing.transforms=[{name: binarize, threshold: 0.5}]"
        )


def public_config(tree: dict[str, Any]) -> dict[str, Any]:
    """The config as stored and tracked: secrets redacted."""
    return redact(tree)


__all__ = ["run", "print_summary", "Registry"]
