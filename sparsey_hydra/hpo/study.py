"""Durable studies: where they live, resuming them, and what counts as a finished trial.

A study is stored with Optuna's RDB storage in the embedded store's database by default
(`sparsey.db` in the launch directory, next to `experiments`) or at any SQLAlchemy URL
(PostgreSQL for shared or parallel sweeps). Rerunning the same command resumes the study:
`hpo.n_trials` is the study's total, so only the missing trials run.

A trial left RUNNING by a process that died (SIGKILL, power cut) is recovered: its point is
enqueued again (`retry_of`), then it is marked FAILED and not counted, so no point is lost
and none is counted twice. A trial is known dead when its worker process on this host is
gone, or when its heartbeat (refreshed while it runs) is older than `hpo.stale_after_s`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
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


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage; SQLite waits for other writers (trials share the file)."""
    sqlite = url.startswith("sqlite")
    kwargs: dict[str, Any] = ({"connect_args": {"timeout": 30}} if sqlite
                              else {"pool_pre_ping": True})
    if sqlite:
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except ImportError as exc:
        raise SparseyConfigError(
            f"hpo.storage: cannot open '{shown_url(url)}': database driver not installed "
            f"({exc}); for PostgreSQL pip install 'sparsey-hydra[postgresql]'") from None
    except Exception as exc:  # driver / SQLAlchemy errors: first line only
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise SparseyConfigError(
            f"hpo.storage: cannot open '{shown_url(url)}': {reason}; use a reachable "
            "SQLAlchemy URL such as sqlite:///sparsey.db") from None


def load_study(storage: optuna.storages.RDBStorage, name: str, directions: list[str],
               spec: dict[str, Any]) -> optuna.Study:
    """Create the study or load it; a rerun must keep its directions and objective."""
    study = optuna.create_study(storage=storage, study_name=name, directions=directions,
                                load_if_exists=True)
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

def retried_numbers(trials: list[FrozenTrial]) -> set[int]:
    return {int(t.user_attrs["retry_of"]) for t in trials if "retry_of" in t.user_attrs}


def counts(trials: list[FrozenTrial]) -> tuple[int, int]:
    """(finished, running): finished are COMPLETE, PRUNED and FAILED trials that were not
    interrupted-and-retried; running are trials some live worker is on."""
    retried = retried_numbers(trials)
    finished = sum(1 for t in trials if t.state in FINISHED and t.number not in retried)
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    return finished, running


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


def is_stale(trial: FrozenTrial, now: float, stale_after_s: float) -> bool:
    worker = trial.user_attrs.get("worker") or {}
    if worker.get("host") == socket.gethostname() and worker.get("pid") is not None:
        if int(worker["pid"]) != os.getpid() and not _pid_alive(int(worker["pid"])):
            return True
    beat = trial.user_attrs.get("heartbeat")
    if beat is None and trial.datetime_start is not None:
        beat = trial.datetime_start.timestamp()
    return beat is not None and now - float(beat) > stale_after_s


def recover_interrupted(study: optuna.Study, stale_after_s: float) -> list[int]:
    """Re-enqueue the points of dead workers' trials, then mark those trials FAILED."""
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    now = time.time()
    recovered = []
    for t in trials:
        if t.state != TrialState.RUNNING or not is_stale(t, now, stale_after_s):
            continue
        if t.number not in retried:  # enqueue first: a crash in between loses nothing
            study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number})
        try:
            tell(study, t.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):
            continue  # another worker finished or recovered it meanwhile
        recovered.append(t.number)
    return recovered


def tell(study: optuna.Study, trial: optuna.Trial | int, values: Any = None,
         state: TrialState | None = None) -> FrozenTrial:
    """`study.tell` outside `optimize`: the grid sampler's "grid exhausted" `study.stop()`
    raises there after the result is stored, which only means the grid is done."""
    number = trial if isinstance(trial, int) else trial.number
    try:
        return study.tell(trial, values, state=state)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


class Heartbeat:
    """Refreshes a running trial's `heartbeat` attribute so other workers see it is alive."""

    def __init__(self, trial: optuna.Trial, interval_s: float) -> None:
        self._trial = trial
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpo-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._trial.set_user_attr("heartbeat", time.time())
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._trial.set_user_attr("heartbeat", time.time())
            except Exception:
                pass  # a missed beat only matters after stale_after_s

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
