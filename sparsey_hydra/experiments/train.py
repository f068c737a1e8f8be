"""`+experiment=train`: learn on the training split, recognise the eval split, store it all."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from sparsey_hydra.app import check_binary, prepare_device, public_config
from sparsey_hydra.config_schema import AppConfig
from sparsey_hydra.data.loading import load_splits
from sparsey_hydra.experiments.step_logger import StepLogger
from sparsey_hydra.hpo.config import trial_hpo_run
from sparsey_hydra.metrics.recorder import save_training_record
from sparsey_hydra.model_registry import file_sha256
from sparsey_hydra.network import build_model
from sparsey_hydra.plugins import Registry
from sparsey_hydra.stores.store_set import open_stores
from sparsey_hydra.summary import print_summary
from sparsey_hydra.tracking.wandb_tracker import WandbTracker
from sparsey_hydra.training.trainer import Trainer


def build_metrics(app: AppConfig, registry: Registry) -> list[Any]:
    metrics = []
    for i, m in enumerate(app.trainer.metrics):
        comp = registry.get("metric", m["name"], key=f"trainer.metrics.{i}.name")
        params = registry.build_params("metric", m["name"], dict(m), key=f"trainer.metrics.{i}")
        metric = comp.factory(params)
        metric.name = m["name"]
        metrics.append(metric)
    return metrics


def train_experiment(app: AppConfig, tree: dict[str, Any], registry: Registry,
                     output_dir: Path, launch_dir: Path) -> dict[str, Any]:
    """Everything that can fail on bad input fails before the store is written."""
    device = prepare_device(app)
    x_train, _, x_eval, _ = load_splits(registry, app.dataset,
                                        app.preprocessing.transforms, app.seed)
    check_binary(x_train, "training data")
    check_binary(x_eval, "eval data")
    input_shape = (int(x_train.shape[1]), int(x_train.shape[2]))
    model = build_model(tree["network"], input_shape, app.seed, device, registry)
    metrics = build_metrics(app, registry)
    model_name = app.model_name or f"{app.network.name}-{app.dataset.type}"
    config = public_config(tree)

    store = open_stores(app.system, registry, launch_dir)
    wb = app.system.wandb
    tracker = WandbTracker(mode=wb.mode, project=wb.project,
                           run_dir=str(Path(wb.dir) if wb.dir else output_dir),
                           name=f"train-{model_name}", config=config,
                           api_key_env=wb.api_key_env, entity=wb.entity, tags=["train"])
    try:  # a store refusing the first write stops the run here, before any training
        exp_id = store.start_experiment(f"train-{model_name}", "train", config, app.seed,
                                        hpo_run=trial_hpo_run(tree))  # HPO trial → hpo_runs
    except BaseException:
        tracker.finish(1)
        store.close()
        raise
    res = app.system.resolution
    logger = StepLogger(store, exp_id, tracker, res.store, res.wandb)
    trainer = Trainer(model, metrics, num_epochs=app.trainer.num_epochs,
                      batch_size=app.trainer.batch_size,
                      eval_batch_size=app.trainer.eval_batch_size,
                      progress=app.trainer.progress,
                      print_metric_values=app.trainer.print_metric_values,
                      block_sinks=[logger])
    try:
        trainer.train(x_train)
        logger.eval_offset = trainer.stats["train"].frames  # W&B: eval steps after training
        if len(x_eval):
            trainer.evaluate(x_eval)
        logger.flush()
        summary = trainer.summary()
        version = store.next_model_version(model_name)
        path = (launch_dir / app.system.model_dir / model_name / f"v{version}.pt").resolve()
        model.save(path, {"network": tree["network"], "preprocessing": tree["preprocessing"],
                          "dataset": config["dataset"], "seed": app.seed})
        digest = file_sha256(path)
        save_training_record(trainer.recorder, path)  # for evaluate; beside, not inside
        store.add_model(model_name, version, str(path), digest, config, summary, exp_id)
        summary["model"] = {"name": model_name, "version": version, "path": str(path),
                            "sha256": digest}
        summary["plots"] = write_run_plots(trainer, output_dir, tracker)
        tracker.log_summary(_flat_summary(summary))
        tracker.log_artifact(str(path), name=model_name, type="model",
                             metadata={"version": version, "sha256": digest})
        store.finish_experiment(exp_id, "completed", summary)
        tracker.finish(0)
    except BaseException as exc:
        try:
            store.finish_experiment(exp_id, "failed", None,
                                    error=f"{type(exc).__name__}: {exc}")
        except Exception:
            pass  # every store failed: the original error is the one to report
        tracker.finish(1)
        store.close()
        raise
    store.close()
    print_summary(summary, experiment_id=store.describe(exp_id), wandb_dir=tracker.run_dir)
    return summary


def write_run_plots(trainer: Trainer, output_dir: Path, tracker: WandbTracker,
                    training: dict[str, Any] | None = None) -> list[str]:
    """The run's PNGs in its output dir, also logged to W&B as images."""
    from sparsey_hydra.plots import collect, write_plots  # matplotlib: only when drawing

    try:
        images = write_plots(collect(trainer.recorder, training), Path(output_dir) / "plots")
    except Exception as exc:  # the model is saved already: a picture must not fail the run
        print(f"warning: plots not drawn ({type(exc).__name__}: {exc})", file=sys.stderr)
        return []
    tracker.log_images({k: str(v) for k, v in images.items()})
    return [str(v) for v in images.values()]


def _flat_summary(summary: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for row in summary["layers"]:
        for k, v in row.items():
            if k != "layer":
                flat[f"layer{row['layer']}/{k}"] = v
    for phase in ("train", "eval"):
        for name, vals in summary[phase]["metrics"].items():
            for ell, v in enumerate(vals):
                flat[f"{phase}/{name}/layer{ell + 1}"] = v
        flat[f"{phase}/frames_per_second"] = summary[phase]["frames_per_second"]
    return flat
