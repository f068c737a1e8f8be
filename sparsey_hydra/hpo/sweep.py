"""The sweep loop behind `sparsey -m hpo=NAME`: ask Optuna, launch a Hydra job, tell Optuna.

One trial at a time through Hydra's launcher, so each trial is an ordinary `sparsey` job
(own output dir, `.hydra/` config, W&B run, `experiments` row) whose task function returns
the objective. A trial that raises — bad sampled values included — is told FAILED with its
error and the sweep goes on; only a bad study (the `hpo` block itself) stops it up front.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobStatus
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.hpo.config import HpoConfig, validate_hpo
from sparsey_hydra.hpo.report import final_report, trial_line
from sparsey_hydra.hpo.samplers import grid_size, make_sampler
from sparsey_hydra.hpo.space import (
    build_space,
    check_keys,
    fixed_keys,
    format_value,
    split_arguments,
    trial_overrides,
)
from sparsey_hydra.hpo.study import (
    Heartbeat,
    anchor_sqlite,
    counts,
    default_storage,
    load_study,
    open_storage,
    recover_interrupted,
    shown_url,
    tell,
    worker_id,
)


def _say(line: str) -> None:
    print(line, flush=True)


class StudySweep:
    """One invocation of a study: resumes it and runs the trials it is still missing."""

    def __init__(self, config: DictConfig, launcher: Any) -> None:
        self.config = config
        self.launcher = launcher
        self.job_idx = 0

    # -- set-up ------------------------------------------------------------------------------

    def _prepare(self, arguments: list[str]) -> None:
        from sparsey_hydra.plugins import get_registry

        if self.config.get("hpo") is None:
            raise SparseyConfigError(
                "hpo: the Optuna sweeper needs a study; choose one, e.g. hpo=basis_set_growth")
        tree = _task_tree(self.config)
        self.registry = get_registry()
        self.hpo: HpoConfig = validate_hpo(tree["hpo"], tree["trainer"]["metrics"],
                                           self.registry)
        self.hpo_tree = tree["hpo"]
        self.system = tree["system"]
        self.launch_dir = Path(str(self.config.hydra.runtime.cwd))
        space = build_space(self.hpo.params)
        check_keys(space, self.config, self.registry)
        cli_space, self.written, self.fixed = split_arguments(arguments)
        space.update(cli_space)  # `key=choice(…)` / `key=a,b` on the command line re-ranges
        for key in fixed_keys(self.fixed):
            space.pop(key, None)  # `key=value` on the command line fixes a searched key
        if not space:
            raise SparseyConfigError(
                "hpo.params: the search space is empty; add e.g. "
                "network.layers.0.num_macs: [4, 9] or sweep a key on the command line")
        self.space = space
        self.total = self.hpo.n_trials
        if self.hpo.strategy == "grid":
            size = grid_size(space)
            if size < self.total:
                _say(f"[hpo] grid of {size} points: running {size} trials, not {self.total}")
                self.total = size
        url = (anchor_sqlite(self.hpo.storage, self.launch_dir) if self.hpo.storage
               else default_storage(self.system, self.launch_dir))
        self.storage_shown = shown_url(url)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = load_study(open_storage(url), self.hpo.study_name, self.hpo.directions,
                                self.hpo.objective_spec())
        # Offset by the trials already there, so a resumed study does not replay its samples.
        n_before = len(self.study.get_trials(deepcopy=False))
        seed = None if self.hpo.seed is None else self.hpo.seed + n_before
        self.study.sampler = make_sampler(self.hpo.strategy, seed, space,
                                          self.hpo.sampler_kwargs)
        self.out_dir = (self.launch_dir / self.hpo.output_dir / self.hpo.study_name).resolve()
        self.log_dir = self.launch_dir / str(self.config.hydra.sweep.dir)
        # The basic launcher logs every job's full override list; the [hpo] line replaces it.
        logging.getLogger("hydra._internal.core_plugins.basic_launcher").setLevel(logging.WARNING)

    def _open_hpo_run(self) -> None:
        """The `hpo_runs` row this invocation's trials (experiments) are linked to."""
        from sparsey_hydra.stores.store_set import open_stores

        self.stores = open_stores(self.system, self.registry, self.launch_dir)
        self.hpo_run = self.stores.start_hpo_run(
            self.hpo.study_name,
            {"hpo": self.hpo_tree, "overrides": self.fixed, "storage": self.storage_shown,
             "study": self.hpo.study_name})

    # -- the loop ----------------------------------------------------------------------------

    def run(self, arguments: list[str]) -> dict[str, Any]:
        try:
            self._prepare(arguments)
            self._open_hpo_run()
        except SparseyConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
        os.environ["WANDB_RUN_GROUP"] = self.hpo.study_name  # W&B runs grouped by study
        finished, _ = counts(self.study.get_trials(deepcopy=False))
        _say(f"[hpo] study '{self.hpo.study_name}' ({self.hpo.strategy}, "
             f"{'/'.join(self.hpo.directions)}) in {self.storage_shown}: "
             f"{finished}/{self.total} trials finished; each trial's output: "
             f"{self.log_dir}/trial-<number>.log")
        try:
            while self._run_one():
                pass
            summary = final_report(self.study, self.out_dir, self.storage_shown,
                                   list(self.space), self.hpo.plots, _say,
                                   objective_names(self.hpo))
        except BaseException as exc:
            self.stores.finish_hpo_run(self.hpo_run, "failed", None,
                                       error=f"{type(exc).__name__}: {exc}")
            self.stores.close()
            raise
        ok = summary.get("complete", 0) > 0
        self.stores.finish_hpo_run(self.hpo_run, "completed" if ok else "failed", summary,
                                   error=None if ok else "no trial completed")
        self.stores.close()
        if not ok:
            sys.exit(1)
        return summary

    def _run_one(self) -> bool:
        """Run the next missing trial; False when the study has all it needs."""
        recovered = recover_interrupted(self.study, self.hpo.stale_after_s)
        if recovered:
            _say(f"[hpo] trial(s) {recovered} were interrupted (their process died); "
                 "their points are queued again")
            self._close_dead_records(recovered)
        finished, running = counts(self.study.get_trials(deepcopy=False))
        if finished + running >= self.total:
            return False
        trial = self.study.ask(fixed_distributions=self.space)
        trial.set_user_attr("worker", worker_id())
        trial.set_user_attr("hpo_run", {k: v for k, v in self.hpo_run.items() if v is not None})
        try:
            with Heartbeat(trial, max(5.0, self.hpo.stale_after_s / 5)):
                values, error, ret = self._launch(trial)
        except BaseException:  # Ctrl-C: give the point back and leave the trial FAILED
            self.study.enqueue_trial(dict(trial.params),
                                     user_attrs={"retry_of": trial.number})
            tell(self.study, trial, state=TrialState.FAIL)
            raise
        self._record(trial, ret)
        if error is None:
            frozen = tell(self.study, trial, values)
        else:
            trial.set_user_attr("error", error)
            frozen = tell(self.study, trial, state=TrialState.FAIL)
        _say(trial_line(finished + 1, self.total, frozen, self.study))
        return True

    def _close_dead_records(self, numbers: list[int]) -> None:
        """Mark the dead invocation's `experiments` and `hpo_runs` rows failed (best effort:
        the study itself is already consistent)."""
        why = "interrupted: the sweep process died; the study reran this point"
        by_number = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        for key, store in getattr(self.stores, "writers", {}).items():
            for n in numbers:
                rid = (by_number[n].user_attrs.get("hpo_run") or {}).get(key)
                if rid is None or rid == self.hpo_run.get(key):
                    continue
                try:
                    for row in store.list_experiments(hpo_run_id=rid):
                        info = ((row.get("config") or {}).get("hpo") or {}).get("trial") or {}
                        if info.get("number") == n and row.get("status") == "running":
                            store.finish_experiment(row["id"], "failed", None, error=why)
                    if store.get_hpo_run(rid).get("status") == "running":
                        store.finish_hpo_run(rid, "failed", None, error=why)
                except Exception as exc:  # a store we cannot fix must not stop the study
                    _say(f"[hpo] note: could not mark store '{key}' records of trial {n} "
                         f"failed ({_one_line(exc)})")

    def _overrides(self, trial: optuna.Trial) -> list[str]:
        info = {"study": self.hpo.study_name, "number": trial.number,
                "hpo_run": {k: v for k, v in self.hpo_run.items() if v is not None}}
        return [*self.fixed, *trial_overrides(trial.params, self.written),
                f"++hpo.trial={_dict_value(info)}"]

    def _launch(self, trial: optuna.Trial) -> tuple[Any, str | None, Any]:
        """(values, error, job return): composing or running the job may fail; both are the
        trial's failure, never the sweep's."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"trial-{trial.number:04d}.log"
        try:  # the job's own printout (summary table) goes to its log; the [hpo] line stays
            with open(log, "w") as fh, contextlib.redirect_stdout(fh):
                returns = self.launcher.launch([self._overrides(trial)],
                                               initial_job_idx=self.job_idx)
        except Exception as exc:  # the sampled overrides could not be composed
            return None, _one_line(exc), None
        finally:
            self.job_idx += 1
        ret = returns[0]
        if ret.status != JobStatus.COMPLETED:  # the task raised: the exception is the value
            return None, _one_line(getattr(ret, "_return_value", None) or
                                   RuntimeError("the trial failed")), ret
        value = ret.return_value
        try:
            return _values(value, len(self.hpo.directions)), None, ret
        except ValueError as exc:
            return None, str(exc), ret

    def _record(self, trial: optuna.Trial, ret: Any) -> None:
        """Keep with the trial what its best-config YAML and the store need later."""
        cfg = getattr(ret, "cfg", None)
        if cfg is not None and cfg.get("network") is not None:
            trial.set_user_attr("network", OmegaConf.to_container(cfg.network, resolve=True))
        exp = self._experiment_of(trial)
        if exp is not None:
            trial.set_user_attr("experiment_id", exp["id"])
            model = (exp.get("summary") or {}).get("model")
            if model:
                trial.set_user_attr("model", {"name": model.get("name"),
                                              "version": model.get("version")})

    def _experiment_of(self, trial: optuna.Trial) -> dict[str, Any] | None:
        """The trial's `experiments` row in the read store (linked to this HPO run)."""
        run_id = self.hpo_run.get(self.stores.read_key)
        if run_id is None:
            return None
        try:
            rows = self.stores.reader.list_experiments(hpo_run_id=run_id)
        except Exception:
            return None
        for row in reversed(rows):
            info = ((row.get("config") or {}).get("hpo") or {}).get("trial") or {}
            if info.get("number") == trial.number:
                return row
        return None


def objective_names(hpo: HpoConfig) -> list[str]:
    """Axis labels: `basis_set_size (minimize)` per objective, `objective (minimize)`."""
    if hpo.objectives is not None:
        return [f"{t.metric} ({t.direction})" for t in hpo.objectives]
    assert hpo.objective is not None
    return [f"objective ({hpo.objective.direction})"]


def _task_tree(config: DictConfig) -> dict[str, Any]:
    """The composed task config as plain data; the `hydra` node is left out (parts of it,
    like the job number, only exist inside a job)."""
    from sparsey_hydra.app import to_tree

    return {k: (to_tree(config[k]) if OmegaConf.is_config(config[k]) else config[k])
            for k in config if k != "hydra"}


def _values(value: Any, n: int) -> float | list[float]:
    """The task's return value as Optuna wants it; anything else fails the trial."""
    import math

    vals = list(value) if isinstance(value, list | tuple) else [value]
    try:
        out = [float(v) for v in vals]
    except (TypeError, ValueError):
        raise ValueError(f"the task returned {value!r}, not {n} number(s)") from None
    if len(out) != n:
        raise ValueError(f"the task returned {len(out)} value(s) for {n} objective(s)")
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"the objective is not finite: {out}")
    return out[0] if n == 1 else out


def _one_line(exc: BaseException) -> str:
    """Config and objective errors are already one readable line; others get their type."""
    from sparsey_hydra.hpo.objective import ObjectiveError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, SparseyConfigError | ObjectiveError):
        return text
    return f"{type(exc).__name__}: {text}"


def _dict_value(d: dict[str, Any]) -> str:
    """A dict in Hydra's override grammar: {k:v,...}."""
    items = []
    for k, v in d.items():
        items.append(f"{k}:{_dict_value(v) if isinstance(v, dict) else format_value(v)}")
    return "{" + ",".join(items) + "}"
