"""Durable, shared studies: where they live, resuming them, and what counts as finished.

A study is stored with Optuna's RDB storage in the embedded store's database by default
(`sparsey.db` in the launch directory, next to `experiments`) or at any SQLAlchemy URL
(PostgreSQL for a study shared by many workers). Rerunning the same command resumes the
study: `hpo.n_trials` is the study's total, so only the missing trials run.

Each running trial has an Optuna heartbeat. A trial whose heartbeat stops for
`hpo.grace_period_s` (its worker died: SIGKILL, a lost node, a power cut) is failed by the
next worker that looks, and Optuna's retry callback queues its point again; that failed
trial is then not counted, so no point is lost and none is counted twice. On the worker's
own host a dead process is seen at once (`hpo.local_pid_check`), without the grace period.
"""

from __future__ import annotations

import copy
import datetime
import inspect
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from sparsey_hydra.errors import SparseyConfigError

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


# -- storage ---------------------------------------------------------------------------------

def anchor_sqlite(url: str, launch_dir: Path) -> str:
    """A relative SQLite file lives in the launch directory, as the result store's does."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url.removeprefix("sqlite:///")
        if rel and rel != ":memory:" and not rel.startswith("file:"):
            return f"sqlite:///{(launch_dir / rel).resolve()}"
    return url


def with_driver(url: str) -> str:
    """`postgresql://…` means psycopg 3 (installed with this project) unless psycopg2 is
    there: SQLAlchemy's default PostgreSQL driver is psycopg2."""
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def default_storage(system: Mapping[str, Any], launch_dir: Path) -> str:
    """The database of the embedded store: the read store first, then the write stores."""
    stores = system.get("stores") or {}
    order = [system.get("read_store"), *(system.get("write_stores") or [])]
    for key in dict.fromkeys(k for k in order if k):
        entry = stores.get(key) or {}
        if entry.get("name") == "sqlite" or (entry.get("name") != "postgresql"
                                             and isinstance(entry.get("url"), str)):
            return anchor_sqlite(str(entry.get("url") or "sqlite:///sparsey.db"), launch_dir)
        if entry.get("name") == "postgresql":
            from sparsey_hydra.stores.postgres_store import PostgresParams, postgres_url

            params = PostgresParams(**{k: v for k, v in entry.items() if k != "name"})
            url = postgres_url(params, f"system.stores.{key}")
            return url.render_as_string(hide_password=False)
    raise SparseyConfigError(
        "hpo.storage: none of the configured stores is an SQL database; set hpo.storage to a "
        "SQLAlchemy URL, e.g. hpo.storage=sqlite:///sparsey.db")


def shown_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


def retry_callback(max_retry: int) -> Any:
    """Optuna's retry callback (renamed in optuna 4.9; both names are supported)."""
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if cls is None:
        cls = optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(max_retry=max_retry)


#: what a database says when another process created Optuna's schema at the same moment
SCHEMA_RACES = ("already exists", "UNIQUE constraint failed", "duplicate key value")


def open_storage(url: str, heartbeat_interval_s: int = 10, grace_period_s: int = 60,
                 max_retry: int = 3) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage with heartbeats and the retry callback; SQLite waits for other
    writers (workers share the file)."""
    sqlite = url.startswith("sqlite")
    engine: dict[str, Any] = ({"connect_args": {"timeout": 60}} if sqlite
                              else {"pool_pre_ping": True})
    if sqlite:
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    callback_kw = ("heartbeat_stale_trial_callback"
                   if "heartbeat_stale_trial_callback"
                   in inspect.signature(optuna.storages.RDBStorage).parameters
                   else "failed_trial_callback")
    try:
        for attempt in range(5):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # heartbeats are "experimental" in Optuna
                    return optuna.storages.RDBStorage(
                        with_driver(url), engine_kwargs=engine,
                        heartbeat_interval=heartbeat_interval_s, grace_period=grace_period_s,
                        **{callback_kw: retry_callback(max_retry)})
            except Exception as exc:  # workers starting together race to create the schema
                # (a table created twice, or the schema version row stamped twice)
                if not any(race in str(exc) for race in SCHEMA_RACES) or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")
    except ImportError as exc:
        raise SparseyConfigError(
            f"hpo.storage: cannot open '{shown_url(url)}': database driver not installed "
            f"({exc}); PostgreSQL URLs use psycopg: postgresql+psycopg://user@host/db"
        ) from None
    except Exception as exc:  # driver / SQLAlchemy errors: first line only
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise SparseyConfigError(
            f"hpo.storage: cannot open '{shown_url(url)}': {reason}; use a reachable "
            "SQLAlchemy URL such as sqlite:///sparsey.db or "
            "postgresql+psycopg://user@host:5432/db") from None


def load_study(storage: optuna.storages.RDBStorage, name: str, directions: list[str],
               spec: dict[str, Any]) -> optuna.Study:
    """Create the study or load it; a rerun must keep its directions and objective."""
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=directions,
                                    load_if_exists=True)
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it just now
        study = optuna.load_study(storage=storage, study_name=name)
    had = [d.name.lower() for d in study.directions]
    if had != directions:
        raise SparseyConfigError(
            f"hpo.study_name: study '{name}' exists with direction(s) {had}, this config asks "
            f"for {directions}; choose a new hpo.study_name (values of different objectives "
            "cannot share a study)")
    stored = study.user_attrs.get("objective")
    if stored is None:
        study.set_user_attr("objective", spec)
    elif stored != spec:
        raise SparseyConfigError(
            f"hpo.objective: study '{name}' was run with a different objective ({stored}); "
            "choose a new hpo.study_name to change the objective")
    return study


# -- progress and recovery -------------------------------------------------------------------

def retried_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Trials whose point was queued again by the retry callback (they do not count)."""
    return {int(n) for t in trials for n in t.system_attrs.get("retry_history", [])}


def counts(trials: list[FrozenTrial]) -> tuple[int, int, int]:
    """(finished, running, waiting): finished are COMPLETE, PRUNED and FAILED trials that were
    not retried; running are trials some worker is on; waiting are queued points."""
    retried = retried_numbers(trials)
    finished = sum(1 for t in trials if t.state in FINISHED and t.number not in retried)
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    waiting = sum(1 for t in trials if t.state == TrialState.WAITING)
    return finished, running, waiting


def worker_id() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead for us
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def local_dead(trial: FrozenTrial) -> bool:
    """A RUNNING trial whose worker process ran on this host and is gone."""
    worker = trial.user_attrs.get("worker") or {}
    if worker.get("host") != socket.gethostname() or worker.get("pid") is None:
        return False
    pid = int(worker["pid"])
    return pid != os.getpid() and not _pid_alive(pid)


def fail_dead_trials(study: optuna.Study, local_pid_check: bool) -> list[int]:
    """Fail the RUNNING trials of dead workers and queue their points again (Optuna's
    `fail_stale_trials` with the storage's retry callback); their numbers.

    Optuna only fails a trial whose heartbeat is older than the grace period; a worker killed
    between asking for a trial and its first heartbeat leaves one with no heartbeat at all,
    which would stay RUNNING for ever (and the study unfinished). Workers ask and beat under
    the study lock, so a trial without a heartbeat that started more than a grace period ago
    is such a one: it is failed here too.
    """
    storage = study._storage
    running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    if not running:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)  # heartbeat older than the grace period
        callback = _callback(storage)
        silent = never_beat(storage, running)
        dead = [t for t in running
                if t._trial_id in silent or (local_pid_check and local_dead(t))]
        for t in dead:
            try:
                if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker failed or finished it meanwhile
            if callback is not None:
                callback(study, copy.deepcopy(storage.get_trial(t._trial_id)))
    now = {t.number: t for t in study.get_trials(deepcopy=False)}
    return [t.number for t in running if now[t.number].state == TrialState.FAIL
            and "error" not in now[t.number].user_attrs]


def never_beat(storage: Any, running: list[FrozenTrial]) -> set[int]:
    """Ids of the RUNNING trials that started more than a grace period ago and have no
    heartbeat (worker clocks are assumed to agree within the grace period)."""
    backend = getattr(storage, "_backend", storage)  # the study's caching wrapper
    engine, grace = getattr(backend, "engine", None), getattr(backend, "grace_period", None)
    if engine is None or grace is None:
        return set()
    cutoff = datetime.datetime.now() - datetime.timedelta(seconds=grace)
    old = [t._trial_id for t in running if t.datetime_start and t.datetime_start < cutoff]
    if not old:
        return set()
    from optuna.storages._rdb.models import TrialHeartbeatModel

    column = TrialHeartbeatModel.trial_id
    with engine.connect() as conn:
        beating = set(conn.execute(sqlalchemy.select(column).where(column.in_(old))).scalars())
    return set(old) - beating


def _callback(storage: Any) -> Any:
    """The storage's retry callback (`get_failed_trial_callback` before optuna 4.9); the
    study's storage is Optuna's caching wrapper, which only forwards the getter."""
    getter = getattr(storage, "get_heartbeat_stale_trial_callback", None) or getattr(
        storage, "get_failed_trial_callback", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getter() if getter is not None else None


def give_back(study: optuna.Study, trial: optuna.Trial, why: str) -> None:
    """An interrupted trial (Ctrl-C): FAILED, and its point queued again by the callback."""
    trial.set_user_attr("interrupted", why)
    frozen = tell(study, trial, state=TrialState.FAIL)
    callback = _callback(study._storage)
    if callback is not None and frozen.state == TrialState.FAIL:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            callback(study, copy.deepcopy(frozen))


def tell(study: optuna.Study, trial: optuna.Trial | int, values: Any = None,
         state: TrialState | None = None) -> FrozenTrial:
    """`study.tell` outside `optimize`. The grid sampler's "grid exhausted" `study.stop()`
    raises there after the result is stored, which only means the grid is done; a trial
    another worker already failed (its heartbeat was late) keeps that state."""
    number = trial if isinstance(trial, int) else trial.number
    try:
        return study.tell(trial, values, state=state, skip_if_finished=True)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


class Heartbeat:
    """Optuna heartbeats for the trials this worker runs, from one thread.

    The heartbeat is what tells other workers (on any machine) that these trials are alive.
    """

    def __init__(self, storage: Any, trials: list[optuna.Trial], interval_s: float) -> None:
        self._storage = storage
        self._ids = [t._trial_id for t in trials]
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpo-heartbeat", daemon=True)

    def beat(self) -> None:
        for trial_id in self._ids:
            try:
                self._storage.record_heartbeat(trial_id)
            except Exception:
                pass  # a missed beat only matters after the grace period

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.beat()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
