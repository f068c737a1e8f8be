"""`+experiment=train`: learn on the training split, recognise the eval split, store it all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparsey_hydra.app import check_binary, prepare_device, public_config
from sparsey_hydra.config_schema import AppConfig
from sparsey_hydra.data.loading import load_splits
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
    exp_id = store.start_experiment(f"train-{model_name}", "train", config, app.seed)
    saved = {m.name for m in metrics if m.params.save}
    rows: list[tuple] = []

    def sink(phase: str, step: int, values: dict[str, list[float | None]]) -> None:
        logged = {}
        for name, per_layer in values.items():
            for ell, v in enumerate(per_layer):
                if name in saved:
                    rows.append((phase, step, ell + 1, name, v))
                if v is not None:
                    logged[f"{phase}/{name}/layer{ell + 1}"] = v
        if len(rows) >= 5000:
            store.log_steps(exp_id, rows)
            rows.clear()
        if logged:
            tracker.log(logged, step=step if phase == "train" else step + steps_offset[0])

    steps_offset = [0]
    trainer = Trainer(model, metrics, num_epochs=app.trainer.num_epochs,
                      batch_size=app.trainer.batch_size,
                      eval_batch_size=app.trainer.eval_batch_size,
                      progress=app.trainer.progress,
                      print_metric_values=app.trainer.print_metric_values, sinks=[sink])
    try:
        trainer.train(x_train)
        steps_offset[0] = trainer.stats["train"].frames
        if len(x_eval):
            trainer.evaluate(x_eval)
        store.log_steps(exp_id, rows)
        rows.clear()
        summary = trainer.summary()
        version = store.next_model_version(model_name)
        path = (launch_dir / app.system.model_dir / model_name / f"v{version}.pt").resolve()
        model.save(path, {"network": tree["network"], "preprocessing": tree["preprocessing"],
                          "dataset": config["dataset"], "seed": app.seed})
        digest = file_sha256(path)
        store.add_model(model_name, version, str(path), digest, config, summary, exp_id)
        summary["model"] = {"name": model_name, "version": version, "path": str(path),
                            "sha256": digest}
        tracker.log_summary(_flat_summary(summary))
        tracker.log_artifact(str(path), name=model_name, type="model",
                             metadata={"version": version, "sha256": digest})
        store.finish_experiment(exp_id, "completed", summary)
        tracker.finish(0)
    except BaseException as exc:
        store.finish_experiment(exp_id, "failed", None, error=f"{type(exc).__name__}: {exc}")
        tracker.finish(1)
        raise
    print_summary(summary, experiment_id=exp_id, wandb_dir=tracker.run_dir)
    return summary


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
