"""What a study tells its researcher: one line per trial, then the best config and plots.

Everything lands in `<hpo.output_dir>/<study_name>/`:
- `network/<study>_best.yaml`: the best trial's complete network, usable as
  `sparsey --config-dir <that folder> +experiment=train network=<study>_best`
  (multi-objective: one `network/<study>_pareto_<trial>.yaml` per Pareto-optimal trial);
- `best.yaml` (or `pareto.yaml`): values, parameters, trial numbers, experiment ids;
- `plots/*.png`: optimisation history, parameter importance, parallel coordinates
  (and the Pareto front), drawn with Optuna's matplotlib backend, headless.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from sparsey_hydra.hpo.study import retried_numbers


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def short_key(key: str) -> str:
    """`network.layers.0.num_macs` → `L0.num_macs` for compact lines."""
    return key.replace("network.layers.", "L").replace("network.", "")


def params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{short_key(k)}={_fmt(v)}" for k, v in params.items())


def values_text(values: list[float] | None) -> str:
    if not values:
        return "—"
    return _fmt(values[0]) if len(values) == 1 else "[" + ", ".join(_fmt(v) for v in values) + "]"


def best_text(study: optuna.Study) -> str:
    """Best so far: the value and trial (one objective) or the Pareto front's size."""
    try:
        if len(study.directions) == 1:
            best = study.best_trial
            return f"best {_fmt(best.value)} (trial {best.number})"
        return f"Pareto front: {len(study.best_trials)} trial(s)"
    except ValueError:
        return "best —"


def trial_line(i: int, n: int, trial: FrozenTrial, study: optuna.Study) -> str:
    """`trial 3/6 #2 COMPLETE value 1.25 | best 1.1 (trial 0) | L0.num_macs=9 …`"""
    head = f"[hpo] trial {i}/{n} #{trial.number}"
    if trial.state == TrialState.COMPLETE:
        body = f"value {values_text(trial.values)}"
    else:
        body = f"FAILED: {trial.user_attrs.get('error', 'no error recorded')}"
    return f"{head} {body} | {best_text(study)} | {params_text(trial.params)}"


def train_command(out_dir: Path, stem: str) -> str:
    """Hydra wants --config-dir before the overrides."""
    return f"sparsey --config-dir {out_dir} +experiment=train network={stem}"


def network_yaml(network: dict[str, Any], name: str, header: list[str]) -> str:
    net = dict(network)
    net["name"] = name
    keep = net.get("num_layers")
    if isinstance(keep, int) and isinstance(net.get("layers"), list):
        net["layers"] = net["layers"][:keep]  # what was trained: the first num_layers
    body = OmegaConf.to_yaml(OmegaConf.create(net), sort_keys=False)
    return "".join(f"# {line}\n" for line in header) + body


def _trial_record(t: FrozenTrial) -> dict[str, Any]:
    return {"trial": t.number, "values": list(t.values or []), "params": dict(t.params),
            "experiment_id": t.user_attrs.get("experiment_id"),
            "model": t.user_attrs.get("model")}


def final_report(study: optuna.Study, out_dir: Path, storage_shown: str,
                 param_order: list[str], plots: bool, print_fn: Any = print,
                 objective_names: list[str] | None = None) -> dict[str, Any]:
    """Print and save the outcome; returns the summary stored with the HPO run."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    retried = retried_numbers(trials)
    failed = [t for t in trials if t.state == TrialState.FAIL and t.number not in retried]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "network").mkdir(exist_ok=True)
    name = study.study_name
    summary: dict[str, Any] = {"study": name, "storage": storage_shown,
                               "complete": len(complete), "failed": len(failed),
                               "directions": [d.name.lower() for d in study.directions]}
    print_fn(f"[hpo] study '{name}' in {storage_shown}: {len(complete)} complete, "
             f"{len(failed)} failed")
    if not complete:
        print_fn("[hpo] no trial completed; the errors are in each trial's 'error' attribute "
                 "and in the experiments table")
        return summary
    if len(study.directions) == 1:
        best = study.best_trial
        summary["best"] = _trial_record(best)
        path = _save_network(best, out_dir, f"{name}_best", study, "best")
        summary["best"]["network_yaml"] = str(path) if path else None
        print_fn(f"[hpo] best value {_fmt(best.value)} "
                 f"({study.directions[0].name.lower()}) at trial {best.number}")
        print_fn(f"[hpo] best params: {params_text(best.params)}")
        model = best.user_attrs.get("model") or {}
        if model.get("name"):
            print_fn(f"[hpo] best trial's model: {model['name']} v{model.get('version')} "
                     f"(sparsey +experiment=evaluate model_name={model['name']})")
        _print_network(best, path, out_dir, f"{name}_best", print_fn)
        _write(out_dir / "best.yaml", OmegaConf.to_yaml(OmegaConf.create(summary)))
    else:
        front = sorted(study.best_trials, key=lambda t: t.number)
        summary["pareto_front"] = []
        print_fn(f"[hpo] Pareto front ({len(front)} trial(s); directions "
                 f"{summary['directions']}):")
        for t in front:
            rec = _trial_record(t)
            path = _save_network(t, out_dir, f"{name}_pareto_{t.number}", study, "Pareto")
            rec["network_yaml"] = str(path) if path else None
            summary["pareto_front"].append(rec)
            print_fn(f"[hpo]   trial {t.number}: values {values_text(t.values)} | "
                     f"{params_text(t.params)}")
        _write(out_dir / "pareto.yaml", OmegaConf.to_yaml(OmegaConf.create(summary)))
        print_fn(f"[hpo] Pareto networks: {out_dir / 'network'}; train one: "
                 f"{train_command(out_dir, name + '_pareto_<trial>')}")
    if plots:
        saved = save_plots(study, out_dir / "plots", param_order, print_fn, objective_names)
        summary["plots"] = [str(p) for p in saved]
    return summary


def _save_network(t: FrozenTrial, out_dir: Path, stem: str, study: optuna.Study,
                  what: str) -> Path | None:
    network = t.user_attrs.get("network")
    if not network:
        return None
    header = [f"{what} network of HPO study '{study.study_name}', trial {t.number}",
              f"values: {values_text(t.values)}",
              f"params: {params_text(t.params)}",
              f"train it: {train_command(out_dir, stem)}"]
    path = out_dir / "network" / f"{stem}.yaml"
    _write(path, network_yaml(network, stem, header))
    return path


def _write(path: Path, text: str) -> None:
    """Atomic: workers of one shared study all write the same report files."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _print_network(t: FrozenTrial, path: Path | None, out_dir: Path, stem: str,
                   print_fn: Any) -> None:
    if path is None:
        print_fn("[hpo] the best trial's network config was not recorded")
        return
    print_fn(f"[hpo] best network config ({path}):")
    print_fn(path.read_text().rstrip())
    print_fn(f"[hpo] train it again: {train_command(out_dir, stem)}")


def save_plots(study: optuna.Study, plot_dir: Path, param_order: list[str],
               print_fn: Any = print, objective_names: list[str] | None = None) -> list[Path]:
    """History, importance and parallel coordinates as PNG files (Agg backend, no display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plot_dir.mkdir(parents=True, exist_ok=True)
    n_obj = len(study.directions)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    params = [p for p in param_order
              if len({repr(t.params.get(p)) for t in complete if p in t.params}) > 1]
    jobs: list[tuple[str, Any]] = []
    names = objective_names or [f"objective {i}" for i in range(n_obj)]
    targets: list[tuple[str, Any, str]] = [("", None, names[0])] if n_obj == 1 else [
        (f"_obj{i}", (lambda t, i=i: t.values[i]), names[i]) for i in range(n_obj)]
    for suffix, target, tname in targets:
        kw: dict[str, Any] = {"target_name": tname}
        if target is not None:
            kw["target"] = target
        jobs.append((f"optimization_history{suffix}",
                     lambda kw=kw: ovm.plot_optimization_history(study, **kw)))
        if params:
            jobs.append((f"param_importances{suffix}",
                         lambda kw=kw: ovm.plot_param_importances(study, params=params, **kw)))
            jobs.append((f"parallel_coordinate{suffix}",
                         lambda kw=kw: ovm.plot_parallel_coordinate(study, params=params, **kw)))
    if n_obj > 1:
        jobs.append(("pareto_front",
                     lambda: ovm.plot_pareto_front(study, target_names=names)))
    saved = []
    for stem, make in jobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = make()
            fig = _figure(ax)
            _shorten_labels(fig, params, stem.startswith("parallel_coordinate"))
            path = plot_dir / f"{stem}.png"
            tmp = plot_dir / f".{stem}.{os.getpid()}.tmp.png"
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
            os.replace(tmp, path)
            plt.close(fig)
            saved.append(path)
        except Exception as exc:  # e.g. too few trials for importance: skip, say why
            print_fn(f"[hpo] plot {stem} skipped: {str(exc).splitlines()[0] if str(exc) else exc}")
    if saved:
        print_fn(f"[hpo] plots: {plot_dir} ({', '.join(p.name for p in saved)})")
    return saved


def _shorten_labels(fig: Any, params: list[str], parallel: bool) -> None:
    """`network.layers.0.num_macs` → `L0.num_macs` on the axes (Optuna truncates at 17
    characters, which leaves every per-layer key reading `network.layers.0...`)."""
    for ax in fig.axes:
        if parallel and ax.get_xticklabels():
            labels = [t.get_text() for t in ax.get_xticklabels()]
            if len(labels) == len(params) + 1:
                ax.set_xticks(ax.get_xticks(), [labels[0], *map(short_key, sorted(params))],
                              rotation=30, ha="right")
                fig.set_size_inches(max(8.0, 1.3 * len(labels)), 6)
            continue
        ticks = ax.get_yticklabels()
        if any(t.get_text() in params for t in ticks):
            ax.set_yticks(ax.get_yticks(), [short_key(t.get_text()) for t in ticks])


def _figure(ax: Any) -> Any:
    """Optuna returns an Axes, or an array of Axes for several parameters."""
    if hasattr(ax, "figure"):
        return ax.figure
    import numpy as np

    return np.asarray(ax).flat[0].figure

