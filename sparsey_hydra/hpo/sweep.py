"""The sweep loop behind `sparsey -m hpo=NAME`: claim trials, launch Hydra jobs, tell Optuna.

Each trial is an ordinary `sparsey` job (own output dir, `.hydra/` config, W&B run,
`experiments` row) whose task function returns the objective. Trials are launched through
Hydra's launcher in batches of `hpo.n_jobs`: one at a time in-process (basic launcher), in
parallel worker processes (`hydra/launcher=joblib`) or as cluster jobs
(`hydra/launcher=submitit_slurm`, `submitit_local`). Several `sparsey -m hpo=…` processes
with the same study name and storage cooperate: they claim trials under the study lock, so
the study gets exactly `hpo.n_trials` of them, and a worker stays until the trials of the
others are done (it retries those whose worker dies). A trial that raises — bad sampled
values included — is told FAILED with its error and the sweep goes on; only a bad study (the
`hpo` block itself) stops it up front.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobStatus
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.hpo.config import HpoConfig, validate_hpo
from sparsey_hydra.hpo.lock import StudyLock
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
    fail_dead_trials,
    give_back,
    load_study,
    open_storage,
    shown_url,
    tell,
    worker_id,
)
from sparsey_hydra.hpo.trial_task import trial_log

# Launchers log every job's full override list; the [hpo] line replaces it.
_LAUNCHER_LOGGERS = ("hydra._internal.core_plugins.basic_launcher",
                     "hydra_plugins.hydra_joblib_launcher._core",
                     "hydra_plugins.hydra_submitit_launcher.submitit_launcher")


def _say(line: str) -> None:
    print(line, flush=True)


class StudySweep:
    """One worker of a study: resumes it and runs trials until it has all it needs."""

    def __init__(self, config: DictConfig, launcher: Any) -> None:
        self.config = config
        self.launcher = launcher
        self.job_idx = 0
        self.interrupted = False  # a Ctrl-C noted by _ctrl_c_noted
        self.in_trials = False  # trials are running: Ctrl-C raises at once

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
        check_keys(cli_space, self.config, self.registry, prefix="")
        for key in cli_space:  # a layer parameter the network file leaves at its default
            if OmegaConf.select(self.config, key, default=None) is None \
                    and not self.written[key].startswith("+"):
                self.written[key] = "++" + key
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
        self.n_jobs = self.hpo.n_jobs or _launcher_jobs(self.config)
        url = (anchor_sqlite(self.hpo.storage, self.launch_dir) if self.hpo.storage
               else default_storage(self.system, self.launch_dir))
        self.storage_shown = shown_url(url)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.storage = open_storage(url, self.hpo.heartbeat_interval_s,
                                    self.hpo.grace_period_s, self.hpo.max_retry)
        self.study = load_study(self.storage, self.hpo.study_name, self.hpo.directions,
                                self.hpo.objective_spec())
        self.out_dir = (self.launch_dir / self.hpo.output_dir / self.hpo.study_name).resolve()
        self.sweep_dir = str(self.config.hydra.sweep.dir)
        self.log_dir = self.launch_dir / self.sweep_dir
        for name in _LAUNCHER_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)

    def _open_hpo_run(self) -> None:
        """The `hpo_runs` row this worker's trials (experiments) are linked to."""
        from sparsey_hydra.stores.store_set import open_stores
        from sparsey_hydra.tracking.secrets import redact

        self.stores = open_stores(self.system, self.registry, self.launch_dir)
        self.hpo_run = self.stores.start_hpo_run(
            self.hpo.study_name,
            redact({"hpo": self.hpo_tree, "overrides": self.fixed,
                    "storage": self.storage_shown, "study": self.hpo.study_name,
                    "worker": worker_id(), "n_jobs": self.n_jobs}))

    # -- the loop ----------------------------------------------------------------------------

    def run(self, arguments: list[str]) -> dict[str, Any]:
        try:
            self._prepare(arguments)
            self._open_hpo_run()
        except SparseyConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
        os.environ["WANDB_RUN_GROUP"] = self.hpo.study_name  # W&B runs grouped by study
        finished, running, _ = counts(self.study.get_trials(deepcopy=False))
        _say(f"[hpo] study '{self.hpo.study_name}' ({self.hpo.strategy}, "
             f"{'/'.join(self.hpo.directions)}) in {self.storage_shown}: "
             f"{finished}/{self.total} trials finished"
             f"{f', {running} running elsewhere' if running else ''}; "
             f"{self.n_jobs} at a time; each trial's output: {self.log_dir}/trial-<number>.log")
        try:
            with self._ctrl_c_noted():
                self._loop()
            summary = final_report(self.study, self.out_dir, self.storage_shown,
                                   list(self.space), self.hpo.plots, _say,
                                   objective_names(self.hpo))
        except BaseException as exc:
            self.stores.finish_hpo_run(self.hpo_run, "failed", None,
                                       error=f"{type(exc).__name__}: {exc}")
            self.stores.close()
            if isinstance(exc, KeyboardInterrupt):  # Ctrl-C: a message, not a traceback
                _say(f"[hpo] interrupted; the running trial(s) were failed and their points "
                     f"queued again; rerun the same command to resume study "
                     f"'{self.hpo.study_name}'")
                sys.exit(130)
            raise
        ok = summary.get("complete", 0) > 0
        self.stores.finish_hpo_run(self.hpo_run, "completed" if ok else "failed", summary,
                                   error=None if ok else "no trial completed")
        self.stores.close()
        if not ok:
            sys.exit(1)
        return summary

    @contextlib.contextmanager
    def _ctrl_c_noted(self) -> Iterator[None]:
        """Ctrl-C stops the sweep between safe points, never half-way through the study's
        bookkeeping: while trials run it raises KeyboardInterrupt at once (their points are
        given back); elsewhere (claiming trials, recording results, waiting) it is noted and
        acted on at the next check. An interrupt that surfaces inside a trial as another error
        (it can land in Hydra's config handling) is caught by the same note."""
        self.interrupted, self.in_trials = False, False
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_sigint(signum: int, frame: Any) -> None:
            self.interrupted = True
            if self.in_trials:
                signal.default_int_handler(signum, frame)

        def unraisable(info: Any) -> None:
            # the interrupt raised inside a finaliser or weakref callback, where Python
            # swallows it and prints a traceback: it is noted already, so say nothing
            if not (self.interrupted and isinstance(info.exc_value, KeyboardInterrupt)):
                previous_hook(info)

        previous = signal.signal(signal.SIGINT, on_sigint)
        previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            sys.unraisablehook = previous_hook

    def _check_interrupt(self, claimed: Sequence[optuna.Trial] = ()) -> None:
        """Act on a noted Ctrl-C: give back what was claimed, then stop the sweep."""
        if self.interrupted:
            for trial in claimed:
                give_back(self.study, trial, "the sweep was interrupted")
            raise KeyboardInterrupt

    def _loop(self) -> None:
        """Claim and run batches; when none is left, wait for the other workers' trials."""
        waiting_said = False
        poll = max(0.5, min(5.0, self.hpo.heartbeat_interval_s / 2))
        while True:
            self._check_interrupt()
            batch = self._claim()
            self._check_interrupt(batch)
            if batch:
                self._run_batch(batch)
                waiting_said = False
                continue
            finished, running, waiting = counts(self.study.get_trials(deepcopy=False))
            if running == 0 and waiting == 0:
                return
            if not waiting_said:
                _say(f"[hpo] {finished}/{self.total} finished; waiting for {running} trial(s) "
                     "of other workers (a dead worker's trial is retried here)")
                waiting_said = True
            for _ in range(int(poll / 0.25)):  # a noted Ctrl-C is seen within 0.25 s
                self._check_interrupt()
                time.sleep(0.25)

    def _claim(self) -> list[optuna.Trial]:
        """Up to n_jobs trials for this worker: queued points first, then new ones, never
        more than the study still needs (counted and asked under the study lock)."""
        with StudyLock(self.storage, self.hpo.study_name):
            recovered = fail_dead_trials(self.study, self.hpo.local_pid_check)
            if recovered:
                _say(f"[hpo] trial(s) {recovered} lost their worker (no heartbeat or process "
                     "gone); failed, and their points are queued again")
                self._close_dead_records(recovered)
            trials = self.study.get_trials(deepcopy=False)
            finished, running, waiting = counts(trials)
            room = max(self.total - finished - running, waiting)
            batch = []
            for _ in range(min(self.n_jobs, room)):
                # Seeded by trial number: reproducible with one worker, and workers sharing
                # a seed do not sample the same points. The grid sampler's seed shuffles the
                # grid itself, so it must stay the study's seed.
                seed = self.hpo.seed
                if seed is not None and self.hpo.strategy != "grid":
                    seed += len(trials) + len(batch)
                self.study.sampler = make_sampler(self.hpo.strategy, seed, self.space,
                                                  self.hpo.sampler_kwargs)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "heartbeat is meant for optimize()"
                    trial = self.study.ask(fixed_distributions=self.space)
                # alive from the first moment (a trial that never beat is failed by the
                # other workers after the grace period: see fail_dead_trials)
                self.storage.record_heartbeat(trial._trial_id)
                if trial.user_attrs.get("interrupted"):  # copied from the trial it retries
                    trial.set_user_attr("interrupted", None)
                trial.set_user_attr("hpo_run",
                                    {k: v for k, v in self.hpo_run.items() if v is not None})
                trial.set_user_attr("worker", worker_id())
                batch.append(trial)
            return batch

    def _run_batch(self, batch: list[optuna.Trial]) -> None:
        try:
            with Heartbeat(self.storage, batch, self.hpo.heartbeat_interval_s):
                self.in_trials = True
                try:
                    if self.interrupted:  # noted just before: do not start the trials
                        raise KeyboardInterrupt
                    results = self._launch(batch)
                finally:
                    self.in_trials = False
            if self.interrupted:
                raise KeyboardInterrupt  # Ctrl-C landed in a trial and surfaced as its error
        except BaseException:  # Ctrl-C: give the points back and leave the trials FAILED
            for trial in batch:
                give_back(self.study, trial, "the sweep was interrupted")
            raise
        for trial, (values, error, ret) in zip(batch, results, strict=True):
            self._record(trial, ret)
            if error is None:
                frozen = tell(self.study, trial, values)
            else:
                trial.set_user_attr("error", error)
                frozen = tell(self.study, trial, state=TrialState.FAIL)
            if error is None and frozen.state != TrialState.COMPLETE:
                _say(f"[hpo] trial {trial.number}: another worker had failed it meanwhile "
                     "(heartbeat late); its point was retried there, this result is dropped")
            finished, _, _ = counts(self.study.get_trials(deepcopy=False))
            _say(trial_line(finished, self.total, frozen, self.study))

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
        # One registry name per trial: trials running at once (joblib, other workers) would
        # race for the next version of one shared name, and each trial's model stays findable.
        base = OmegaConf.select(self.config, "model_name", default=None)
        for override in self.fixed:
            if override.lstrip("+").startswith("model_name="):
                base = override.split("=", 1)[1]
        model = f"{base or self.hpo.study_name}-trial{trial.number}"
        return [*(o for o in self.fixed if not o.lstrip("+").startswith("model_name=")),
                *trial_overrides(trial.params, self.written), f"model_name={format_value(model)}",
                f"++hpo.trial={_dict_value(info)}"]

    def _launch(self, batch: list[optuna.Trial]) -> list[tuple[Any, str | None, Any]]:
        """(values, error, job return) per trial: composing or running a job may fail; that
        is the trials' failure, never the sweep's."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            returns = self.launcher.launch([self._overrides(t) for t in batch],
                                           initial_job_idx=self.job_idx)
        except Exception as exc:  # the sampled overrides could not be composed, a job died
            return [(None, _one_line(exc), None) for _ in batch]
        finally:
            self.job_idx += len(batch)
        out = []
        for trial, ret in zip(batch, returns, strict=True):
            log = trial_log(str(self.launch_dir), self.sweep_dir, trial.number)
            if ret.status != JobStatus.COMPLETED:  # the task raised: the exception is the value
                out.append((None, _one_line(getattr(ret, "_return_value", None) or
                                            RuntimeError(f"the trial failed; see {log}")), ret))
                continue
            try:
                out.append((_values(ret.return_value, len(self.hpo.directions)), None, ret))
            except ValueError as exc:
                out.append((None, str(exc), ret))
        return out

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


def _launcher_jobs(config: DictConfig) -> int:
    """Batch size when `hpo.n_jobs` is null: the joblib launcher's n_jobs (-1 = every CPU),
    else one trial at a time."""
    n = OmegaConf.select(config, "hydra.launcher.n_jobs", default=None)
    if isinstance(n, int) and n != 0:
        return n if n > 0 else max(1, (os.cpu_count() or 1) + 1 + n)
    return 1


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
