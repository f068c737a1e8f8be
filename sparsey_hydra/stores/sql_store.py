"""HPO runs, experiments, per-step metrics and the model registry in any SQL database.

The `sqlite` and `postgresql` adapters are this one class (SQLAlchemy Core) with different
URLs. SQLite (`sqlite:///sparsey.db`) is the embedded default; several processes (HPO trials,
parallel sweeps) may share one file, so every write is one short transaction and SQLite
connections wait on a busy database instead of failing at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.stores.base import STATUSES, StepRow, check_status, first_line, scrub
from sparsey_hydra.tracking.secrets import redact_url

# One MetaData for the module: every SqlStore creates the same four tables.
metadata = MetaData()

hpo_runs_table = Table(
    "hpo_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("config", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("summary", Text, nullable=True),
)

experiments_table = Table(
    "experiments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("config", Text, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("summary", Text, nullable=True),
    Column("hpo_run_id", Integer, ForeignKey("hpo_runs.id"), nullable=True),
)

step_metrics_table = Table(
    "step_metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False),
    Column("phase", String(16), nullable=False),
    Column("step", Integer, nullable=False),
    Column("layer", Integer, nullable=False),
    Column("metric", String(255), nullable=False),
    Column("value", Float, nullable=True),
    Index("ix_step_metrics_experiment_metric", "experiment_id", "metric"),
)

models_table = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("path", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("config", Text, nullable=False),
    Column("metrics_summary", Text, nullable=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("name", "version", name="uq_models_name_version"),
)

_STEP_COLUMNS = ("experiment_id", "phase", "step", "layer", "metric", "value")
# positional placeholder of each DB-API paramstyle (sqlite3: qmark; psycopg: pyformat/format)
_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _dumps(obj: Any) -> str:
    """Stable JSON text: sorted keys so equal configs compare equal as strings."""
    return json.dumps(obj, sort_keys=True, default=str)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite drops the time zone on the way back; every stored time is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


SQLITE_HINT = "use a reachable SQLAlchemy URL such as sqlite:///sparsey.db"


class SqlStore:
    """Result store on SQLAlchemy Core; opening it creates any missing tables.

    `url` may be a string or a `sqlalchemy.URL` (the postgresql adapter builds one holding
    the password read from the environment). The password is kept only inside the engine:
    `url` as stored on the object and every error message show it masked.
    """

    def __init__(
        self,
        url: str | URL,
        data_resolution: int = 2,
        key: str = "system.stores.sqlite.url",
        hint: str = SQLITE_HINT,
        connect_args: dict[str, Any] | None = None,
    ) -> None:
        self.data_resolution = int(data_resolution)
        self._key, self._hint = key, hint
        self._password: str | None = None
        try:
            parsed = url if isinstance(url, URL) else make_url(url)
        except (SQLAlchemyError, ValueError) as exc:
            raise self._open_error(redact_url(str(url)), first_line(exc)) from None
        self._password = parsed.password if isinstance(parsed.password, str) else None
        self._shown_url = parsed.render_as_string(hide_password=True)
        self.url = self._shown_url
        args: dict[str, Any] = dict(connect_args or {})
        if parsed.get_backend_name() == "sqlite":
            args.setdefault("timeout", 30)  # wait for other processes' writes, don't fail
            self._make_sqlite_parent(parsed)
        try:
            self.engine: Engine = create_engine(parsed, connect_args=args)
            self._create_tables()
        except ImportError as exc:
            reason = f"database driver not installed ({exc})"
            raise self._open_error(self._shown_url, reason) from None
        except (SQLAlchemyError, OSError, ValueError) as exc:
            raise self._open_error(self._shown_url, first_line(exc)) from None

    # -- setup -------------------------------------------------------------------------------

    def _open_error(self, shown_url: str, reason: str) -> SparseyConfigError:
        return SparseyConfigError(scrub(
            f"{self._key}: cannot open '{shown_url}': {reason}; {self._hint}", self._password))

    def _make_sqlite_parent(self, parsed: URL) -> None:
        """SQLite creates the file but not its folder; an in-memory database has neither."""
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            return
        parent = Path(database).parent  # as SQLite sees it: no ~ expansion
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            blocker = next((p for p in (parent, *parent.parents) if p.is_file()), None)
            reason = (
                f"'{blocker}' is a file, not a folder"
                if blocker is not None
                else f"cannot create folder '{parent}' ({exc.strerror or exc})"
            )
            raise self._open_error(self._shown_url, reason) from None

    def _create_tables(self) -> None:
        """Create missing tables; a second process creating them at the same time is fine."""
        for attempt in range(3):
            try:
                metadata.create_all(self.engine)
                return
            except (OperationalError, IntegrityError, ProgrammingError) as exc:
                # SQLite says "already exists"; PostgreSQL may also report a duplicate type.
                racing = "already exists" in str(exc) or "duplicate key" in str(exc)
                if not racing or attempt == 2:
                    raise

    def close(self) -> None:
        """Release pooled connections (lets the SQLite file be removed or moved)."""
        self.engine.dispose()

    # -- HPO runs ----------------------------------------------------------------------------

    def start_hpo_run(self, name: str, config: dict[str, Any]) -> int:
        """Record a running hyperparameter search; its trials are experiments that name it."""
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(hpo_runs_table).values(
                    name=name, config=_dumps(config), status="running", started_at=_now()
                )
            )
            return int(result.inserted_primary_key[0])

    def finish_hpo_run(
        self,
        hpo_run_id: int,
        status: str,
        summary: dict[str, Any] | None,
        error: str | None = None,
    ) -> None:
        """Close an HPO run with its status, its summary (e.g. the best trial) and any error."""
        self._finish(hpo_runs_table, hpo_run_id, "HPO run", status, summary, error)

    def _finish(self, table: Table, row_id: int, what: str, status: str,
                summary: dict[str, Any] | None, error: str | None) -> None:
        """Set a run's final status, summary, error and end time (experiments, HPO runs)."""
        check_status(status)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(table)
                .where(table.c.id == row_id)
                .values(
                    status=status,
                    summary=None if summary is None else _dumps(summary),
                    error=error,
                    ended_at=_now(),
                )
            )
            if result.rowcount == 0:
                raise SparseyConfigError(f"unknown {what} id {row_id}")

    @staticmethod
    def _run_dict(row: Mapping[str, Any]) -> dict[str, Any]:
        """A run row as a dict: config and summary decoded from JSON, times in UTC."""
        out = dict(row)
        out["config"] = _loads(out["config"])
        out["summary"] = _loads(out["summary"])
        out["started_at"] = _utc(out["started_at"])
        out["ended_at"] = _utc(out["ended_at"])
        return out

    def get_hpo_run(self, hpo_run_id: int) -> dict[str, Any]:
        """One HPO run as a dict, config and summary decoded from JSON."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(hpo_runs_table).where(hpo_runs_table.c.id == hpo_run_id))
                .mappings()
                .first()
            )
        if row is None:
            raise SparseyConfigError(
                f"unknown HPO run id {hpo_run_id}; `list_hpo_runs()` shows the known ids"
            )
        return self._run_dict(row)

    def list_hpo_runs(self) -> list[dict[str, Any]]:
        """All HPO runs, oldest first."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(select(hpo_runs_table).order_by(hpo_runs_table.c.id))
                .mappings()
                .all()
            )
        return [self._run_dict(r) for r in rows]

    # -- experiments -------------------------------------------------------------------------

    def start_experiment(
        self,
        name: str,
        kind: str,
        config: dict[str, Any],
        seed: int,
        hpo_run_id: int | None = None,
    ) -> int:
        """Record a running experiment (an HPO trial when `hpo_run_id` is given); its id."""
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(experiments_table).values(
                    name=name,
                    kind=kind,
                    config=_dumps(config),
                    seed=int(seed),
                    status="running",
                    started_at=_now(),
                    hpo_run_id=hpo_run_id,
                )
            )
            return int(result.inserted_primary_key[0])

    def log_steps(self, experiment_id: int, rows: Iterable[StepRow]) -> None:
        """Append (phase, step, layer, metric, value) rows in one transaction.

        NaN is stored as None (undefined), which is what SQLite would do anyway, so every
        backend reads the same thing back.
        """
        exp = int(experiment_id)
        params = [
            (exp, phase, int(step), int(layer), metric,
             None if value is None or math.isnan(value) else float(value))
            for phase, step, layer, metric, value in rows
        ]
        if not params:
            return
        mark = _PLACEHOLDER.get(self.engine.dialect.paramstyle)
        with self.engine.begin() as conn:
            if mark is None:  # another driver: SQLAlchemy's own (slower) executemany
                conn.execute(insert(step_metrics_table), [dict(zip(_STEP_COLUMNS, p,
                                                                   strict=True))
                                                          for p in params])
            else:
                # Per-MAC logging writes ~10⁵ rows per 1,000 frames; the driver's executemany
                # of plain tuples is ~4× faster than SQLAlchemy's per-row dict processing.
                conn.exec_driver_sql(
                    f"INSERT INTO step_metrics ({', '.join(_STEP_COLUMNS)}) VALUES "
                    f"({', '.join([mark] * len(_STEP_COLUMNS))})", params)

    def finish_experiment(
        self,
        experiment_id: int,
        status: str,
        summary: dict[str, Any] | None,
        error: str | None = None,
    ) -> None:
        """Close an experiment with its final status, summary and (if failed) the error."""
        self._finish(experiments_table, experiment_id, "experiment", status, summary, error)

    def get_experiment(self, experiment_id: int) -> dict[str, Any]:
        """One experiment as a dict, config and summary decoded from JSON."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(experiments_table).where(experiments_table.c.id == experiment_id)
                )
                .mappings()
                .first()
            )
        if row is None:
            raise SparseyConfigError(
                f"unknown experiment id {experiment_id}; `list_experiments()` shows the known ids"
            )
        return self._run_dict(row)

    def list_experiments(self, hpo_run_id: int | None = None) -> list[dict[str, Any]]:
        """All experiments (or one HPO run's trials), oldest first."""
        query = select(experiments_table).order_by(experiments_table.c.id)
        if hpo_run_id is not None:
            query = query.where(experiments_table.c.hpo_run_id == hpo_run_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [self._run_dict(r) for r in rows]

    def step_metrics(self, experiment_id: int) -> list[dict[str, Any]]:
        """An experiment's step rows in insertion order (phase, step, layer, metric, value)."""
        cols = [step_metrics_table.c[k] for k in ("phase", "step", "layer", "metric", "value")]
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(*cols)
                    .where(step_metrics_table.c.experiment_id == experiment_id)
                    .order_by(step_metrics_table.c.id)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    # -- models ------------------------------------------------------------------------------

    def next_model_version(self, name: str) -> int:
        """1 for a new name, else one more than the highest stored version."""
        with self.engine.connect() as conn:
            top = conn.execute(
                select(func.max(models_table.c.version)).where(models_table.c.name == name)
            ).scalar()
        return 1 if top is None else int(top) + 1

    def add_model(
        self,
        name: str,
        version: int,
        path: str,
        sha256: str,
        config: dict[str, Any],
        metrics_summary: dict[str, Any] | None,
        experiment_id: int | None,
    ) -> None:
        """Register a saved model; (name, version) is unique so a version is never overwritten."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(models_table).values(
                        name=name,
                        version=int(version),
                        path=str(path),
                        sha256=sha256,
                        config=_dumps(config),
                        metrics_summary=None
                        if metrics_summary is None
                        else _dumps(metrics_summary),
                        experiment_id=experiment_id,
                        created_at=_now(),
                    )
                )
        except IntegrityError:
            raise SparseyConfigError(
                f"model '{name}' version {version} already exists; "
                f"the next free version is {self.next_model_version(name)}"
            ) from None

    @staticmethod
    def _model_dict(row: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(row)
        out["config"] = _loads(out["config"])
        out["metrics_summary"] = _loads(out["metrics_summary"])
        out["created_at"] = _utc(out["created_at"])
        return out

    def get_model(self, name: str, version: int | None = None) -> dict[str, Any]:
        """A model by name and version (the latest when version is None)."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(models_table)
                    .where(models_table.c.name == name)
                    .order_by(models_table.c.version)
                )
                .mappings()
                .all()
            )
            if not rows:
                names = (
                    conn.execute(
                        select(models_table.c.name).distinct().order_by(models_table.c.name)
                    )
                    .scalars()
                    .all()
                )
                known = ", ".join(names) if names else "none registered yet"
                raise SparseyConfigError(f"unknown model '{name}'; known models: {known}")
        if version is None:
            return self._model_dict(rows[-1])
        for row in rows:
            if row["version"] == version:
                return self._model_dict(row)
        versions = ", ".join(str(r["version"]) for r in rows)
        raise SparseyConfigError(
            f"model '{name}' has no version {version}; known versions: {versions}"
        )

    def list_models(self) -> list[dict[str, Any]]:
        """Every registered model, by name then version."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(models_table).order_by(models_table.c.name, models_table.c.version)
                )
                .mappings()
                .all()
            )
        return [self._model_dict(r) for r in rows]


__all__ = [
    "STATUSES",
    "SqlStore",
    "StepRow",
    "experiments_table",
    "hpo_runs_table",
    "metadata",
    "models_table",
    "step_metrics_table",
]
