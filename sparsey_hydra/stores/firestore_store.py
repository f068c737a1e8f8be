"""The `firestore` adapter: the same records in Google Firestore, through firebase-admin.

sparseypy logged to Firestore; labs that already have a Firebase project keep doing so.

Layout (collection names configurable under `collections`):

- `hpo_runs/{auto id}`: name, config, status, error, started_at, ended_at, summary, order
- `experiments/{auto id}`: name, kind, config, seed, status, error, started_at, ended_at,
  summary, hpo_run_id, order (creation order in µs: timestamps of quick writes can tie)
- `batches/{experiment id}-{seq}`: experiment_id, seq, n and the step rows as five parallel
  arrays (phase, step, layer, metric, value) of at most `batch_size` rows, split further
  until the document's size (computed by Firestore's published formula) is under 1 MiB;
  one `log_steps` call's documents are committed atomically, in groups of at most 500 writes
  and 9 MiB
- `models/{name}@v{version}`: name, version, path, sha256, config, metrics_summary,
  experiment_id, created_at
- `model_registry/{name}`: name, latest_version, versions, updated_at

Configs and summaries are stored as JSON text: Firestore forbids arrays of arrays, and text
reads back exactly what the SQL stores read back. Queries are kept to what both real
Firestore and the test emulator serve: single-document gets, equality filters on top-level
fields, whole-collection streams and count aggregations; ordering is done here, not by the
server (an equality filter plus an order on another field would need a composite index).

Credentials: with `FIRESTORE_EMULATOR_HOST` set, anonymous credentials reach the emulator.
Otherwise the service-account key file is the path held by the environment variable that
`credentials_env` names (the variable's NAME is in the config, never the key). When that
variable is set, the key file is loaded and checked with the emulator too.

Tested against `@firestore-emulator/server` 0.3.15 on loopback. What that emulator leaves
untested here, and real Firestore does differently or in addition:

- the 1 MiB document limit, the 10 MiB commit limit and the 40,000 index entries limit are
  not enforced by the emulator (the size checks here are tested on their own; batch_size
  is capped at 5,000 rows so the five arrays stay under the index-entry limit);
- transaction conflicts: `add_model` runs in a transaction, which real Firestore retries
  when two writers race for the same version; the emulator never detects a conflict;
- authentication, security rules, IAM and quota errors (real credentials are only parsed);
- stream resumption with cursors after a transient error (the emulator has no cursors);
- server-side ordering and missing-field semantics (real Firestore drops documents without
  an ordered field; nothing here relies on either);
- timestamp precision (real Firestore keeps microseconds, the emulator milliseconds);
- integers beyond 2**53 (the emulator refuses them; real Firestore keeps full int64);
  nothing here writes one unless a run's seed is that large.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.stores.base import StepRow, StoreParams, check_status, first_line

EMULATOR_ENV = "FIRESTORE_EMULATOR_HOST"
MAX_DOC_BYTES = 1_048_576  # Firestore's document size limit (1 MiB)
MAX_BATCH_ROWS = 5_000
MAX_COMMIT_WRITES = 500  # Firestore's limit on writes per commit
MAX_COMMIT_BYTES = 9 * MAX_DOC_BYTES  # under the 10 MiB request limit, with headroom
EMULATOR_PROJECT = "demo-sparsey-hydra"
_RESERVED_ID = re.compile(r"^__.*__$")


class FirestoreCollections(BaseModel):
    """Collection names, so several setups (or projects) can share one database."""

    model_config = ConfigDict(extra="forbid")

    hpo_runs: str = "hpo_runs"
    experiments: str = "experiments"
    batches: str = "batches"
    models: str = "models"
    model_registry: str = "model_registry"

    @field_validator("*")
    @classmethod
    def _valid_collection_id(cls, value: str) -> str:
        if not value or "/" in value or value in (".", "..") or _RESERVED_ID.match(value):
            raise ValueError("a Firestore collection id: non-empty, no '/', not '.', '..' "
                             "or __name__")
        return value


class FirestoreParams(StoreParams):
    """`system.stores.<key>` for `name: firestore`."""

    project_id: str | None = None  # default: the key file's project (the emulator: a demo one)
    database: str = "(default)"
    credentials_env: str = "GOOGLE_APPLICATION_CREDENTIALS"  # NAME of the variable
    collections: FirestoreCollections = Field(default_factory=FirestoreCollections)
    batch_size: int = Field(default=1000, ge=1, le=MAX_BATCH_ROWS)  # step rows per document
    timeout_s: float = Field(default=30.0, gt=0)  # per call, retries included


# -- Firestore's storage-size formula (firebase.google.com/docs/firestore/storage-size) ------

def value_size(value: Any) -> int:
    """Stored size of one field value."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float | datetime):
        return 8
    if isinstance(value, str):
        return len(value.encode("utf-8")) + 1
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, dict):
        return sum(len(str(k).encode("utf-8")) + 1 + value_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(value_size(v) for v in value)
    raise TypeError(f"no Firestore size for {type(value).__name__}")


def document_size(collection: str, doc_id: str, data: dict[str, Any]) -> int:
    """Stored size of a top-level document: its name, its fields and 32 bytes of overhead."""
    name = len(collection.encode("utf-8")) + 1 + len(doc_id.encode("utf-8")) + 1 + 16
    return name + value_size(data) + 32


def name_to_id(name: str) -> str:
    """A model name as a document id: no '/', never '.', '..' or __reserved__."""
    out = quote(name, safe="")
    if out[:1] in (".", "_"):
        out = f"%{ord(out[0]):02X}{out[1:]}"
    return out or "%00"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _now() -> datetime:
    return datetime.now(UTC)


_last_order = 0


def _order() -> int:
    """Creation order (µs, strictly increasing in a process): timestamps can tie.

    Microseconds, not nanoseconds: the emulator refuses integers beyond 2**53.
    """
    global _last_order
    _last_order = max(time.time_ns() // 1000, _last_order + 1)
    return _last_order


class FirestoreStore:
    """Result store in a Firestore database (or the emulator named by FIRESTORE_EMULATOR_HOST)."""

    def __init__(self, params: FirestoreParams, key: str = "system.stores.firestore") -> None:
        self.data_resolution = int(params.data_resolution)
        self.key = key
        self.params = params
        self.names = params.collections
        self.batch_size = params.batch_size
        self._seq: dict[str, int] = {}
        try:
            import firebase_admin
            from firebase_admin import credentials, firestore
            from google.api_core.retry import Retry
        except ImportError as exc:
            raise SparseyConfigError(
                f"{key}.name: the firestore store needs firebase-admin ({exc}); "
                "pip install 'sparsey-hydra[firestore]'"
            ) from None
        self._firestore = firestore
        self._retry = Retry(timeout=params.timeout_s)
        self._timeout = params.timeout_s
        emulator = os.environ.get(EMULATOR_ENV) or None
        key_project, cred = self._load_key(credentials, required=emulator is None)
        project = (params.project_id or key_project or os.environ.get("GOOGLE_CLOUD_PROJECT")
                   or (EMULATOR_PROJECT if emulator else None))
        if project is None:
            raise SparseyConfigError(f"{key}.project_id: not set and the key file names no "
                                     "project; set it to your Firebase project id")
        if emulator:
            cred = _anonymous_credential(credentials)
        self.where = f"the emulator at {emulator}" if emulator else f"project '{project}'"
        self._app = firebase_admin.initialize_app(
            cred, {"projectId": project}, name=f"sparsey-store-{uuid.uuid4().hex}")
        try:
            database = None if params.database == "(default)" else params.database
            self.client = firestore.client(self._app, database_id=database)
            # One cheap read: an unreachable server or a refused key fails here, before any
            # training, rather than at the first write.
            self._col("model_registry").document("_sparsey_probe").get(
                retry=None, timeout=min(self._timeout, 10.0))
        except Exception as exc:
            self.close()
            fix = (f"start the emulator or unset {EMULATOR_ENV}" if emulator else
                   f"check {key}.project_id, the key file in ${params.credentials_env} "
                   "and the network")
            raise SparseyConfigError(
                f"{key}: cannot reach Firestore ({self.where}): {first_line(exc)}; {fix}"
            ) from None

    def _load_key(self, credentials: Any, required: bool) -> tuple[str | None, Any]:
        """(the key file's project id, its credential); the key's contents are never shown."""
        env = self.params.credentials_env
        path = os.environ.get(env)
        where = f"{self.key}.credentials_env"
        if not path:
            if required:
                raise SparseyConfigError(
                    f"{where}: environment variable ${env} is not set; export it as the path "
                    f"of the service-account key file (or set {EMULATOR_ENV} for an emulator)")
            return None, None
        if not os.path.isfile(path):
            raise SparseyConfigError(
                f"{where}: ${env} points to '{path}', which is not a file; "
                "download the service-account key and point the variable at it")
        try:
            cred = credentials.Certificate(path)
        except Exception:  # the reason may quote the key; name the file, not its contents
            raise SparseyConfigError(
                f"{where}: '{path}' (from ${env}) is not a service-account key file "
                "(JSON with type, project_id, private_key, client_email); download it again"
            ) from None
        return cred.project_id, cred

    # -- helpers -----------------------------------------------------------------------------

    def _col(self, kind: str) -> Any:
        return self.client.collection(getattr(self.names, kind))

    def _io(self) -> dict[str, Any]:
        return {"retry": self._retry, "timeout": self._timeout}

    def _check_size(self, kind: str, doc_id: str, data: dict[str, Any]) -> None:
        size = document_size(getattr(self.names, kind), doc_id, data)
        if size > MAX_DOC_BYTES:
            raise SparseyConfigError(
                f"{self.key}: a {kind} document would be {size} bytes, over Firestore's 1 MiB "
                "limit; shrink the config or summary, or record this run in a SQL store")

    def _get(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        snap = self._col(kind).document(str(doc_id)).get(**self._io())
        return {"id": snap.id, **snap.to_dict()} if snap.exists else None

    def _stream(self, query: Any) -> list[dict[str, Any]]:
        return [{"id": s.id, **s.to_dict()} for s in query.stream(**self._io())]

    def _eq(self, kind: str, field: str, value: Any) -> Any:
        return self._col(kind).where(filter=self._firestore.FieldFilter(field, "==", value))

    @staticmethod
    def _by_creation(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(docs, key=lambda d: (d.get("order", 0), d["started_at"], d["id"]))

    @staticmethod
    def _run_dict(doc: dict[str, Any]) -> dict[str, Any]:
        out = dict(doc)
        out.pop("order", None)
        out["config"] = _loads(out.get("config"))
        out["summary"] = _loads(out.get("summary"))
        for k in ("error", "ended_at"):
            out.setdefault(k, None)
        return out

    def _create_run(self, kind: str, data: dict[str, Any]) -> str:
        ref = self._col(kind).document()
        data = {**data, "order": _order()}
        self._check_size(kind, ref.id, data)
        ref.create(data, **self._io())
        return ref.id

    def _finish_run(self, kind: str, run_id: Any, status: str,
                    summary: dict[str, Any] | None, error: str | None) -> None:
        check_status(status)
        values = {"status": status, "summary": None if summary is None else _dumps(summary),
                  "error": error, "ended_at": _now()}
        current = self._get(kind, str(run_id))
        if current is None:
            label = "experiment" if kind == "experiments" else "HPO run"
            raise SparseyConfigError(f"unknown {label} id {run_id}")
        self._check_size(kind, str(run_id), {**current, **values})
        self._col(kind).document(str(run_id)).update(values, **self._io())

    # -- HPO runs ----------------------------------------------------------------------------

    def start_hpo_run(self, name: str, config: dict[str, Any]) -> str:
        """Record a running hyperparameter search; its trials are experiments that name it."""
        return self._create_run("hpo_runs", {
            "name": name, "config": _dumps(config), "status": "running", "error": None,
            "started_at": _now(), "ended_at": None, "summary": None})

    def finish_hpo_run(self, hpo_run_id: str, status: str, summary: dict[str, Any] | None,
                       error: str | None = None) -> None:
        """Close an HPO run with its status, its summary (e.g. the best trial) and any error."""
        self._finish_run("hpo_runs", hpo_run_id, status, summary, error)

    def get_hpo_run(self, hpo_run_id: str) -> dict[str, Any]:
        doc = self._get("hpo_runs", str(hpo_run_id))
        if doc is None:
            raise SparseyConfigError(
                f"unknown HPO run id {hpo_run_id}; `list_hpo_runs()` shows the known ids")
        return self._run_dict(doc)

    def list_hpo_runs(self) -> list[dict[str, Any]]:
        """All HPO runs, oldest first."""
        return [self._run_dict(d) for d in self._by_creation(self._stream(self._col("hpo_runs")))]

    # -- experiments -------------------------------------------------------------------------

    def start_experiment(self, name: str, kind: str, config: dict[str, Any], seed: int,
                         hpo_run_id: str | None = None) -> str:
        """Record a running experiment (an HPO trial when `hpo_run_id` is given); its id."""
        exp_id = self._create_run("experiments", {
            "name": name, "kind": kind, "config": _dumps(config), "seed": int(seed),
            "status": "running", "error": None, "started_at": _now(), "ended_at": None,
            "summary": None, "hpo_run_id": None if hpo_run_id is None else str(hpo_run_id)})
        self._seq[exp_id] = 0
        return exp_id

    def _next_seq(self, experiment_id: str) -> int:
        """Batch numbers continue where the stored ones end (also after a restart)."""
        if experiment_id not in self._seq:
            result = self._eq("batches", "experiment_id", experiment_id).count().get(
                **self._io())
            self._seq[experiment_id] = int(result[0][0].value)
        return self._seq[experiment_id]

    def _batch_docs(self, experiment_id: str, rows: list[StepRow], seq: int
                    ) -> list[tuple[str, dict[str, Any]]]:
        """Rows as documents of at most batch_size rows, each split until under 1 MiB."""
        docs: list[tuple[str, dict[str, Any]]] = []
        pending = [rows[i:i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        while pending:
            chunk = pending.pop(0)
            doc_id = f"{experiment_id}-{seq + len(docs):06d}"
            data = {
                "experiment_id": experiment_id, "seq": seq + len(docs), "n": len(chunk),
                "phase": [r[0] for r in chunk], "step": [int(r[1]) for r in chunk],
                "layer": [int(r[2]) for r in chunk], "metric": [r[3] for r in chunk],
                "value": [None if r[4] is None or math.isnan(r[4]) else float(r[4])
                          for r in chunk],
            }
            size = document_size(self.names.batches, doc_id, data)
            if size <= MAX_DOC_BYTES:
                docs.append((doc_id, data))
            elif len(chunk) > 1:
                half = len(chunk) // 2
                pending[:0] = [chunk[:half], chunk[half:]]
            else:
                raise SparseyConfigError(
                    f"{self.key}: one step row is {size} bytes, over Firestore's 1 MiB "
                    "document limit; shorten the metric name")
        return docs

    def log_steps(self, experiment_id: str, rows: Iterable[StepRow]) -> None:
        """Append step rows as new batch documents (NaN stored as None, like SQL)."""
        rows = list(rows)
        if not rows:
            return
        experiment_id = str(experiment_id)
        docs = self._batch_docs(experiment_id, rows, self._next_seq(experiment_id))
        # One atomic commit per group of documents (Firestore takes ≤ 500 writes and ~10 MiB
        # per commit), so a failure never leaves half of a group behind.
        group: list[tuple[str, dict[str, Any]]] = []
        size = 0
        for doc_id, data in [*docs, ("", {})]:
            doc_size = document_size(self.names.batches, doc_id, data) if doc_id else 0
            if group and (not doc_id or len(group) == MAX_COMMIT_WRITES
                          or size + doc_size > MAX_COMMIT_BYTES):
                batch = self.client.batch()
                for gid, gdata in group:
                    batch.create(self._col("batches").document(gid), gdata)
                batch.commit(**self._io())
                self._seq[experiment_id] = group[-1][1]["seq"] + 1
                group, size = [], 0
            if doc_id:
                group.append((doc_id, data))
                size += doc_size

    def finish_experiment(self, experiment_id: str, status: str,
                          summary: dict[str, Any] | None, error: str | None = None) -> None:
        """Close an experiment with its final status, summary and (if failed) the error."""
        self._finish_run("experiments", experiment_id, status, summary, error)

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment as a dict, config and summary decoded from JSON."""
        doc = self._get("experiments", str(experiment_id))
        if doc is None:
            raise SparseyConfigError(f"unknown experiment id {experiment_id}; "
                                     "`list_experiments()` shows the known ids")
        return self._run_dict(doc)

    def list_experiments(self, hpo_run_id: str | None = None) -> list[dict[str, Any]]:
        """All experiments (or one HPO run's trials), oldest first."""
        query = (self._col("experiments") if hpo_run_id is None
                 else self._eq("experiments", "hpo_run_id", str(hpo_run_id)))
        return [self._run_dict(d) for d in self._by_creation(self._stream(query))]

    def step_metrics(self, experiment_id: str) -> list[dict[str, Any]]:
        """An experiment's step rows in the order they were logged."""
        docs = sorted(self._stream(self._eq("batches", "experiment_id", str(experiment_id))),
                      key=lambda d: d["seq"])
        out = []
        for d in docs:
            for row in zip(d["phase"], d["step"], d["layer"], d["metric"], d["value"],
                           strict=True):
                out.append(dict(zip(("phase", "step", "layer", "metric", "value"), row,
                                    strict=True)))
        return out

    # -- models ------------------------------------------------------------------------------

    def _registry(self, name: str) -> dict[str, Any] | None:
        return self._get("model_registry", name_to_id(name))

    def next_model_version(self, name: str) -> int:
        """1 for a new name, else one more than the highest stored version."""
        entry = self._registry(name)
        return 1 if entry is None else int(entry["latest_version"]) + 1

    def add_model(self, name: str, version: int, path: str, sha256: str,
                  config: dict[str, Any], metrics_summary: dict[str, Any] | None,
                  experiment_id: str | None) -> None:
        """Register a saved model; a (name, version) is never overwritten."""
        from google.api_core.exceptions import AlreadyExists

        version = int(version)
        model_ref = self._col("models").document(f"{name_to_id(name)}@v{version}")
        registry_ref = self._col("model_registry").document(name_to_id(name))
        data = {"name": name, "version": version, "path": str(path), "sha256": sha256,
                "config": _dumps(config),
                "metrics_summary": None if metrics_summary is None else _dumps(metrics_summary),
                "experiment_id": None if experiment_id is None else str(experiment_id),
                "created_at": _now()}
        self._check_size("models", model_ref.id, data)

        @self._firestore.transactional
        def register(tx: Any) -> None:
            snap = registry_ref.get(transaction=tx)
            entry = snap.to_dict() if snap.exists else {"versions": []}
            versions = sorted({int(v) for v in entry["versions"]})
            if version in versions:
                raise _VersionTaken(max(versions) + 1)
            tx.create(model_ref, data)
            tx.set(registry_ref, {"name": name, "latest_version": max([*versions, version]),
                                  "versions": sorted([*versions, version]),
                                  "updated_at": _now()})

        try:
            register(self.client.transaction())
        except _VersionTaken as taken:
            raise SparseyConfigError(f"model '{name}' version {version} already exists; "
                                     f"the next free version is {taken.next_free}") from None
        except AlreadyExists:
            raise SparseyConfigError(
                f"model '{name}' version {version} already exists; the next free version is "
                f"{self.next_model_version(name)}") from None

    @staticmethod
    def _model_dict(doc: dict[str, Any]) -> dict[str, Any]:
        out = dict(doc)
        out["config"] = _loads(out.get("config"))
        out["metrics_summary"] = _loads(out.get("metrics_summary"))
        return out

    def get_model(self, name: str, version: int | None = None) -> dict[str, Any]:
        """A model by name and version (the latest when version is None)."""
        entry = self._registry(name)
        if entry is None:
            names = sorted(d["name"] for d in self._stream(self._col("model_registry")))
            known = ", ".join(names) if names else "none registered yet"
            raise SparseyConfigError(f"unknown model '{name}'; known models: {known}")
        wanted = int(entry["latest_version"]) if version is None else int(version)
        if wanted not in {int(v) for v in entry["versions"]}:
            versions = ", ".join(str(v) for v in sorted(entry["versions"]))
            raise SparseyConfigError(
                f"model '{name}' has no version {version}; known versions: {versions}")
        doc = self._get("models", f"{name_to_id(name)}@v{wanted}")
        if doc is None:
            raise SparseyConfigError(
                f"model '{name}' v{wanted} is in {self.names.model_registry} but its "
                f"{self.names.models} document is missing; re-register the model")
        return self._model_dict(doc)

    def list_models(self) -> list[dict[str, Any]]:
        """Every registered model, by name then version."""
        docs = self._stream(self._col("models"))
        return [self._model_dict(d) for d in sorted(docs, key=lambda d: (d["name"],
                                                                         d["version"]))]

    def close(self) -> None:
        """Close the gRPC channel and drop the firebase app (idempotent)."""
        app, self._app = getattr(self, "_app", None), None
        if app is None:
            return
        client = getattr(self, "client", None)
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a half-opened client must not mask the real error
                pass
        import firebase_admin

        firebase_admin.delete_app(app)


class _VersionTaken(Exception):
    def __init__(self, next_free: int) -> None:
        super().__init__(next_free)
        self.next_free = next_free


def _anonymous_credential(credentials: Any) -> Any:
    """firebase-admin wants a credential object; the emulator accepts anonymous ones."""
    from google.auth.credentials import AnonymousCredentials

    class Anonymous(credentials.Base):  # type: ignore[misc, name-defined]
        def get_credential(self) -> AnonymousCredentials:
            return AnonymousCredentials()

    return Anonymous()


def open_firestore(params: FirestoreParams, key: str = "system.stores.firestore"
                   ) -> FirestoreStore:
    return FirestoreStore(params, key=key)


__all__ = ["FirestoreCollections", "FirestoreParams", "FirestoreStore", "MAX_DOC_BYTES",
           "document_size", "name_to_id", "open_firestore", "value_size"]
