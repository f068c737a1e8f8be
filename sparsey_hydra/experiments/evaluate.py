"""`+experiment=evaluate model_name=NAME [model_version=N]`: recognition with a saved model.

The model comes from the read store's registry (its file's sha256 is checked before loading)
and runs recognition — never learning — on every item of the chosen dataset after the chosen
preprocessing. The run is recorded as an `evaluate` experiment with the trainer's metrics, and
the model file is hashed again at the end to prove it was not touched. Metrics that compare
with the training items (match_accuracy, sisc_adherence) use the training record saved beside
the model; without one they are undefined and say so.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from sparsey_hydra.app import check_binary, prepare_device, public_config
from sparsey_hydra.config_schema import AppConfig
from sparsey_hydra.data.loading import load_splits
from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.experiments.step_logger import StepLogger
from sparsey_hydra.experiments.train import build_metrics, write_run_plots
from sparsey_hydra.metrics.recorder import load_training_record
from sparsey_hydra.model_registry import file_sha256, load_registered_model
from sparsey_hydra.plugins import Registry
from sparsey_hydra.stores.store_set import open_stores
from sparsey_hydra.summary import print_summary
from sparsey_hydra.tracking.wandb_tracker import WandbTracker
from sparsey_hydra.training.trainer import Trainer


def check_model_exists(reader: Any, name: str | None, version: int | None) -> None:
    """One-line errors naming the key, listing what the registry holds."""
    listing = getattr(reader, "list_models", None)
    models = listing() if listing else []
    names = sorted({m["name"] for m in models})
    known = ", ".join(names) if names else "none registered yet (train one first: " \
        "sparsey +experiment=train)"
    if not name:
        raise SparseyConfigError(
            f"model_name: required for +experiment=evaluate; known models: {known}")
    if listing is None:
        return  # the store's own lookup reports what is missing
    if name not in names:
        raise SparseyConfigError(f"model_name: unknown model '{name}'; known models: {known}")
    versions = sorted(int(m["version"]) for m in models if m["name"] == name)
    if version is not None and version not in versions:
        raise SparseyConfigError(
            f"model_version: model '{name}' has no version {version}; known versions: "
            f"{', '.join(map(str, versions))} (or leave model_version unset for the latest)")


def load_items(app: AppConfig, registry: Registry) -> torch.Tensor:
    """Every item of the dataset (both of its splits), preprocessed."""
    x_a, _, x_b, _ = load_splits(registry, app.dataset, app.preprocessing.transforms, app.seed)
    images = torch.cat([x_a, x_b]) if len(x_b) else x_a
    check_binary(images, "evaluation data")
    return images


def evaluate_experiment(app: AppConfig, tree: dict[str, Any], registry: Registry,
                        output_dir: Path, launch_dir: Path) -> dict[str, Any]:
    device = prepare_device(app)
    metrics = build_metrics(app, registry)
    store = open_stores(app.system, registry, launch_dir)
    try:
        check_model_exists(store.reader, app.model_name, app.model_version)
        model, _, record = load_registered_model(store.reader, app.model_name,
                                                 app.model_version, registry, device)
        images = load_items(app, registry)
        if tuple(images.shape[1:]) != model.input_shape:
            raise SparseyConfigError(
                f"dataset: items are {tuple(images.shape[1:])} after preprocessing but model "
                f"'{record['name']}' v{record['version']} takes {model.input_shape}; add a "
                f"resize transform (e.g. preprocessing=resize_binarize) or use its dataset")
    except BaseException:
        store.close()
        raise
    path = Path(record["path"])
    name, version = record["name"], int(record["version"])
    config = public_config(tree)
    config["evaluated_model"] = {"name": name, "version": version, "path": str(path),
                                 "sha256": record["sha256"]}
    wb = app.system.wandb
    run_name = f"evaluate-{name}-v{version}"
    tracker = WandbTracker(mode=wb.mode, project=wb.project,
                           run_dir=str(Path(wb.dir) if wb.dir else output_dir), name=run_name,
                           config=config, api_key_env=wb.api_key_env, entity=wb.entity,
                           tags=["evaluate"])
    try:
        exp_id = store.start_experiment(run_name, "evaluate", config, app.seed)
    except BaseException:
        tracker.finish(1)
        store.close()
        raise
    res = app.system.resolution
    logger = StepLogger(store, exp_id, tracker, res.store, res.wandb)
    trainer = Trainer(model, metrics, eval_batch_size=app.trainer.eval_batch_size,
                      progress=app.trainer.progress,
                      print_metric_values=app.trainer.print_metric_values,
                      block_sinks=[logger])
    training = load_training_record(path)
    if training is None:
        print(f"warning: no training record beside '{path}'; match_accuracy is undefined "
              "and sisc_adherence is 0 (its value for an empty memory), as both compare with "
              "the training items", file=sys.stderr)
    else:
        for metric in metrics:
            state = training.get("metrics", {}).get(metric.name)
            if state:
                metric.load_state_dict(state)
    try:
        trainer.evaluate(images)
        logger.flush()
        summary = trainer.summary()
        digest = file_sha256(path)
        if digest != record["sha256"]:  # recognition never writes; this would be a bug
            raise RuntimeError(f"model file '{path}' changed during evaluation")
        summary["model"] = {"name": name, "version": version, "path": str(path),
                            "sha256": digest, "unchanged": True}
        summary["plots"] = write_run_plots(trainer, output_dir, tracker, training)
        tracker.log_summary({f"eval/{k}/layer{ell + 1}": v
                             for k, vals in summary["eval"]["metrics"].items()
                             for ell, v in enumerate(vals)})
        store.finish_experiment(exp_id, "completed", summary)
        tracker.finish(0)
    except BaseException as exc:
        try:
            store.finish_experiment(exp_id, "failed", None, error=f"{type(exc).__name__}: {exc}")
        except Exception:
            pass  # every store failed: the original error is the one to report
        tracker.finish(1)
        store.close()
        raise
    store.close()
    print_summary(summary, experiment_id=store.describe(exp_id), wandb_dir=tracker.run_dir)
    print(f"model file unchanged: {path} (sha256 {digest[:12]}…)")
    return summary
